"""What the last sweep found, kept in the index so that the health report reads it instead of
looking at every file again.

A sweep (`Doctor.sweep`: ``doctor``, the watcher's catch-up at start, the sidebar's "Check
files") stats every recorded file and walks the folders for left-overs: seconds at 100,000
models. Its findings are kept with the time it ran (`SweepFigures`), and the report says that
time; a start-up sync adds what it found in the folders it looked at (`note_sync`). The
counts that the index itself knows (corrupted, missing, pending, duplicates, disk use) never
come from here: they are kept current by the index's writer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, Field, ValidationError

from ..index import IndexStore
from ..sync import SyncReport
from .report import HealthItem

SWEEP_KIND = "sweep"


class SweepFigures(BaseModel):
    """The figures of one sweep: content changed behind the records, and left-overs."""

    taken_at: datetime
    """When the sweep started (what it found was true then)."""
    changed_ids: list[str] = Field(default_factory=list)
    """Models whose files' size or mtime differ from their records (content to verify)."""
    orphans: list[HealthItem] = Field(default_factory=list)
    """The first left-overs (`doctor.MAX_ITEMS`)."""
    orphan_count: int = 0
    orphan_bytes: int = 0


def load_sweep(index: IndexStore) -> SweepFigures | None:
    """The last sweep's figures; None if none was kept (or they cannot be read: a sweep made by
    another version, say; the next sweep replaces them).

    Raises:
        `IndexStoreError`: the index cannot be read.
    """
    kept = index.load_sweep(SWEEP_KIND)
    if kept is None:
        return None
    try:
        return SweepFigures.model_validate_json(kept[1])
    except ValidationError:
        return None


def save_sweep(index: IndexStore, figures: SweepFigures) -> None:
    """Keep ``figures``, replacing the last sweep's.

    Raises:
        `IndexStoreError`: the index cannot be written.
    """
    index.save_sweep(SWEEP_KIND, figures.taken_at, figures.model_dump_json())


def _change(index: IndexStore, change: Callable[[SweepFigures], SweepFigures | None]) -> None:
    """Apply ``change`` to the kept figures, if any, in one transaction (None: no change)."""

    def on_body(body: str) -> str | None:
        try:
            figures = SweepFigures.model_validate_json(body)
        except ValidationError:
            return None  # unreadable: the next sweep replaces it
        changed = change(figures)
        return changed.model_dump_json() if changed is not None else None

    index.change_sweep(SWEEP_KIND, on_body)


def forget_orphans(index: IndexStore) -> None:
    """The left-overs were just removed (``clean``): the kept figures no longer list them."""
    _change(
        index,
        lambda f: (
            f.model_copy(update={"orphans": [], "orphan_count": 0, "orphan_bytes": 0})
            if f.orphan_count
            else None
        ),
    )


def note_sync(index: IndexStore, report: SyncReport) -> None:
    """Bring the kept figures in line with what a start-up sync found in the folders it looked
    at: content changed there is added, temporaries it removed are no longer left-overs. The
    sweep's time stays (the rest is as of then); without kept figures nothing is kept (the
    left-overs elsewhere were not looked for)."""
    if not (report.changed_ids or report.temps_removed):
        return
    removed = set(report.temps_removed)

    def change(figures: SweepFigures) -> SweepFigures:
        gone = [o for o in figures.orphans if o.name in removed]
        return figures.model_copy(
            update={
                "changed_ids": list(dict.fromkeys([*figures.changed_ids, *report.changed_ids])),
                "orphans": [o for o in figures.orphans if o.name not in removed],
                "orphan_count": max(0, figures.orphan_count - len(gone)),
                "orphan_bytes": max(0, figures.orphan_bytes - sum(o.size or 0 for o in gone)),
            }
        )

    _change(index, change)
