"""Bring the index in line with the folders: at start-up (stat only, no re-hash) and, one
location at a time, for the watcher.

The start-up sync walks the type folders once with ``os.scandir`` and compares each folder's
mtime with the one the index saw last time. A folder whose mtime has not moved has the same
entries as then (every create, delete and rename in it moves its mtime, and our sidecars are
always written by rename), so nothing in it is looked at further: with no changes the sync
costs one ``scandir`` and one ``stat`` per folder, not per file. In a folder that changed:
sidecars newer than their index row are re-read; rows whose sidecar is gone are dropped; model
files nobody recorded get a record (hashed later), or take over the record of a ghost with the
same files (renamed while we were not running: identity and digests kept); records whose files
vanished become ghosts (`MISSING`); temporaries whose writer died are removed.

A file rewritten in place does not move its folder's mtime: `Reconciler.sweep` (run in the
background by the watcher, and by ``doctor``) stats every recorded file for that.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import Catalog
from .errors import RecordError, ShelfError, UnsafeNameError
from .fsutil import is_abandoned_temp
from .imports import SHARD_PATTERN, HashTiming, Importer, ModelUnit, find_unit
from .index import IndexStore, LocationRow
from .layout import (
    MODEL_EXTENSIONS,
    MODEL_TYPES,
    SIDECAR_SUFFIX,
    STATE_DIRNAME,
    TEMP_SUFFIX,
    Layout,
)
from .records import FileEntry, Health, ModelKind, ModelRecord
from .removal import Remover
from .settings import STALE_TEMP_SECONDS

# A folder holding one of these is one model (diffusers and transformers layouts), not a
# subfolder of single-file models.
log = logging.getLogger("model_shelf")

FOLDER_MODEL_MARKERS = ("model_index.json", "config.json")

RACY_MTIME_NS = 2_000_000_000
"""A folder whose mtime is this close to the start of a sync is looked at again next time:
a second change within the same clock tick would leave its mtime where it was."""


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
    moved: list[str] = field(default_factory=list)
    """``old -> new`` for records that followed their renamed model (no re-hash)."""
    changed_ids: list[str] = field(default_factory=list)
    """Ids of the ``changed`` models: content to verify against the record."""
    folders_seen: int = 0
    folders_examined: int = 0
    """Folders whose entries were looked at (the others had not changed since last time)."""

    @property
    def touched_types(self) -> set[str]:
        """Type folders where the index changed (what listeners need to refresh)."""
        names = [*self.reread, *self.dropped, *self.registered, *self.ghosts, *self.returned]
        names += [part for move in self.moved for part in move.split(" -> ")]
        return {name.split("/", 1)[0] for name in names}


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


def units_to_import(path: Path, problems: list[str]) -> list[ModelUnit]:
    """What importing ``path`` brings in: one model for a file, a sharded set or a folder
    model (one with ``model_index.json`` or ``config.json``, e.g. diffusers); for a plain
    folder, each model inside it, grouped as a scan of the library groups them (a folder of
    2,500 LoRAs is 2,500 models; a sharded set or a diffusers folder inside stays one).

    Raises:
        As `find_unit` (nothing there, not a model, an incomplete sharded set); a plain
        folder's incomplete sets are reported in ``problems`` instead.
    """
    if not path.is_dir() or any((path / m).is_file() for m in FOLDER_MODEL_MARKERS):
        return [find_unit(path)]
    units = list(scan_folders_under(path, problems))
    if not units and not problems:
        find_unit(path)  # raises: the folder holds no model file
    return units


def scan_folders_under(top: Path, problems: list[str]) -> Iterator[ModelUnit]:
    """Every model unit under ``top`` (a folder outside the library, e.g. ComfyUI's models)."""
    scan = FolderScan()
    _walk(top, scan)
    yield from group_units(scan, set(), problems)


# -- the incremental walk -------------------------------------------------------------------------


@dataclass
class LibraryWalk:
    """What one walk of the type folders found; folders are relative to the root (POSIX)."""

    scan: FolderScan = field(default_factory=FolderScan)
    """Entries of the plain folders that changed (nothing from unchanged ones)."""
    folders: dict[str, int] = field(default_factory=dict)
    """Every folder seen -> its mtime_ns."""
    changed: set[str] = field(default_factory=set)
    """Plain folders (not folder models) whose entries changed since the last sync, or new."""
    changed_models: set[str] = field(default_factory=set)
    """Folder models with a change anywhere inside (their own folder or a nested one)."""


def walk_library(layout: Layout, known: dict[str, int] | None) -> LibraryWalk:
    """Walk every type folder; look inside only the folders whose mtime differs from ``known``.

    Args:
        layout (`Layout`): the library.
        known (`dict[str, int]`, *optional*): folder mtimes from the last sync; None looks
            inside every folder (a full sync).

    Returns:
        `LibraryWalk`: the folders seen and the entries of those that changed.
    """
    walk = LibraryWalk()
    root = str(layout.root)
    for model_type in MODEL_TYPES:
        top = os.path.join(root, model_type)
        try:
            top_mtime = os.stat(top).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            continue
        # (relative path, absolute path, mtime_ns, the folder model it lies in)
        stack: list[tuple[str, str, int, str | None]] = [(model_type, top, top_mtime, None)]
        while stack:
            rel, path, mtime, owner = stack.pop()
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            walk.folders[rel] = mtime
            changed = known is None or known.get(rel) != mtime
            if owner is None and "/" in rel and _has_marker(entries):
                owner = rel
            if owner is not None:
                if changed:
                    walk.changed_models.add(owner)
            elif changed:
                walk.changed.add(rel)
            for entry in entries:
                name = entry.name
                if name.endswith(TEMP_SUFFIX):
                    if changed and owner is None:
                        walk.scan.temps.append(Path(entry.path))
                    continue  # a folder import in progress: never descended into
                if name == STATE_DIRNAME:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    sub_mtime = entry.stat(follow_symlinks=False).st_mtime_ns
                    stack.append((f"{rel}/{name}", entry.path, sub_mtime, owner))
                elif not changed or owner is not None:
                    continue
                elif name.endswith(SIDECAR_SUFFIX):
                    walk.scan.sidecars[Path(entry.path)] = entry.stat().st_mtime_ns
                elif os.path.splitext(name)[1].lower() in MODEL_EXTENSIONS:
                    walk.scan.model_files[Path(entry.path)] = entry.stat()
    walk.scan.folder_models = [layout.root / rel for rel in sorted(walk.changed_models)]
    return walk


def _has_marker(entries: list[os.DirEntry[str]]) -> bool:
    return any(e.name in FOLDER_MODEL_MARKERS and e.is_file() for e in entries)


# -- locations ------------------------------------------------------------------------------------


def is_ignored(layout: Layout, path: Path) -> bool:
    """True for paths that are never models: outside the type folders, our state folder,
    temporaries (ours, or anything in a temporary folder)."""
    try:
        rel = path.relative_to(layout.root)
    except ValueError:
        return True
    parts = rel.parts
    if len(parts) < 2 or parts[0] not in MODEL_TYPES:
        return True
    return any(p.endswith(TEMP_SUFFIX) or p == STATE_DIRNAME for p in parts)


def location_for(
    layout: Layout, path: Path, recorded_folder: set[str] | None = None
) -> Path | None:
    """The model location (file, first shard, or folder model) that ``path`` belongs to.

    A sidecar belongs to the model it describes. A file inside a folder model (a folder with a
    marker file, or recorded as a folder model) belongs to that folder. ``path`` need not exist
    any more (a deletion). None for paths that belong to no model (ignored paths, other files).

    Args:
        layout (`Layout`): the library.
        path (`Path`): an absolute path below the root.
        recorded_folder (`set[str]`, *optional*): ``type/name`` of folder models the index
            knows, so that a deleted folder model's files still find it.
    """
    if is_ignored(layout, path):
        return None
    if path.name.endswith(SIDECAR_SUFFIX):
        return layout.model_for_sidecar(path)
    type_dir = layout.root / path.relative_to(layout.root).parts[0]
    ancestor = path.parent
    while ancestor != type_dir:
        rel = ancestor.relative_to(layout.root).as_posix()
        if (recorded_folder is not None and rel in recorded_folder) or any(
            (ancestor / m).is_file() for m in FOLDER_MODEL_MARKERS
        ):
            return ancestor
        ancestor = ancestor.parent
    if path.suffix.lower() not in MODEL_EXTENSIONS:
        return None
    shard = SHARD_PATTERN.match(path.name)
    if shard is not None:
        return path.with_name(f"{shard['stem']}-00001-of-{shard['total']}{shard['ext']}")
    return path


# -- fingerprints ---------------------------------------------------------------------------------


def _entry_keys(kind: ModelKind, model_name: str, paths: list[str]) -> list[str]:
    """Keys pairing a model's files across a rename: the path inside a folder model; the
    position for shards (their stem may change); one key for a single file."""
    if kind is ModelKind.FOLDER:
        prefix = model_name.rsplit("/", 1)[-1] + "/"
        return [p[len(prefix) :] if p.startswith(prefix) else p for p in paths]
    if kind is ModelKind.SHARDED:
        return [str(i) for i in range(len(paths))]
    return [""] * len(paths)


def _unit_entries(layout: Layout, unit: ModelUnit) -> list[tuple[str, Path]]:
    """``(key, path)`` for every member of ``unit``, in the importer's order."""
    base = unit.path.parent
    if unit.kind is ModelKind.SHARDED:
        members = sorted(unit.members, key=lambda p: p.name)
    else:
        members = list(unit.members)
    rels = [m.relative_to(base).as_posix() for m in members]
    keys = _entry_keys(unit.kind, unit.path.name, rels)
    return list(zip(keys, members, strict=True))


def _record_keys(record: ModelRecord) -> list[str]:
    files = record.files
    if record.kind is ModelKind.SHARDED:
        files = sorted(files, key=lambda e: e.path.rsplit("/", 1)[-1])
    return _entry_keys(record.kind, record.name, [e.path for e in files])


# -- the reconciler -------------------------------------------------------------------------------


class Reconciler:
    """Runs the start-up sync and the watcher's per-location updates."""

    def __init__(
        self, layout: Layout, catalog: Catalog, importer: Importer, remover: Remover
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.importer = importer
        self.remover = remover

    @property
    def index(self) -> IndexStore:
        return self.catalog.index

    # -- the start-up sync -------------------------------------------------------------------

    def sync(self, full: bool = False) -> SyncReport:
        """Reconcile index and folders, looking only inside folders changed since last time.

        Args:
            full (`bool`, *optional*): look inside every folder (after the index was cleared).

        Returns:
            `SyncReport`: what changed.

        Raises:
            `IndexStoreError`: the index cannot be read or written.
        """
        started_ns = time.time_ns()
        report = SyncReport()
        known = {} if full else self.index.folder_mtimes()
        walk = walk_library(self.layout, None if full else known)
        vanished = [rel for rel in known if rel not in walk.folders]
        report.folders_seen = len(walk.folders)
        report.folders_examined = len(walk.changed) + len(walk.changed_models)
        if not (walk.changed or walk.changed_models or vanished):
            return report  # the common case: nothing changed while we were away
        unclean: set[str] = set()
        self._remove_abandoned_temps(walk.scan, report, unclean)
        affected = walk.changed | set(vanished)
        self._refresh_index(walk, affected, report, unclean)
        rows = [
            row
            for row in self.index.location_rows()
            if row.folder in affected
            or (
                row.kind == ModelKind.FOLDER.value
                and f"{row.type}/{row.name}" in walk.changed_models
            )
        ]
        self._check_rows(rows, walk.scan.model_files, report)
        self._register_unrecorded(walk, rows, report, unclean)
        self._save_folder_mtimes(walk, known, vanished, unclean, started_ns)
        return report

    def _remove_abandoned_temps(
        self, scan: FolderScan, report: SyncReport, unclean: set[str]
    ) -> None:
        abandoned = []
        for path in scan.temps:
            if is_abandoned_temp(path, STALE_TEMP_SECONDS):
                abandoned.append(path)
            else:  # a live writer: look at this folder again next time
                unclean.add(self._rel(path.parent))
        if abandoned:
            self.remover.delete(abandoned, reason="temporary left by an interrupted import")
            report.temps_removed += [str(p) for p in abandoned]

    def _refresh_index(
        self, walk: LibraryWalk, affected: set[str], report: SyncReport, unclean: set[str]
    ) -> None:
        indexed = {(r.type, r.name): r for r in self.index.location_rows()}
        seen: set[tuple[str, str]] = set()
        changed = []
        for sidecar, mtime_ns in walk.scan.sidecars.items():
            key = self.layout.split(self.layout.model_for_sidecar(sidecar))
            seen.add(key)
            row = indexed.get(key)
            if row is not None and row.sidecar_mtime_ns == mtime_ns:
                continue
            changed.append((self.read_record(sidecar, report), mtime_ns))
            report.reread.append("/".join(key))
        self.index.upsert_many(changed)
        reread_ids = {record.id for record, _ in changed}
        for key, row in indexed.items():
            if row.folder in affected and key not in seen:
                # A sidecar renamed by hand was just re-read under its new name with the same
                # id (the upsert replaced this row): deleting by id would delete that.
                if row.id not in reread_ids:
                    self.index.delete(row.id)
                report.dropped.append("/".join(key))

    def read_record(self, sidecar: Path, report: SyncReport) -> ModelRecord:
        """The record in ``sidecar``; one that cannot be read or leads outside its folder is
        reported (and logged) and stands as a `Health.DAMAGED` record, so the model stays
        listed and is never acted on by the damaged content."""
        try:
            return self.catalog.records.read(sidecar)
        except RecordError as exc:
            log.warning("Model Shelf: %s", exc)
            report.problems.append(str(exc))
            return self.catalog.records.damaged(sidecar, exc.message)

    def _register_unrecorded(
        self, walk: LibraryWalk, rows: list[LocationRow], report: SyncReport, unclean: set[str]
    ) -> None:
        recorded: set[Path] = set()
        for record in self.index.get_many(r.id for r in rows):
            recorded.add(self.catalog.records.model_path(record))
            try:
                recorded.update(self.catalog.records.file_paths(record))
            except RecordError as exc:
                report.problems.append(str(exc))
        problems: list[str] = []
        units = list(group_units(walk.scan, recorded, problems))
        for problem in problems:
            unclean.add(self._rel(Path(problem.split(": ", 1)[0]).parent))
        report.problems += problems
        ghosts = self.index.with_health(Health.MISSING.value) if units else []
        for unit in units:
            try:
                self.register(unit, report, ghosts)
            except (ShelfError, OSError) as exc:
                report.problems.append(f"{unit.path}: {exc}")
                unclean.add(self._rel(unit.path.parent))

    def _save_folder_mtimes(
        self,
        walk: LibraryWalk,
        known: dict[str, int],
        vanished: list[str],
        unclean: set[str],
        started_ns: int,
    ) -> None:
        """Remember each folder's mtime; 0 (look again) for racy or unfinished folders."""
        updates = {}
        for rel, mtime in walk.folders.items():
            value = 0 if rel in unclean or started_ns - mtime < RACY_MTIME_NS else mtime
            if known.get(rel) != value:
                updates[rel] = value
        if updates or vanished:
            self.index.update_folder_mtimes(updates, vanished)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()

    # -- the sweep ---------------------------------------------------------------------------

    def sweep(self) -> SyncReport:
        """Stat every recorded file and sidecar: finds what folder mtimes cannot show (a file
        rewritten in place, a sidecar edited in place). No file is read.

        Returns:
            `SyncReport`: ``changed``/``changed_ids`` for content to verify, plus ghosts,
            returns and re-read sidecars.

        Raises:
            `IndexStoreError`: the index cannot be read or written.
        """
        report = SyncReport()
        stale = []
        for row in self.index.location_rows():
            sidecar = self.layout.sidecar_for(self.layout.model_path(row.type, row.name))
            try:
                mtime_ns = sidecar.stat().st_mtime_ns
            except FileNotFoundError:
                continue  # its folder changed: the next sync (or the watcher) drops the row
            if mtime_ns != row.sidecar_mtime_ns:
                stale.append((self.read_record(sidecar, report), mtime_ns))
                report.reread.append(f"{row.type}/{row.name}")
        self.index.upsert_many(stale)
        self._check_rows(self.index.location_rows(), {}, report)
        return report

    # -- checks shared by sync, sweep and the watcher --------------------------------------------

    def _check_rows(
        self, rows: list[LocationRow], stats: dict[Path, os.stat_result], report: SyncReport
    ) -> None:
        """Ghosts (files gone), returns (files back), and content changed behind our back."""
        files_by_id = self.index.files_of(r.id for r in rows)
        to_save: dict[str, tuple[Health, str | None]] = {}
        for row in rows:
            folder = self.layout.root / row.folder
            entries = files_by_id.get(row.id, [])
            missing = []
            changed = False
            for rel, size, mtime_ns in entries:
                path = folder / rel
                stat = stats.get(path)
                if stat is None:
                    try:
                        stat = path.stat()
                    except (FileNotFoundError, NotADirectoryError):
                        missing.append(path.name)
                        continue
                if stat.st_size != size or stat.st_mtime_ns != mtime_ns:
                    changed = True
            display = f"{row.type}/{row.name}"
            if missing:
                if row.health != Health.MISSING.value:
                    to_save[row.id] = (Health.MISSING, f"file gone: {', '.join(missing)}")
                report.ghosts.append(display)
                continue
            if row.health == Health.MISSING.value:
                to_save[row.id] = (Health.OK, None)
                report.returned.append(display)
            if changed:
                report.changed.append(display)
                report.changed_ids.append(row.id)
        for model_id, (health, detail) in to_save.items():
            with self.catalog.lock:
                # Read again under the lock: a record removed since the rows were read (a
                # repair setting the model aside) must not come back, or it would block the
                # download that replaces it.
                record = self.index.get(model_id)
                if record is None or not self.catalog.records.sidecar_path(record).exists():
                    continue
                record.health, record.health_detail = health, detail
                self.catalog.save(record)

    def check(self, record: ModelRecord, report: SyncReport) -> None:
        """Compare one record with its files (see `sweep`) and record a ghost or a return."""
        row = self.index.location_row(record.type, record.name)
        if row is not None:
            self._check_rows([row], {}, report)

    # -- one location (the watcher) ------------------------------------------------------------

    def refresh(self, location: Path, report: SyncReport) -> ModelRecord | None:
        """Bring the index row for the model at ``location`` in line with its sidecar.

        Returns:
            `ModelRecord`: the record there now (a bad one is reported in ``problems`` and
            stands as a damaged record); None if no sidecar (a row is dropped).
        """
        model_type, name = self.layout.split(location)
        sidecar = self.layout.sidecar_for(location)
        row = self.index.location_row(model_type, name)
        try:
            mtime_ns = sidecar.stat().st_mtime_ns
        except FileNotFoundError:
            if row is not None:
                self.index.delete(row.id)
                report.dropped.append(f"{model_type}/{name}")
            return None
        if row is not None and row.sidecar_mtime_ns == mtime_ns:
            return self.index.get(row.id)
        record = self.read_record(sidecar, report)
        self.index.upsert(record, mtime_ns)
        report.reread.append(record.display())
        return record

    def register(
        self,
        unit: ModelUnit,
        report: SyncReport,
        ghosts: list[ModelRecord] | None = None,
    ) -> ModelRecord:
        """Record a model found in a type folder: as a ghost that came back under another name
        (same files: identity and digests kept, nothing hashed), else as a new model whose
        digests are computed later.

        Args:
            unit (`ModelUnit`): the model, in a type folder.
            report (`SyncReport`): gets ``moved`` or ``registered``.
            ghosts (`list[ModelRecord]`, *optional*): the index's ghosts, if already loaded.

        Raises:
            `ShelfError`: the unit cannot be recorded (reported by the caller).
        """
        if ghosts is None:
            ghosts = self.index.with_health(Health.MISSING.value)
        ghost = self._matching_ghost(unit, ghosts)
        if ghost is not None:
            ghosts.remove(ghost)
            moved = self.relocate(ghost, unit, report)
            if moved is not None:
                return moved
        record = self.importer.register_in_place(unit, hashing=HashTiming.DEFERRED)
        report.registered.append(record.display())
        return record

    def move(self, src: Path, dest: Path, report: SyncReport) -> ModelRecord | None:
        """The model at ``src`` was renamed to ``dest`` (both in type folders): its record
        follows, keeping id and digests. Nothing is read.

        Returns:
            `ModelRecord`: the moved record; None when there is nothing to move (no record at
            ``src``, or ``dest`` already has a sidecar) and the caller should treat the two
            places as a deletion and a creation.
        """
        try:
            old_type, old_name = self.layout.split(src)
        except UnsafeNameError:
            return None
        record = self.index.get_at(old_type, old_name)
        if record is None or self.layout.sidecar_for(dest).exists():
            return None
        try:
            unit = find_unit(dest)
        except ShelfError:
            return None
        if unit.kind is not record.kind:
            return None
        return self.relocate(record, unit, report)

    def relocate(
        self, record: ModelRecord, unit: ModelUnit, report: SyncReport
    ) -> ModelRecord | None:
        """Make ``record`` describe ``unit`` at its new place: new name and file paths, same id,
        digests and everything else. The old name stays as an alias (old workflows still find
        the model). The sidecar is written at the new place and the old one removed.

        Returns:
            `ModelRecord`: the record, saved; None if the files do not pair up.
        """
        old_files = record.files
        if record.kind is ModelKind.SHARDED:
            old_files = sorted(old_files, key=lambda e: e.path.rsplit("/", 1)[-1])
        old_by_key = dict(zip(_record_keys(record), old_files, strict=True))
        new_entries: list[FileEntry] = []
        base = unit.path.parent
        for key, member in _unit_entries(self.layout, unit):
            old = old_by_key.pop(key, None)
            if old is None:
                return None
            new_entries.append(old.model_copy(update={"path": member.relative_to(base).as_posix()}))
        if old_by_key:
            return None
        old_display = record.display()
        old_sidecar = self.catalog.records.sidecar_path(record)
        new_type, new_name = self.layout.split(unit.path)
        if (
            new_type == record.type
            and new_name != record.name
            and record.name not in record.aliases
        ):
            record.aliases.append(record.name)
        if new_name in record.aliases:
            record.aliases.remove(new_name)
        record.type, record.name, record.files = new_type, new_name, new_entries
        if record.health is Health.MISSING:
            record.health, record.health_detail = Health.OK, None
        self.catalog.save(record)
        if old_sidecar != self.catalog.records.sidecar_path(record):
            self.remover.delete(
                [old_sidecar], reason=f"record moved with its model to {record.display()}"
            )
        report.moved.append(f"{old_display} -> {record.display()}")
        for entry, path in zip(record.files, self.catalog.records.file_paths(record), strict=True):
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) != (entry.size, entry.mtime_ns):
                report.changed.append(record.display())
                report.changed_ids.append(record.id)
                break
        return record

    def _matching_ghost(self, unit: ModelUnit, ghosts: list[ModelRecord]) -> ModelRecord | None:
        """The ghost whose files have the same sizes and mtimes as ``unit``'s (a rename keeps
        both), pairing files as `relocate` does. None unless exactly one matches."""
        candidates = [g for g in ghosts if g.kind is unit.kind]
        if not candidates:
            return None
        mine = sorted(
            (key, stat.st_size, stat.st_mtime_ns)
            for key, stat in ((k, m.stat()) for k, m in _unit_entries(self.layout, unit))
        )
        matches = []
        for ghost in candidates:
            files = ghost.files
            if ghost.kind is ModelKind.SHARDED:
                files = sorted(files, key=lambda e: e.path.rsplit("/", 1)[-1])
            theirs = sorted(
                (key, e.size, e.mtime_ns) for key, e in zip(_record_keys(ghost), files, strict=True)
            )
            if theirs == mine:
                matches.append(ghost)
        return matches[0] if len(matches) == 1 else None

    def rows_under(self, folder: Path) -> list[LocationRow]:
        """Index rows of the models at or below ``folder`` (a type folder or one inside it)."""
        if folder.parent == self.layout.root and folder.name in MODEL_TYPES:
            return self.index.location_rows(folder.name)
        try:
            model_type, name = self.layout.split(folder)
        except UnsafeNameError:
            return []
        return self.index.rows_under(model_type, name)

    def recorded_folder_models(self) -> set[str]:
        """``type/name`` of every folder model in the index."""
        return {
            f"{r.type}/{r.name}"
            for r in self.index.location_rows()
            if r.kind == ModelKind.FOLDER.value
        }
