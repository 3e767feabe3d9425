"""The usage log: every observed ComfyUI run and the models it used, in ``.shelf/state.db``.

The records keep each model's totals (``usage.count``, ``usage.last_used``: they survive an
index rebuild); this log keeps what totals cannot say: uses per day, which workflows used a
model, how long their runs took, and which loads failed. It is append-only and lives in the
state file, not the index, because it cannot be rebuilt from the folders. Several processes
(several ComfyUI installs on one root) append to it at once: one short transaction per run.

Days are UTC calendar days (``YYYY-MM-DD``), the same for every install sharing the root.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .downloads.tasks import HOST, MIGRATIONS
from .errors import StorageFullError, TaskStoreError
from .sqlite_store import SqliteStore

DAY_SECONDS = 86400.0


def day_of(when: float) -> str:
    """The UTC day (``YYYY-MM-DD``) of a Unix time."""
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%d")


def last_days(now: float, days: int) -> list[str]:
    """The ``days`` UTC days ending with today's, oldest first."""
    today = datetime.fromtimestamp(now, timezone.utc).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


@dataclass
class RunUse:
    """One model a run used (``outcome`` ``failed``: its loader is the node that failed)."""

    model_id: str
    model: str
    """``type/name`` when it was used."""
    outcome: str = "used"


@dataclass
class RunEntry:
    """One finished run, as it goes into the log."""

    prompt_id: str
    started_at: float
    ended_at: float
    status: str
    """``success``, ``error`` or ``interrupted``."""
    uses: list[RunUse] = field(default_factory=list)
    workflow_key: str | None = None
    workflow_name: str | None = None
    error_node_type: str | None = None
    error_message: str | None = None


@dataclass
class WorkflowUse:
    key: str
    name: str | None
    runs: int


@dataclass
class ModelUsage:
    """What the log knows about one model."""

    model_id: str
    model: str
    uses: int = 0
    last_used: float | None = None
    uses_7d: int = 0
    uses_30d: int = 0
    per_day: dict[str, int] = field(default_factory=dict)
    """Uses per UTC day over the last 30 days (days without uses left out)."""
    runs: int = 0
    run_seconds: float = 0.0
    """Total run time of the runs that used it."""
    failures_30d: int = 0
    workflows: list[WorkflowUse] = field(default_factory=list)


class UsageStore(SqliteStore):
    """The usage tables of one ``state.db`` (shared with the download queue's `TaskStore`, so
    both apply the same migration list)."""

    migrations = MIGRATIONS
    row_factory = sqlite3.Row

    def _error(self, exc: sqlite3.Error) -> Exception:
        if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
            return StorageFullError(
                f"no space left to record model usage in {self.path}", path=str(self.path)
            )
        return TaskStoreError(f"usage log {self.path}: {exc}")

    # -- writing -------------------------------------------------------------

    def add_run(self, entry: RunEntry) -> int:
        """Append one run and its uses (one transaction); returns the run's row id."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO usage_runs (prompt_id, host, pid, started_at, ended_at, status,"
                " workflow_key, workflow_name, error_node_type, error_message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.prompt_id,
                    HOST,
                    os.getpid(),
                    entry.started_at,
                    entry.ended_at,
                    entry.status,
                    entry.workflow_key,
                    entry.workflow_name,
                    entry.error_node_type,
                    entry.error_message,
                ),
            )
            run_id = int(cursor.lastrowid or 0)
            day = day_of(entry.started_at)
            db.executemany(
                "INSERT INTO usage_uses (run_id, model_id, model, used_at, day, outcome)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (run_id, u.model_id, u.model, entry.started_at, day, u.outcome)
                    for u in entry.uses
                ],
            )
        return run_id

    def add_uses(self, uses: Iterable[tuple[RunUse, float]]) -> None:
        """Append uses seen outside any observed run (a path resolved by another caller)."""
        rows = [(None, u.model_id, u.model, when, day_of(when), u.outcome) for u, when in uses]
        if not rows:
            return
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO usage_uses (run_id, model_id, model, used_at, day, outcome)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    # -- reading -------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        try:
            return self.db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def models(self, now: float) -> dict[str, ModelUsage]:
        """Every model the log has seen, by record id, with its figures as of ``now``."""
        result: dict[str, ModelUsage] = {}
        since_30 = now - 30 * DAY_SECONDS
        since_7 = now - 7 * DAY_SECONDS
        window = set(last_days(now, 30))
        for row in self._rows(
            "SELECT model_id, model, outcome, used_at, day FROM usage_uses ORDER BY used_at, id"
        ):
            usage = result.get(row["model_id"])
            if usage is None:
                usage = result[row["model_id"]] = ModelUsage(row["model_id"], row["model"])
            usage.model = row["model"]  # the newest name (a rename keeps the id)
            used_at = row["used_at"]
            if row["outcome"] == "failed":
                if used_at >= since_30:
                    usage.failures_30d += 1
                continue
            usage.uses += 1
            usage.last_used = used_at if usage.last_used is None else max(usage.last_used, used_at)
            if used_at >= since_7:
                usage.uses_7d += 1
            if used_at >= since_30:
                usage.uses_30d += 1
            if row["day"] in window:
                usage.per_day[row["day"]] = usage.per_day.get(row["day"], 0) + 1
        for row in self._rows(
            "SELECT u.model_id, COUNT(DISTINCT r.id) AS runs,"
            " SUM(r.ended_at - r.started_at) AS seconds"
            " FROM usage_uses u JOIN usage_runs r ON r.id = u.run_id GROUP BY u.model_id"
        ):
            usage = result.get(row["model_id"])
            if usage is not None:
                usage.runs = int(row["runs"])
                usage.run_seconds = float(row["seconds"] or 0.0)
        for row in self._rows(
            "SELECT u.model_id, r.workflow_key, MAX(r.workflow_name) AS name,"
            " COUNT(DISTINCT r.id) AS runs FROM usage_uses u"
            " JOIN usage_runs r ON r.id = u.run_id WHERE r.workflow_key IS NOT NULL"
            " GROUP BY u.model_id, r.workflow_key ORDER BY runs DESC, r.workflow_key"
        ):
            usage = result.get(row["model_id"])
            if usage is not None:
                usage.workflows.append(WorkflowUse(row["workflow_key"], row["name"], row["runs"]))
        return result

    def per_day(self, now: float, days: int = 30) -> list[tuple[str, int, int]]:
        """``(day, uses, runs)`` for each of the last ``days`` UTC days, oldest first."""
        wanted = last_days(now, days)
        uses = {
            r["day"]: r["n"]
            for r in self._rows(
                "SELECT day, COUNT(*) AS n FROM usage_uses WHERE day >= ? AND outcome != 'failed'"
                " GROUP BY day",
                (wanted[0],),
            )
        }
        runs: dict[str, int] = {}
        for row in self._rows(
            "SELECT started_at FROM usage_runs WHERE started_at >= ?",
            (now - (days + 1) * DAY_SECONDS,),
        ):
            day = day_of(row["started_at"])
            runs[day] = runs.get(day, 0) + 1
        return [(day, uses.get(day, 0), runs.get(day, 0)) for day in wanted]

    def run_count(self) -> int:
        return int(self._rows("SELECT COUNT(*) AS n FROM usage_runs")[0]["n"])
