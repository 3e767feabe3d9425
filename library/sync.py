"""Bring the index in line with the folders at start-up: stat only, no re-hash.

One walk of the type folders finds sidecars, model files and our temporaries. Sidecars newer
than their index row are re-read; rows whose sidecar is gone are dropped; model files nobody
recorded get a record (hashed later); records whose files vanished become ghosts (`MISSING`);
temporaries whose writer died are removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import Catalog
from .errors import RecordError, ShelfError
from .fsutil import is_abandoned_temp
from .imports import HashTiming, Importer, ModelUnit, find_unit
from .layout import (
    MODEL_EXTENSIONS,
    MODEL_TYPES,
    SIDECAR_SUFFIX,
    STATE_DIRNAME,
    TEMP_SUFFIX,
    Layout,
)
from .records import Health
from .removal import Remover
from .settings import STALE_TEMP_SECONDS

# A folder holding one of these is one model (diffusers and transformers layouts), not a
# subfolder of single-file models.
FOLDER_MODEL_MARKERS = ("model_index.json", "config.json")


@dataclass
class SyncReport:
    """What a sync changed; lists hold ``type/name`` strings or paths."""

    reread: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)
    ghosts: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    temps_removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class FolderScan:
    sidecars: dict[Path, int] = field(default_factory=dict)  # path -> mtime_ns
    model_files: dict[Path, os.stat_result] = field(default_factory=dict)
    folder_models: list[Path] = field(default_factory=list)
    temps: list[Path] = field(default_factory=list)


def _walk(top: Path, scan: FolderScan) -> None:
    """Add everything under ``top`` to ``scan``: one ``os.scandir`` per folder, no reads."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            name = entry.name
            if name.endswith(TEMP_SUFFIX):
                scan.temps.append(Path(entry.path))
            elif name.endswith(SIDECAR_SUFFIX):
                scan.sidecars[Path(entry.path)] = entry.stat().st_mtime_ns
            elif name == STATE_DIRNAME:
                continue
            elif entry.is_dir(follow_symlinks=False):
                path = Path(entry.path)
                if any((path / marker).is_file() for marker in FOLDER_MODEL_MARKERS):
                    scan.folder_models.append(path)
                else:
                    stack.append(path)
            elif os.path.splitext(name)[1].lower() in MODEL_EXTENSIONS:
                scan.model_files[Path(entry.path)] = entry.stat()


def scan_folders(layout: Layout) -> FolderScan:
    """One walk over every type folder of the library."""
    scan = FolderScan()
    for model_type in MODEL_TYPES:
        _walk(layout.root / model_type, scan)
    return scan


def group_units(scan: FolderScan, skip: set[Path], problems: list[str]) -> Iterator[ModelUnit]:
    """Model units among the scanned files and folders, minus ``skip``; a shard set counts once.

    An incomplete sharded set (still arriving, or a crashed copy) is reported in ``problems``
    and left alone.
    """
    for path in scan.folder_models:
        if path not in skip:
            yield find_unit(path)
    seen: set[Path] = set()
    for path in sorted(scan.model_files):
        if path in skip or path in seen:
            continue
        try:
            unit = find_unit(path)
        except ShelfError as exc:
            problems.append(f"{path}: {exc}")
            seen.add(path)
            continue
        seen.update(unit.members)
        yield unit


def scan_folders_under(top: Path, problems: list[str]) -> Iterator[ModelUnit]:
    """Every model unit under ``top`` (a folder outside the library, e.g. ComfyUI's models)."""
    scan = FolderScan()
    _walk(top, scan)
    yield from group_units(scan, set(), problems)


class Reconciler:
    """Runs the start-up sync."""

    def __init__(
        self, layout: Layout, catalog: Catalog, importer: Importer, remover: Remover
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.importer = importer
        self.remover = remover

    def sync(self) -> SyncReport:
        report = SyncReport()
        scan = scan_folders(self.layout)
        self._remove_abandoned_temps(scan, report)
        self._refresh_index(scan, report)
        self._check_files(scan, report)
        self._register_unrecorded(scan, report)
        return report

    def _remove_abandoned_temps(self, scan: FolderScan, report: SyncReport) -> None:
        abandoned = [p for p in scan.temps if is_abandoned_temp(p, STALE_TEMP_SECONDS)]
        if abandoned:
            self.remover.delete(abandoned, reason="temporary left by an interrupted import")
            report.temps_removed += [str(p) for p in abandoned]

    def _refresh_index(self, scan: FolderScan, report: SyncReport) -> None:
        indexed = self.catalog.index.sidecar_mtimes()
        seen: set[tuple[str, str]] = set()
        changed = []
        for sidecar, mtime_ns in scan.sidecars.items():
            key = self.layout.split(self.layout.model_for_sidecar(sidecar))
            seen.add(key)
            row = indexed.get(key)
            if row is not None and row[1] == mtime_ns:
                continue
            try:
                changed.append((self.catalog.records.read(sidecar), mtime_ns))
            except RecordError as exc:
                report.problems.append(str(exc))
                continue
            report.reread.append("/".join(key))
        self.catalog.index.upsert_many(changed)
        reread_ids = {record.id for record, _ in changed}
        for key, (model_id, _) in indexed.items():
            # A record renamed by hand keeps its id: its new row replaced the old one already.
            if key not in seen and model_id not in reread_ids:
                self.catalog.index.delete(model_id)
                report.dropped.append("/".join(key))

    def _check_files(self, scan: FolderScan, report: SyncReport) -> None:
        """Ghosts (files gone), returns (files back), and content changed behind our back."""
        for record in self.catalog.index.list():
            paths = self.catalog.records.file_paths(record)
            present = [p for p in paths if p in scan.model_files or p.is_file()]
            if len(present) < len(paths):
                if record.health is not Health.MISSING:
                    missing = ", ".join(p.name for p in paths if p not in present)
                    record.health, record.health_detail = Health.MISSING, f"file gone: {missing}"
                    self.catalog.save(record)
                report.ghosts.append(record.display())
                continue
            if record.health is Health.MISSING:
                record.health, record.health_detail = Health.OK, None
                self.catalog.save(record)
                report.returned.append(record.display())
            for entry, path in zip(record.files, paths, strict=True):
                stat = scan.model_files.get(path) or path.stat()
                if stat.st_size != entry.size or stat.st_mtime_ns != entry.mtime_ns:
                    report.changed.append(record.display())
                    break

    def _register_unrecorded(self, scan: FolderScan, report: SyncReport) -> None:
        recorded: set[Path] = set()
        for record in self.catalog.index.list():
            recorded.update(self.catalog.records.file_paths(record))
            recorded.add(self.catalog.records.model_path(record))
        for unit in group_units(scan, recorded, report.problems):
            try:
                record = self.importer.register_in_place(unit, hashing=HashTiming.DEFERRED)
            except ShelfError as exc:
                report.problems.append(f"{unit.path}: {exc}")
                continue
            report.registered.append(record.display())
