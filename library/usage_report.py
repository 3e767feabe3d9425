"""The usage report: per model uses, last use, uses per day, workflows and run times; the
library's uses over time, bytes by type and never-used bytes; models whose loads fail often.

Totals come from the records (``usage.count``, ``usage.last_used``: the source of truth, kept
through an index rebuild); everything per day, per workflow and per run from the usage log
(`UsageStore`). Pydantic models: ``model_dump(mode="json")`` is the wire form (CLI ``--json``,
``GET /model-shelf/usage``, the sidebar's usage view).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from .index import IndexStore
from .records import Health, ModelRecord
from .usage_log import ModelUsage, UsageStore

FAILING_LOADS = 3
"""Failed loads in 30 days from which a model is flagged by the health advice."""


class WorkflowCount(BaseModel):
    key: str
    """The UI workflow's id, or ``prompt:<fingerprint>`` for prompts sent without one."""
    name: str | None = None
    runs: int


class ModelUsageItem(BaseModel):
    id: str
    name: str
    """``type/name``."""
    type: str
    size: int
    architecture: str | None = None
    uses: int
    last_used: datetime | None = None
    uses_7d: int = 0
    uses_30d: int = 0
    per_day: dict[str, int] = Field(default_factory=dict)
    """Uses per UTC day over the last 30 days (days without uses left out)."""
    runs: int = 0
    run_seconds: float = 0.0
    mean_run_seconds: float | None = None
    failures_30d: int = 0
    workflows: list[WorkflowCount] = Field(default_factory=list)
    archived: bool = False
    """Files removed by cleanup; the record stays, fetched again when a workflow asks."""


class DayUsage(BaseModel):
    day: str
    uses: int
    runs: int


class TypeBytes(BaseModel):
    type: str
    models: int
    bytes: int
    never_used_bytes: int


class UsageReport(BaseModel):
    generated_at: datetime
    models: int
    used_models: int
    never_used_models: int
    total_bytes: int
    never_used_bytes: int
    runs: int
    days: list[DayUsage]
    """The last 30 UTC days, oldest first."""
    types: list[TypeBytes]
    items: list[ModelUsageItem]
    """Most used first; never-used models last, biggest first."""


def _item(record: ModelRecord, logged: ModelUsage | None) -> ModelUsageItem:
    item = ModelUsageItem(
        id=record.id,
        name=record.display(),
        type=record.type,
        size=record.size,
        architecture=record.probe.architecture,
        uses=max(record.usage.count, logged.uses if logged else 0),
        last_used=record.usage.last_used,
        archived=record.archived_at is not None,
    )
    if logged is not None:
        if logged.last_used is not None:
            seen = datetime.fromtimestamp(logged.last_used, timezone.utc)
            item.last_used = max(item.last_used, seen) if item.last_used else seen
        item.uses_7d, item.uses_30d = logged.uses_7d, logged.uses_30d
        item.per_day = dict(sorted(logged.per_day.items()))
        item.runs, item.run_seconds = logged.runs, round(logged.run_seconds, 3)
        item.mean_run_seconds = round(logged.run_seconds / logged.runs, 3) if logged.runs else None
        item.failures_30d = logged.failures_30d
        item.workflows = [
            WorkflowCount(key=w.key, name=w.name, runs=w.runs) for w in logged.workflows
        ]
    return item


def model_usage(
    index: IndexStore, log: UsageStore, now: float | None = None
) -> list[ModelUsageItem]:
    """Every model of the library with its usage figures (unordered)."""
    now = time.time() if now is None else now
    logged = log.models(now)
    return [_item(record, logged.get(record.id)) for record in index.list()]


def usage_report(index: IndexStore, log: UsageStore, now: float | None = None) -> UsageReport:
    """The whole report (see the module)."""
    now = time.time() if now is None else now
    items = model_usage(index, log, now)
    types: dict[str, TypeBytes] = {}
    for item in items:
        if item.archived:
            continue  # no bytes on disk
        entry = types.setdefault(
            item.type, TypeBytes(type=item.type, models=0, bytes=0, never_used_bytes=0)
        )
        entry.models += 1
        entry.bytes += item.size
        if item.uses == 0:
            entry.never_used_bytes += item.size
    items.sort(
        key=lambda i: (-i.uses, -(i.last_used.timestamp() if i.last_used else 0), -i.size, i.name)
    )
    on_disk = [i for i in items if not i.archived]
    never = [i for i in on_disk if i.uses == 0]
    return UsageReport(
        generated_at=datetime.fromtimestamp(now, timezone.utc),
        models=len(items),
        used_models=sum(1 for i in items if i.uses > 0),
        never_used_models=len(never),
        total_bytes=sum(i.size for i in on_disk),
        never_used_bytes=sum(i.size for i in never),
        runs=log.run_count(),
        days=[DayUsage(day=d, uses=u, runs=r) for d, u, r in log.per_day(now, 30)],
        types=sorted(types.values(), key=lambda t: (-t.bytes, t.type)),
        items=items,
    )


def failing_loads(
    index: IndexStore, log: UsageStore, now: float | None = None, threshold: int = FAILING_LOADS
) -> list[tuple[ModelRecord, int]]:
    """Models whose loader failed at least ``threshold`` times in 30 days, most failures first
    (the health advice: a broken file, a wrong type folder, a model this ComfyUI cannot load)."""
    now = time.time() if now is None else now
    found = []
    for model_id, usage in log.models(now).items():
        if usage.failures_30d >= threshold:
            record = index.get(model_id)
            if record is not None and record.health is not Health.MISSING:
                found.append((record, usage.failures_30d))
    return sorted(found, key=lambda pair: (-pair[1], pair[0].display()))
