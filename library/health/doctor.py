"""`Doctor`: builds the `HealthReport` from the counts the index keeps, what the last sweep
found, the disk and the state folder.

No model file is read: corruption shows up through verification (the background hasher, or
``verify``); the report says what the last checks found. What only a look at every file shows
(content changed since it was recorded, left-overs) comes from the last sweep (`Doctor.sweep`,
kept by `sweeps`), and the report says when that was: building it reads a few rows, not the
whole library, so that the sidebar's health tab answers at once at 100,000 models.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from ..catalog import Catalog
from ..command import cli_command
from ..index import CountRow
from ..layout import Layout
from ..records import Health, ModelRecord
from ..settings import HealthSettings
from ..sync import Reconciler, SyncReport
from ..units import human_size
from .cleanup import TaskStateOf, find_orphans
from .disk import disk_report
from .duplicates import find_duplicates
from .hasher import BackgroundHasher
from .repair import repairable
from .report import (
    DiskSection,
    DuplicatesSection,
    HasherSection,
    HealthItem,
    HealthReport,
    HealthSection,
    Severity,
)
from .sweeps import SweepFigures, load_sweep, save_sweep

MAX_ITEMS = 100
"""Items listed per section (the count is always complete)."""

CLI = cli_command()


def _item(record: ModelRecord) -> HealthItem:
    return HealthItem(
        name=record.display(),
        detail=record.health_detail,
        size=record.size,
        model_id=record.id,
        repairable=repairable(record),
    )


class Doctor:
    """Examines one library and says what is wrong and how to fix each thing.

    Args:
        layout, catalog, reconciler: the library's services.
        settings (`HealthSettings`): the disk warning threshold, the age of orphans.
        refuse_below_free_bytes (`int`): the download engine's free-space margin.
        task_state (`TaskStateOf`, *optional*): looks up download tasks (partial downloads).
        hasher (`BackgroundHasher`, *optional*): reported on when running.
    """

    def __init__(
        self,
        layout: Layout,
        catalog: Catalog,
        reconciler: Reconciler,
        settings: HealthSettings,
        refuse_below_free_bytes: int,
        task_state: TaskStateOf | None = None,
        hasher: BackgroundHasher | None = None,
        failing_loads: Callable[[], list[tuple[ModelRecord, int]]] | None = None,
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.reconciler = reconciler
        self.settings = settings
        self.refuse_below_free_bytes = refuse_below_free_bytes
        self.task_state = task_state
        self.hasher = hasher
        self.failing_loads = failing_loads

    def sweep(self) -> SyncReport:
        """Stat every recorded file (`Reconciler.sweep`: ghosts, returns, content changed) and
        look for left-overs, and keep what was found for `report`. Seconds at 100,000 models.

        Returns:
            `SyncReport`: the stat sweep's findings (the watcher verifies ``changed_ids``).

        Raises:
            `IndexStoreError`: the index cannot be read or written.
            `OSError`: the root cannot be examined.
        """
        taken_at = datetime.now(timezone.utc)
        # Seconds anyway: the counts are made afresh too, so that what a writer that does not
        # keep them (an older version on a shared root) changed is counted after a sweep.
        self.catalog.index.recount()
        report = self.reconciler.sweep()
        orphans = find_orphans(self.layout, self.task_state, self.settings.stale_partial_seconds)
        save_sweep(
            self.catalog.index,
            SweepFigures(
                taken_at=taken_at,
                changed_ids=report.changed_ids,
                orphans=[
                    HealthItem(name=str(o.path), detail=o.reason, size=o.size)
                    for o in orphans[:MAX_ITEMS]
                ],
                orphan_count=len(orphans),
                orphan_bytes=sum(o.size for o in orphans),
            ),
        )
        return report

    def report(self, *, sweep: bool = False) -> HealthReport:
        """Every section, from the counts the index keeps and the last sweep's figures.

        Args:
            sweep (`bool`, *optional*): `sweep` first (``doctor``; seconds on a large library),
                instead of using what the last sweep found.

        Raises:
            `IndexStoreError`: the index cannot be read.
            `OSError`: the root cannot be examined.
        """
        if sweep:
            self.sweep()
        index = self.catalog.index
        with index.snapshot():  # every count agrees with the items listed under it
            figures = load_sweep(index)
            counts = index.count_rows()
            sections = {
                "corrupted": self._corrupted(_total(counts, health=Health.CORRUPTED)),
                "missing": self._missing(_total(counts, health=Health.MISSING, archived=False)),
                "damaged": self._damaged(_total(counts, health=Health.DAMAGED)),
                "changed": self._changed(figures),
                "pending": self._pending(
                    sum(c.models for c in counts if c.hash_state == "pending")
                ),
                "duplicates": self._duplicates(),
                "orphans": self._orphans(figures),
                "disk": self._disk(),
            }
        failing = self._failing_loads()
        checked = [*sections.values(), *([failing] if failing is not None else [])]
        ok = all(s.severity in (Severity.OK, Severity.INFO) for s in checked)
        return HealthReport(
            root=str(self.layout.root),
            generated_at=datetime.now(timezone.utc),
            swept_at=figures.taken_at if figures is not None else None,
            models=sum(c.models for c in counts),
            ok=ok,
            background=self._background(),
            failing_loads=failing,
            **sections,
        )

    def _failing_loads(self) -> HealthSection | None:
        if self.failing_loads is None:
            return None
        found = self.failing_loads()
        return HealthSection(
            key="failing_loads",
            title="Failing to load: their loader failed in recent ComfyUI runs",
            severity=Severity.WARNING if found else Severity.OK,
            count=len(found),
            items=[
                _item(record).model_copy(update={"detail": f"{count} failed loads in 30 days"})
                for record, count in found[:MAX_ITEMS]
            ],
            fix=(
                f"'{CLI} verify NAME' checks the file; 'repair NAME' fetches it again; a model "
                "in the wrong type folder or for another architecture fails too"
            )
            if found
            else None,
        )

    def _corrupted(self, count: int) -> HealthSection:
        records = self.catalog.index.with_health(Health.CORRUPTED.value, MAX_ITEMS)
        without_source = [r for r in records if not repairable(r)]
        fix = (
            f"'{CLI} repair NAME' (or 'repair --all') downloads it again from its source and "
            "verifies it"
        )
        if without_source:
            fix += "; with no known source: import a good copy, or remove it with 'rm NAME'"
        return HealthSection(
            key="corrupted",
            title="Corrupted: content differs from the record",
            severity=Severity.ERROR if count else Severity.OK,
            count=count,
            items=[_item(r) for r in records],
            fix=fix if count else None,
        )

    def _missing(self, count: int) -> HealthSection:
        # Archived stubs (files removed on purpose by cleanup) are not ghosts.
        records = self.catalog.index.with_health(Health.MISSING.value, MAX_ITEMS, archived=False)
        return HealthSection(
            key="missing",
            title="Missing: recorded, but the files are gone (ghosts)",
            severity=Severity.WARNING if count else Severity.OK,
            count=count,
            items=[_item(r) for r in records],
            fix=(
                "put the files back (they are found again), "
                f"'{CLI} repair NAME' to download them again, "
                f"or '{CLI} purge-ghosts' to forget them"
            )
            if count
            else None,
        )

    def _damaged(self, count: int) -> HealthSection:
        records = self.catalog.index.with_health(Health.DAMAGED.value, MAX_ITEMS)
        return HealthSection(
            key="damaged",
            title="Record damaged: unreadable, or it lists files outside the library",
            severity=Severity.ERROR if count else Severity.OK,
            count=count,
            items=[_item(r) for r in records],
            fix=(
                f"'{CLI} repair NAME' (or 'repair --all') re-creates the record from the model "
                "file, hashing it; the damaged record is kept in .shelf/damaged/"
            )
            if count
            else None,
        )

    def _changed(self, figures: SweepFigures | None) -> HealthSection:
        # What the sweep found, less what was verified (or changed otherwise) since.
        ids = (
            self.catalog.index.unverified_since(figures.changed_ids, figures.taken_at)
            if figures is not None
            else []
        )
        records = sorted(self.catalog.index.get_many(ids[:MAX_ITEMS]), key=ModelRecord.display)
        return HealthSection(
            key="changed",
            title="Changed on disk since recorded (not verified yet)",
            severity=Severity.WARNING if ids else Severity.OK,
            count=len(ids),
            items=[_item(r) for r in records],
            fix=(
                f"'{CLI} verify NAME' compares the content with the record "
                "(done by itself while the library is watched)"
            )
            if ids
            else None,
        )

    def _pending(self, count: int) -> HealthSection:
        rows = self.catalog.index.pending_rows(MAX_ITEMS)
        return HealthSection(
            key="pending",
            title="Waiting for their digests",
            severity=Severity.INFO if count else Severity.OK,
            count=count,
            items=[HealthItem(name=f"{r.type}/{r.name}", size=r.size, model_id=r.id) for r in rows],
            fix=(
                "hashed in the background while the library is watched (ComfyUI running), "
                f"or now with '{CLI} verify'"
            )
            if count
            else None,
        )

    def _duplicates(self) -> DuplicatesSection:
        groups = find_duplicates(self.catalog)
        mergeable = [g for g in groups if g.others]
        reclaimable = sum(g.size * len(g.others) for g in groups)
        return DuplicatesSection(
            key="duplicates",
            title="Same content under different names",
            severity=Severity.INFO if groups else Severity.OK,
            count=len(groups),
            items=[
                HealthItem(
                    name=g.keep,
                    detail="also as " + ", ".join(g.others + g.across_types),
                    size=g.size,
                )
                for g in groups[:MAX_ITEMS]
            ],
            groups=groups[:MAX_ITEMS],
            reclaimable_bytes=reclaimable,
            fix=(
                f"'{CLI} dedupe' keeps the oldest copy of each and records the other names as "
                f"its aliases (frees {human_size(reclaimable)}); copies in different type folders "
                "are only reported"
            )
            if mergeable
            else (
                "copies in different type folders: remove one with 'rm' if unneeded"
                if groups
                else None
            ),
        )

    def _orphans(self, figures: SweepFigures | None) -> HealthSection:
        count = figures.orphan_count if figures is not None else 0
        total = figures.orphan_bytes if figures is not None else 0
        return HealthSection(
            key="orphans",
            title="Left-over temporaries and partial downloads",
            severity=Severity.INFO if count else Severity.OK,
            count=count,
            items=figures.orphans if figures is not None else [],
            fix=f"'{CLI} clean' removes them (frees {human_size(total)})" if count else None,
        )

    def _disk(self) -> DiskSection:
        disk = disk_report(
            self.layout,
            self.catalog.index,
            self.settings.disk_warn_used_fraction,
            self.refuse_below_free_bytes,
        )
        if disk.free_bytes < disk.refuse_below_free_bytes:
            severity = Severity.ERROR
        elif disk.used_fraction >= disk.warn_used_fraction:
            severity = Severity.WARNING
        else:
            severity = Severity.OK
        detail = (
            f"{disk.used_fraction:.0%} used, {human_size(disk.free_bytes)} free of "
            f"{human_size(disk.total_bytes)}; downloads are refused below "
            f"{human_size(disk.refuse_below_free_bytes)} free"
        )
        return DiskSection(
            key="disk",
            title="Disk space",
            severity=severity,
            count=0 if severity is Severity.OK else 1,
            items=[HealthItem(name=disk.root, detail=detail, size=disk.free_bytes)]
            + [
                HealthItem(name=t.type, detail=f"{t.models} models", size=t.bytes)
                for t in disk.types
            ],
            disk=disk,
            fix=(
                "free space on that disk, or move the library root to a larger one (records hold "
                "paths relative to the root: nothing is re-hashed after a move)"
            )
            if severity is not Severity.OK
            else None,
        )

    def _background(self) -> HasherSection | None:
        if self.hasher is None or not self.hasher.running:
            return None
        status = self.hasher.status()
        return HasherSection(
            running=status.running,
            paused=status.paused,
            queued=status.queued,
            reading=len(status.reading),
            bytes_hashed=status.bytes_hashed,
            verify_pass_requested_at=status.pass_requested_at,
        )


def _total(counts: list[CountRow], *, health: Health, archived: bool | None = None) -> int:
    """Models with ``health`` (and, if given, that archived flag) in the kept counts."""
    return sum(
        c.models
        for c in counts
        if c.health == health.value and (archived is None or c.archived == archived)
    )
