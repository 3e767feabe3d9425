"""Left-overs: temporaries of interrupted writes, partial downloads no task owns, ghosts.

Everything goes through the `Remover` (journaled), and only what is certainly abandoned: a
temporary whose writer on this machine is dead, or that is older than
`HealthSettings.stale_partial_seconds` when written by another machine; a partial download whose
task is gone or finished, once that old too. Paused and failed downloads keep theirs (they can
be resumed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import Catalog
from ..fsutil import is_abandoned_temp
from ..layout import MODEL_TYPES, STATE_DIRNAME, TEMP_SUFFIX, Layout
from ..records import Health
from ..removal import Remover

TaskStateOf = Callable[[str], str | None]
"""Task id -> its state (a `TaskState` value), or None if there is no such task."""

KEEPS_PARTIAL = frozenset({"queued", "downloading", "paused", "verifying", "failed"})
"""Task states whose partial data is still wanted (resumable)."""


@dataclass
class Orphan:
    path: Path
    size: int
    reason: str


@dataclass
class CleanReport:
    removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0


def _temps(layout: Layout) -> list[Path]:
    """Every temporary under the type folders and the state folder (not inside temp folders)."""
    found = []
    stack = [layout.root / t for t in MODEL_TYPES] + [layout.state_dir]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name.endswith(TEMP_SUFFIX):
                found.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False) and entry.name != STATE_DIRNAME:
                stack.append(Path(entry.path))
    return found


def find_orphans(
    layout: Layout, task_state: TaskStateOf | None, max_age_seconds: float
) -> list[Orphan]:
    """Temporaries and partial downloads nobody will finish.

    Args:
        layout (`Layout`): the library.
        task_state (`TaskStateOf`, *optional*): looks up download tasks; without it, partial
            downloads count only by age.
        max_age_seconds (`float`): how old an orphan must be when its owner cannot be asked.
    """
    orphans = []
    for path in _temps(layout):
        if is_abandoned_temp(path, max_age_seconds):
            orphans.append(Orphan(path, _size(path), "temporary of an interrupted write"))
    now = time.time()
    try:
        partials = list(os.scandir(layout.partial_dir))
    except FileNotFoundError:
        partials = []
    for entry in partials:
        path = Path(entry.path)
        if entry.name.endswith(TEMP_SUFFIX):
            continue  # counted above
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if age <= max_age_seconds:
            continue
        task_id = entry.name.split(".", 1)[0]
        state = task_state(task_id) if task_state is not None else None
        if state in KEEPS_PARTIAL:
            continue
        why = "no download task" if state is None else f"download task {task_id} is {state}"
        orphans.append(Orphan(path, _size(path), f"partial download: {why}"))
    return orphans


class Cleaner:
    """Removes orphans and purges ghosts, through the one deletion path."""

    def __init__(self, layout: Layout, catalog: Catalog, remover: Remover) -> None:
        self.layout = layout
        self.catalog = catalog
        self.remover = remover

    def clean(self, orphans: list[Orphan]) -> CleanReport:
        """Remove ``orphans`` (from `find_orphans`), each journaled with its reason."""
        report = CleanReport()
        for orphan in orphans:
            self.remover.delete([orphan.path], reason=f"clean: {orphan.reason}")
            report.removed.append(str(orphan.path))
            report.bytes_freed += orphan.size
        return report

    def purge_ghosts(self, names: set[str] | None = None) -> list[str]:
        """Forget models whose files are gone: their sidecars are removed (journaled with the
        whole record) and their rows dropped.

        Args:
            names (`set[str]`, *optional*): ``type/name`` of the ghosts to purge; all if None.

        Returns:
            `list[str]`: ``type/name`` of each purged ghost.
        """
        purged = []
        for record in self.catalog.index.with_health(Health.MISSING.value):
            if names is not None and record.display() not in names:
                continue
            if names is None and record.archived_at is not None:
                continue  # archived on purpose, to be fetched again: only purged by name
            present = [p for p in self.catalog.records.file_paths(record) if p.exists()]
            if present:
                continue  # came back meanwhile: not a ghost any more
            self.remover.delete(
                [self.catalog.records.sidecar_path(record)],
                reason="ghost purged by user (its files were gone)",
                record=record,
            )
            self.catalog.index.delete(record.id)
            purged.append(record.display())
        return purged
