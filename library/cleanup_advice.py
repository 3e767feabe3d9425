"""Cleanup advice under a storage target ("free 50 GiB"): what to remove, then removing it.

The plan ranks, in order: extra copies of a duplicated model (nothing is lost: the name becomes
an alias of the copy kept), then models never used, then the rarely used (fewest uses, oldest
last use); within each, models a source can fetch again first (a URL and a known sha256, so the
copy fetched later is checked), bigger first. It takes models until the target is reached.
It never proposes a model used in the last `RECENT_DAYS` days, nor one no source can fetch
again (removing that would lose it).

Applying removes the files through the one deletion path (`Remover`, journaled) and keeps each
record as a re-downloadable stub (``archived_at`` set, health ``missing``, sources kept): a
workflow that asks for it later gets it fetched again by the missing-model path (auto-fetch).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from .catalog import Catalog
from .health import repairable
from .records import HashState, Health, ModelRecord, RecordStore, utc_now
from .removal import Remover
from .usage_report import ModelUsageItem

RECENT_DAYS = 7
"""Models used this recently are never proposed."""


class CleanupItem(BaseModel):
    id: str
    name: str
    size: int
    action: str
    """``dedupe`` (an extra copy: becomes an alias of ``duplicate_of``) or ``archive``."""
    reason: str
    uses: int
    last_used: datetime | None = None
    duplicate_of: str | None = None
    source: str | None = None
    """Where an archived model is fetched from again."""


class CleanupPlan(BaseModel):
    target_bytes: int
    planned_bytes: int
    enough: bool
    """The plan frees at least the target."""
    items: list[CleanupItem] = Field(default_factory=list)
    recent_kept: int = 0
    """Models left out because they were used in the last `RECENT_DAYS` days."""
    not_refetchable: list[str] = Field(default_factory=list)
    """Unused models left out because nothing could fetch them again (back them up first)."""


class CleanupResult(BaseModel):
    freed_bytes: int
    archived: list[str] = Field(default_factory=list)
    deduplicated: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)


def refetchable(record: ModelRecord) -> bool:
    """A single file with a source URL and a known sha256 (the refetched copy is checked)."""
    return repairable(record) and record.sha256 is not None


def _source(record: ModelRecord) -> str | None:
    return next((s.url for s in record.sources if s.url), None)


def plan_cleanup(
    target_bytes: int,
    records: list[ModelRecord],
    usage: dict[str, ModelUsageItem],
    duplicates: list[list[ModelRecord]],
    now: float | None = None,
) -> CleanupPlan:
    """The dry-run list (see the module).

    Args:
        target_bytes (`int`): how much to free.
        records (`list[ModelRecord]`): the library's models.
        usage (`dict`): usage figures by record id (`usage_report.model_usage`).
        duplicates (`list`): same-sha256 groups, oldest first (`IndexStore.duplicate_groups`).
        now (`float`, *optional*): Unix time (default: now).
    """
    now = time.time() if now is None else now
    recent_since = now - RECENT_DAYS * 86400

    def uses_of(record: ModelRecord) -> tuple[int, float | None]:
        item = usage.get(record.id)
        last = item.last_used if item is not None else record.usage.last_used
        uses = item.uses if item is not None else record.usage.count
        return uses, last.timestamp() if last is not None else None

    def recent(record: ModelRecord) -> bool:
        last = uses_of(record)[1]
        return last is not None and last >= recent_since

    plan = CleanupPlan(target_bytes=target_bytes, planned_bytes=0, enough=target_bytes <= 0)
    taken: set[str] = set()
    candidates: list[tuple[tuple[object, ...], CleanupItem]] = []
    for group in duplicates:
        by_type: dict[str, list[ModelRecord]] = {}
        for record in group:
            if record.health is Health.OK and record.hash_state is HashState.HASHED:
                by_type.setdefault(record.type, []).append(record)
        for copies in by_type.values():
            if len(copies) < 2:
                continue
            # Keep the most used copy (the oldest on a tie): workflows name it most.
            keep = max(copies, key=lambda r: (uses_of(r)[0], -copies.index(r)))
            for record in copies:
                if record is keep or record.kind.value != "file" or recent(record):
                    continue  # a recent one is counted (and kept) by the loop below
                uses, last = uses_of(record)
                candidates.append(
                    (
                        (0, -record.size),
                        CleanupItem(
                            id=record.id,
                            name=record.display(),
                            size=record.size,
                            action="dedupe",
                            reason=f"same content as {keep.display()} (its name stays, an alias)",
                            uses=uses,
                            last_used=_stamp(last),
                            duplicate_of=keep.display(),
                        ),
                    )
                )
                taken.add(record.id)
    for record in records:
        if record.id in taken or record.archived_at is not None:
            continue
        if record.health is not Health.OK or record.size <= 0:
            continue
        if recent(record):
            plan.recent_kept += 1
            continue
        uses, last = uses_of(record)
        if not refetchable(record):
            if uses == 0:
                plan.not_refetchable.append(record.display())
            continue
        why = "never used" if uses == 0 else f"used {uses} times, last {_day(last)}"
        rank = (1, -record.size) if uses == 0 else (2, uses, last or 0.0, -record.size)
        candidates.append(
            (
                rank,
                CleanupItem(
                    id=record.id,
                    name=record.display(),
                    size=record.size,
                    action="archive",
                    reason=f"{why}; can be fetched again from its source",
                    uses=uses,
                    last_used=_stamp(last),
                    source=_source(record),
                ),
            )
        )
    candidates.sort(key=lambda pair: pair[0])
    for _, item in candidates:
        if plan.planned_bytes >= target_bytes:
            break
        plan.items.append(item)
        plan.planned_bytes += item.size
    plan.enough = plan.planned_bytes >= target_bytes
    return plan


def archive(
    record: ModelRecord, records: RecordStore, catalog: Catalog, remover: Remover
) -> ModelRecord:
    """Remove a model's files (journaled) and keep its record as a re-downloadable stub."""
    paths = list(dict.fromkeys([records.model_path(record), *records.file_paths(record)]))
    source = _source(record) or "its source"
    remover.delete(paths, reason=f"cleanup: archived, re-downloadable from {source}", record=record)
    record.health = Health.MISSING
    record.health_detail = f"archived by cleanup: fetched again from {source} when asked for"
    record.archived_at = utc_now()
    return catalog.save(record)


def _stamp(when: float | None) -> datetime | None:
    return datetime.fromtimestamp(when, timezone.utc) if when is not None else None


def _day(when: float | None) -> str:
    return _stamp(when).strftime("%Y-%m-%d") if when is not None else "never"
