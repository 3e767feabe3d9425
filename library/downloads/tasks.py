"""The download queue on disk: `DownloadTask` rows in ``.shelf/state.db``, leased to one process.

Unlike the index, this file is not disposable: it holds what is still to be fetched and how far
each download got. WAL mode lets several processes (several ComfyUI installs on one library)
share it; every change is one short ``BEGIN IMMEDIATE`` transaction.

No secret is stored here: a ``user:password@`` or a ``?token=`` (any credential-like query
parameter) in a source URL is taken out before the task is stored (`split_credentials`) and kept
in its own owner-only file (`TaskCredentials`); the engine puts them back, in memory only, when
it connects to the source's own origin. Rows written before that are cleaned when the file is
opened (`_migration_credentials_out`).

A task is worked on by one process at a time: the one holding its lease (owner = host, pid and
a per-engine token; an expiry the owner renews). A lease whose owner died expires, or is
dropped at once when the owner was a process on this host that no longer exists.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, Field, ValidationError

from ..errors import StorageFullError, TaskNotFoundError, TaskStoreError
from ..sqlite_store import SqliteStore
from ..stored_settings import TaskCredentials, URLCredentials
from .http import redact_url, split_secret_query, with_query

log = logging.getLogger("model_shelf.downloads")

HOST = socket.gethostname() or "host"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class TaskState(str, Enum):
    """Where a download task is in its life."""

    QUEUED = "queued"  # waiting for a slot (or, with ``not_before``, for a retry time)
    DOWNLOADING = "downloading"
    PAUSED = "paused"  # stopped by a person; partial data kept
    VERIFYING = "verifying"  # bytes complete: digests checked, file handed to the library
    DONE = "done"
    FAILED = "failed"  # partial data kept where it is useful (e.g. STORAGE_FULL)
    CANCELLED = "cancelled"  # partial data removed


TERMINAL_STATES = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})
RUNNABLE_STATES = frozenset({TaskState.QUEUED, TaskState.DOWNLOADING, TaskState.VERIFYING})
"""States a process may claim a task in (downloading/verifying: its owner died)."""
TERMINAL_ORDER = (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED)
_TERMINAL_MARKS = ", ".join("?" for _ in TERMINAL_ORDER)


class ControlRequest(str, Enum):
    """A request from any process to the process running a task, applied at its next chunk."""

    PAUSE = "pause"
    CANCEL = "cancel"


class TaskOrigin(str, Enum):
    """Who asked for a download: it decides where the download may connect (issue #11)."""

    USER = "user"
    """The person, by hand (``add``, the sidebar's add box), or the library's own records
    (repairs): any address."""
    WORKFLOW = "workflow"
    """A workflow's models metadata (auto-fetch, the missing-models dialog, the Fetch Model
    node, a lockfile): only public addresses, or hosts the user allowed
    (`downloads.addresses.FetchGuard`)."""


class DownloadTask(BaseModel):
    """One file to fetch into the library, and everything needed to continue it after a crash."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    source: str
    """What the user gave (URL, ``hf://``, Civitai id...), re-parsed on every start; without
    credentials (`split_credentials`)."""
    source_key: str
    """Canonical identity of the source: one active task per key, across processes."""
    source_kind: str
    model_type: str | None = None
    name: str | None = None
    priority: int = 0
    origin: TaskOrigin = TaskOrigin.USER
    state: TaskState = TaskState.QUEUED
    control: ControlRequest | None = None
    attempts: int = 0
    """Requests that failed, over the task's life."""
    failures: int = 0
    """Failed requests in a row without a byte of progress; at ``max_attempts`` the task fails."""
    error_code: str | None = None
    error_message: str | None = None
    error_detail: str | None = None
    """A traceback, for failures that were not expected."""
    wait_reason: str | None = None
    """Why a queued task is not running yet (``OFFLINE: ...``, ``HOST_UNAVAILABLE: ...``)."""
    not_before: float | None = None
    """Unix time before which the task is not started again (a retry wait)."""
    bytes_done: int = 0
    expected_size: int | None = None
    expected_sha256: str | None = None
    """``"sha256:<hex>"``: given by the user, a workflow, or the source's metadata."""
    url: str | None = None
    """The URL bytes come from (may be a signed CDN URL; re-resolved when it expires)."""
    filename: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    remote_version: str | None = None
    """The source's id for the file's content (an LFS sha256, a commit); a change restarts."""
    source_ref: dict[str, Any] | None = None
    """The `SourceRef` written to the model's record."""
    hashes: dict[str, str] = Field(default_factory=dict)
    model_id: str | None = None
    model_name: str | None = None
    """``type/name`` of the model in the library once done."""
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    byte_sources: dict[str, int] = Field(default_factory=dict)
    """Bytes of the partial file by where they came from: ``peer``, ``store``, ``internet``."""
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    finished_at: datetime | None = None

    @property
    def in_terminal_state(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def running(self) -> bool:
        return self.state in (TaskState.DOWNLOADING, TaskState.VERIFYING)

    @property
    def waits_for_engine(self) -> bool:
        """Only an engine that claims it moves it on: queued, or left running by a process
        that is gone (its lease lapsed, or its owner on this host has exited)."""
        if self.state is TaskState.QUEUED:
            return True
        if not self.running:
            return False
        lapsed = self.lease_expires_at is None or self.lease_expires_at < time.time()
        return lapsed or self.lease_owner is None or owner_is_dead(self.lease_owner)

    @property
    def bytes_saved(self) -> int:
        """Bytes that came from a LAN peer or a team store instead of the internet."""
        return sum(n for kind, n in self.byte_sources.items() if kind != "internet")

    @property
    def shown_source(self) -> str:
        """`source` as people see it: a ``user:password@`` in a URL is left out (none is
        stored since issue #15; this keeps it so for a row another version wrote), and
        credentials in its query (``?token=``) are masked (`redact_url`, issue #11)."""
        return redact_url(self.source)

    @property
    def partial_name(self) -> str:
        """File name of the task's partial data under ``.shelf/partial/``."""
        return f"{self.id}.part"


def split_credentials(source: str) -> tuple[str, URLCredentials | None]:
    """``scheme://user:password@host/path?type=Model&token=abc`` -> the URL without its
    credentials (``scheme://host/path?type=Model``), and them: the ``user:password@`` (decoded)
    and every credential-like query parameter (`split_secret_query`: ``?token=``, ``api_key``,
    ``X-Amz-Signature``...).

    Anything else (a Hugging Face path, an AIR, a URL without credentials) comes back as it is.
    """
    clean, userinfo = _split_userinfo(source)
    clean, query = split_secret_query(clean)
    if not query:
        return clean, userinfo
    found = userinfo or URLCredentials()
    return clean, URLCredentials(username=found.username, password=found.password, query=query)


def _split_userinfo(source: str) -> tuple[str, URLCredentials | None]:
    try:
        parts = urlsplit(source)
    except ValueError:  # not a valid URL: `resolve_source` refuses it, with its code
        return source, None
    if not parts.scheme or "@" not in parts.netloc:
        return source, None
    userinfo, _, host = parts.netloc.rpartition("@")
    start = source.index(parts.netloc, len(parts.scheme))
    clean = source[:start] + host + source[start + len(parts.netloc) :]
    username, has_password, password = userinfo.partition(":")
    credentials = URLCredentials(
        username=unquote(username), password=unquote(password) if has_password else None
    )
    return clean, credentials


def with_credentials(url: str, credentials: URLCredentials) -> str:
    """``url`` with ``credentials`` put back: the ``user:password@`` (the transport sends it as
    Basic auth to this origin and to no other) and the query parameters, after the URL's own.
    For the transport only: never stored, never shown."""
    if credentials.username is not None:
        parts = urlsplit(url)
        userinfo = quote(credentials.username, safe="")
        if credentials.password is not None:
            userinfo += ":" + quote(credentials.password.get_secret_value(), safe="")
        start = url.index(parts.netloc, len(parts.scheme))
        url = f"{url[:start]}{userinfo}@{url[start:]}"
    return with_query(url, ((name, value.get_secret_value()) for name, value in credentials.query))


# Columns in table order. JSON columns are stored as text; everything else maps 1:1.
_COLUMNS: tuple[str, ...] = tuple(DownloadTask.model_fields)
_JSON_COLUMNS = frozenset({"source_ref", "hashes", "byte_sources"})
_UPDATABLE = frozenset(_COLUMNS) - {"id", "source", "source_key", "source_kind", "created_at"}


def _migration_1(db: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE tasks (
            id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            source_key TEXT NOT NULL,
            source_kind TEXT NOT NULL,
            model_type TEXT,
            name TEXT,
            priority INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL,
            control TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            error_code TEXT,
            error_message TEXT,
            error_detail TEXT,
            wait_reason TEXT,
            not_before REAL,
            bytes_done INTEGER NOT NULL DEFAULT 0,
            expected_size INTEGER,
            expected_sha256 TEXT,
            url TEXT,
            filename TEXT,
            etag TEXT,
            last_modified TEXT,
            remote_version TEXT,
            source_ref TEXT,
            hashes TEXT NOT NULL DEFAULT '{}',
            model_id TEXT,
            model_name TEXT,
            lease_owner TEXT,
            lease_expires_at REAL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            finished_at TEXT
        )""",
        "CREATE INDEX tasks_by_state ON tasks(state, priority DESC, created_at)",
        "CREATE INDEX tasks_by_source ON tasks(source_key)",
        # One unfinished task per source, enforced by the database itself so that two processes
        # adding the same model at the same moment cannot both win.
        "CREATE UNIQUE INDEX tasks_one_active_per_source ON tasks(source_key)"
        " WHERE state IN ('queued', 'downloading', 'paused', 'verifying')",
    ]
    # One statement at a time: executescript() would COMMIT and break the migration transaction.
    for statement in statements:
        db.execute(statement)


def _migration_team_byte_sources(db: sqlite3.Connection) -> None:
    """Issue #13: where each task's bytes came from (peer, store, internet)."""
    db.execute("ALTER TABLE tasks ADD COLUMN byte_sources TEXT NOT NULL DEFAULT '{}'")


def _migration_task_origin(db: sqlite3.Connection) -> None:
    """Issue #11: who asked for each task (a workflow's downloads reach public hosts only).

    Like every step since, it may find its work done: development builds numbered the steps
    of this release differently, and a file one of them wrote must still open."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    if "origin" not in columns:
        db.execute("ALTER TABLE tasks ADD COLUMN origin TEXT NOT NULL DEFAULT 'user'")


def _migration_usage_log(db: sqlite3.Connection) -> None:
    """The usage log (`library.usage_log.UsageStore`) shares this file: it is not disposable
    either (per-day figures, workflows and run times exist nowhere else)."""
    statements = [
        """CREATE TABLE usage_runs (
            id INTEGER PRIMARY KEY,
            prompt_id TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL NOT NULL,
            status TEXT NOT NULL,
            workflow_key TEXT,
            workflow_name TEXT,
            error_node_type TEXT,
            error_message TEXT
        )""",
        """CREATE TABLE usage_uses (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES usage_runs(id),
            model_id TEXT NOT NULL,
            model TEXT NOT NULL,
            used_at REAL NOT NULL,
            day TEXT NOT NULL,
            outcome TEXT NOT NULL
        )""",
        "CREATE INDEX usage_uses_by_model ON usage_uses(model_id, used_at)",
        "CREATE INDEX usage_uses_by_day ON usage_uses(day)",
        "CREATE INDEX usage_uses_by_run ON usage_uses(run_id)",
    ]
    for statement in statements:
        db.execute(statement)


def _migration_credentials_out(db: sqlite3.Connection) -> None:
    """Issue #15: a ``user:password@`` or a ``?token=`` (any credential-like query parameter)
    that older versions kept in a task's source, source key, URL and source reference moves to
    the task's credentials file beside this one (the file is written before the rows change: a
    crash in between leaves the step to run again).

    The task list never showed them, but anyone who could read or copy ``state.db`` could. Old
    bytes must not survive in free space: ``secure_delete`` zeroes what the updates free, and
    `SqliteStore` checkpoints the WAL away after the steps.
    """
    db.execute("PRAGMA secure_delete=ON")
    state_db = Path(db.execute("PRAGMA database_list").fetchone()[2])
    credentials = TaskCredentials.beside(state_db)
    rows = db.execute("SELECT id, state, source, source_key, url, source_ref FROM tasks")
    for task_id, state, source, source_key, url, source_ref in rows.fetchall():
        source, found = split_credentials(source)
        kind, colon, keyed = source_key.partition(":")
        if colon:
            source_key = f"{kind}:{split_credentials(keyed)[0]}"
        if url is not None:
            url, in_url = split_credentials(url)
            found = found or in_url
        if source_ref is not None:
            ref = json.loads(source_ref)
            if isinstance(ref, dict) and isinstance(ref.get("url"), str):
                ref["url"], in_ref = split_credentials(ref["url"])
                found = found or in_ref
                source_ref = json.dumps(ref)
        if found is None:
            continue
        if state not in (TaskState.DONE.value, TaskState.CANCELLED.value):
            try:
                credentials.put(task_id, found)
            except ValueError:  # an id no version of ours wrote: still cleaned, not kept
                log.warning("download task %r: its URL credentials were dropped", task_id)
        update = "UPDATE tasks SET source = ?, source_key = ?, url = ?, source_ref = ? WHERE id = ?"
        try:
            db.execute(update, (source, source_key, url, source_ref, task_id))
        except sqlite3.IntegrityError:
            # Two unfinished tasks for one file, told apart only by their credentials: this one
            # keeps a key of its own (a URL's key never has a ``#``), not its secret.
            key = f"{source_key}#{task_id}"
            db.execute(update, (source, key, url, source_ref, task_id))


def _migration_engines(db: sqlite3.Connection) -> None:
    """Issue #11: engines working on the whole queue, each with a lease it renews (like a
    task's), so that a process with no engine (the CLI) can tell whether queued downloads will
    start by themselves."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS engines"
        " (owner TEXT PRIMARY KEY, expires_at REAL NOT NULL) WITHOUT ROWID"
    )


# Numbered steps, N -> N+1; PRAGMA user_version says how far the file got.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migration_1,
    _migration_team_byte_sources,
    _migration_usage_log,
    _migration_credentials_out,
    _migration_task_origin,  # issue #11
    _migration_engines,  # issue #11
]


def _to_row(task: DownloadTask) -> list[object]:
    data = task.model_dump(mode="json")
    return [
        json.dumps(data[c]) if c in _JSON_COLUMNS and data[c] is not None else data[c]
        for c in _COLUMNS
    ]


def _from_row(row: sqlite3.Row) -> DownloadTask:
    data = {c: row[c] for c in _COLUMNS}
    for column in _JSON_COLUMNS:
        if data[column] is not None:
            data[column] = json.loads(data[column])
    return DownloadTask.model_validate(data)


def _readable(rows: Iterable[sqlite3.Row]) -> list[DownloadTask]:
    tasks = []
    for row in rows:
        try:
            tasks.append(_from_row(row))
        except (ValidationError, ValueError) as exc:
            # A row written by a newer version, or damaged: skip it, loudly, keep the rest.
            log.warning("skipping unreadable download task %s: %s", row["id"], exc)
    return tasks


def _encode(column: str, value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if column in _JSON_COLUMNS and value is not None:
        return json.dumps(value)
    return value


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists on this host (or we cannot tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but not ours (EPERM), or the platform cannot say
    return True


def new_owner_id() -> str:
    """A lease owner id: ``host|pid|token`` (token: several engines in one process)."""
    return f"{HOST}|{os.getpid()}|{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` was a process on this host that has exited."""
    host, _, rest = owner.partition("|")
    pid_text = rest.partition("|")[0]
    if host != HOST or not pid_text.isdigit():
        return False
    return int(pid_text) != os.getpid() and not pid_alive(int(pid_text))


class TaskStore(SqliteStore):
    """The task table of one ``state.db``. One SQLite connection per thread; thread-safe."""

    migrations = MIGRATIONS
    row_factory = sqlite3.Row
    # FULL: a task's state must survive a power cut, not only a process crash.
    synchronous = "FULL"

    def _error(self, exc: sqlite3.Error) -> Exception:
        if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
            return StorageFullError(
                f"no space left to record download state in {self.path}", path=str(self.path)
            )
        return TaskStoreError(f"download queue {self.path}: {exc}")

    # -- reads ---------------------------------------------------------------

    def _select(
        self, db: sqlite3.Connection, where: str, params: Sequence[object]
    ) -> list[DownloadTask]:
        rows = db.execute(
            f"SELECT * FROM tasks WHERE {where} ORDER BY priority DESC, created_at, rowid",
            tuple(params),
        ).fetchall()
        return _readable(rows)

    def get(self, task_id: str) -> DownloadTask:
        """The task with ``task_id``.

        Raises:
            `TaskNotFoundError`: no such task.
        """
        try:
            found = self._select(self.db, "id = ?", (task_id,))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        if not found:
            raise TaskNotFoundError(f"no download task {task_id!r}")
        return found[0]

    def list(self, states: Iterable[TaskState] | None = None) -> list[DownloadTask]:
        """Every task (in the given states), highest priority first, then oldest first."""
        wanted = [s.value for s in states] if states is not None else [s.value for s in TaskState]
        marks = ", ".join("?" for _ in wanted)
        try:
            return self._select(self.db, f"state IN ({marks})", wanted)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def page(self, offset: int, limit: int) -> tuple[list[DownloadTask], int]:
        """A window of every task, and how many there are: unfinished ones first (highest
        priority, then oldest), then finished ones, most recently finished first."""
        order = (
            f"CASE WHEN state IN ({_TERMINAL_MARKS}) THEN 1 ELSE 0 END,"
            f" CASE WHEN state IN ({_TERMINAL_MARKS}) THEN 0 ELSE priority END DESC,"
            f" CASE WHEN state IN ({_TERMINAL_MARKS}) THEN COALESCE(finished_at, updated_at)"
            " END DESC, created_at, rowid"
        )
        terminal = [s.value for s in TERMINAL_ORDER]
        try:
            total = self.db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
            rows = self.db.execute(
                f"SELECT * FROM tasks ORDER BY {order} LIMIT ? OFFSET ?",
                (*terminal, *terminal, *terminal, limit, offset),
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return _readable(rows), total

    def count_by_state(self) -> dict[str, int]:
        """How many tasks are in each state (without reading them)."""
        try:
            return dict(self.db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state"))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def engine_alive(self, owner: str, lease_seconds: float) -> None:
        """Say that ``owner``'s engine works on the whole queue for ``lease_seconds`` more
        (and forget engines whose lease ran out: processes killed before they could say so)."""
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM engines WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT OR REPLACE INTO engines (owner, expires_at) VALUES (?, ?)",
                (owner, now + lease_seconds),
            )

    def engine_gone(self, owner: str) -> None:
        """``owner``'s engine has stopped."""
        with self._transaction() as db:
            db.execute("DELETE FROM engines WHERE owner = ?", (owner,))

    def engines_running(self) -> int:
        """How many engines (in any process) work on the whole queue now: leases not expired,
        and not held by a process of this host that has exited (killed before it could say
        so)."""
        try:
            rows = self.db.execute(
                "SELECT owner FROM engines WHERE expires_at > ?", (time.time(),)
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return sum(1 for (owner,) in rows if not owner_is_dead(owner))

    def latest_for_source(self, source_key: str) -> DownloadTask | None:
        """The newest task for ``source_key``, in any state."""
        try:
            rows = self.db.execute(
                "SELECT * FROM tasks WHERE source_key = ? ORDER BY created_at DESC, rowid DESC"
                " LIMIT 1",
                (source_key,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return _from_row(rows[0]) if rows else None

    # -- writes --------------------------------------------------------------

    def prune_finished(self, keep: int) -> list[str]:
        """Forget finished tasks (done, failed, cancelled) but the ``keep`` most recently
        finished: the history stays bounded. Returns the ids of those removed."""
        terminal = [s.value for s in TERMINAL_ORDER]
        with self._transaction() as db:
            rows = db.execute(
                f"DELETE FROM tasks WHERE state IN ({_TERMINAL_MARKS}) AND rowid NOT IN"
                f" (SELECT rowid FROM tasks WHERE state IN ({_TERMINAL_MARKS})"
                "  ORDER BY COALESCE(finished_at, updated_at) DESC, rowid DESC LIMIT ?)"
                " RETURNING id",
                (*terminal, *terminal, keep),
            ).fetchall()
        return [row[0] for row in rows]

    def insert(self, task: DownloadTask) -> tuple[DownloadTask, bool]:
        """Insert ``task`` unless an unfinished task for the same source exists.

        Returns:
            `tuple[DownloadTask, bool]`: the task now in the queue, and whether it is the new one.
        """
        marks = ", ".join("?" for _ in _COLUMNS)
        try:
            with self._transaction() as db:
                db.execute(
                    f"INSERT INTO tasks ({', '.join(_COLUMNS)}) VALUES ({marks})", _to_row(task)
                )
            return task, True
        except TaskStoreError as exc:
            if not isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise
        active = [
            t
            for t in self._select(self.db, "source_key = ?", (task.source_key,))
            if not t.in_terminal_state
        ]
        if not active:  # the other task finished in between: try once more
            return self.insert(task)
        return active[0], False

    def update(self, task_id: str, owner: str | None = None, **fields: object) -> DownloadTask:
        """Set ``fields`` on a task; with ``owner``, only while that owner holds its lease.

        Returns:
            `DownloadTask`: the task after the change.

        Raises:
            `TaskNotFoundError`: no such task, or ``owner`` no longer holds its lease.
        """
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not task fields: {sorted(unknown)}")
        fields["updated_at"] = utc_now()
        sets = ", ".join(f"{column} = ?" for column in fields)
        params = [_encode(c, v) for c, v in fields.items()]
        where = "id = ?"
        params.append(task_id)
        if owner is not None:
            where += " AND lease_owner = ?"
            params.append(owner)
        with self._transaction() as db:
            changed = db.execute(f"UPDATE tasks SET {sets} WHERE {where}", params).rowcount
            found = self._select(db, "id = ?", (task_id,))
        if not changed or not found:
            raise TaskNotFoundError(f"download task {task_id!r} is gone or held by another process")
        return found[0]

    def claim(
        self, owner: str, lease_seconds: float, only: Iterable[str] | None = None
    ) -> DownloadTask | None:
        """Lease the most urgent runnable task to ``owner``; None if there is nothing to do.

        Runnable: queued (and past its ``not_before``), or left downloading/verifying by an owner
        whose lease expired or who died on this host.

        Args:
            owner (`str`): from `new_owner_id`.
            lease_seconds (`float`): how long the lease lasts unless renewed.
            only (`Iterable[str]`, *optional*): consider only these task ids.
        """
        now = time.time()
        wanted = [s.value for s in RUNNABLE_STATES]
        marks = ", ".join("?" for _ in wanted)
        where = f"state IN ({marks}) AND (not_before IS NULL OR not_before <= ?)"
        params: list[object] = [*wanted, now]
        if only is not None:
            ids = list(only)
            if not ids:
                return None
            where += f" AND id IN ({', '.join('?' for _ in ids)})"
            params += ids
        with self._transaction() as db:
            for task in self._select(db, where, params):
                free = (
                    task.lease_owner is None
                    or (task.lease_expires_at or 0) < now
                    or owner_is_dead(task.lease_owner)
                )
                if not free:
                    continue
                db.execute(
                    "UPDATE tasks SET lease_owner = ?, lease_expires_at = ?, updated_at = ?"
                    " WHERE id = ?",
                    (owner, now + lease_seconds, utc_now().isoformat(), task.id),
                )
                return task.model_copy(
                    update={"lease_owner": owner, "lease_expires_at": now + lease_seconds}
                )
        return None

    def renew(
        self, task_id: str, owner: str, lease_seconds: float, bytes_done: int
    ) -> DownloadTask | None:
        """Extend ``owner``'s lease and record progress; None if the lease was lost.

        The returned task carries any `ControlRequest` another process made meanwhile.
        """
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE tasks SET lease_expires_at = ?, bytes_done = ?, updated_at = ?"
                " WHERE id = ? AND lease_owner = ?",
                (time.time() + lease_seconds, bytes_done, utc_now().isoformat(), task_id, owner),
            ).rowcount
            if not changed:
                return None
            return self._select(db, "id = ?", (task_id,))[0]

    def request(self, task_id: str, action: ControlRequest | None) -> tuple[DownloadTask, bool]:
        """Pause, cancel (``action``) or resume (``None``) a task, from any process.

        A task nobody is running changes state at once. A running one gets a `ControlRequest`
        that its owner applies at its next chunk (or the next owner applies when it claims it).

        Returns:
            `tuple[DownloadTask, bool]`: the task after the change, and whether its partial data
            is now unowned and should be removed by the caller (cancel of a task not running).

        Raises:
            `TaskNotFoundError`: no such task.
        """
        with self._transaction() as db:
            found = self._select(db, "id = ?", (task_id,))
            if not found:
                raise TaskNotFoundError(f"no download task {task_id!r}")
            task = found[0]
            fields, remove_partial = _transition(task, action)
            if fields:
                fields["updated_at"] = utc_now()
                sets = ", ".join(f"{column} = ?" for column in fields)
                db.execute(
                    f"UPDATE tasks SET {sets} WHERE id = ?",
                    [*(_encode(c, v) for c, v in fields.items()), task_id],
                )
                task = self._select(db, "id = ?", (task_id,))[0]
        return task, remove_partial


def _transition(
    task: DownloadTask, action: ControlRequest | None
) -> tuple[dict[str, object], bool]:
    """The column changes for pause/cancel/resume of ``task``, and whether to drop its partial."""
    leased = task.lease_owner is not None and (task.lease_expires_at or 0) >= time.time()
    if task.in_terminal_state and not (action is None and task.state is TaskState.FAILED):
        if action is ControlRequest.CANCEL and task.state is TaskState.FAILED:
            return {"state": TaskState.CANCELLED, "finished_at": utc_now()}, True
        return {}, False
    if action is None:  # resume
        if task.state in (TaskState.PAUSED, TaskState.FAILED):
            return {
                "state": TaskState.QUEUED,
                "control": None,
                "failures": 0,
                "error_code": None,
                "error_message": None,
                "error_detail": None,
                "wait_reason": None,
                "not_before": None,
                "finished_at": None,
            }, False
        # Queued and waiting for a retry time: a person asking to resume means "try now".
        return {"control": None, "not_before": None}, False
    if task.running and leased:
        return {"control": action}, False
    if action is ControlRequest.PAUSE:
        if task.state is TaskState.PAUSED:
            return {}, False
        return {"state": TaskState.PAUSED, "control": None, "lease_owner": None}, False
    return {
        "state": TaskState.CANCELLED,
        "control": None,
        "lease_owner": None,
        "finished_at": utc_now(),
    }, True
