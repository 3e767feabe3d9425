"""Bring a file, a sharded set or a folder into a type folder: move, copy or hardlink.

A model appears at its final name only complete: copies go to an owner-tagged temporary beside
the target and are fsynced and renamed; moves and hardlinks are single renames/links. Its record
is written after the file is in place, so a record always describes a whole file.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .catalog import Catalog
from .errors import (
    CorruptModelError,
    NameClashError,
    NotAModelError,
    ShelfError,
    SourceNotFoundError,
    UnsupportedModeError,
)
from .fsutil import (
    place_no_clobber,
    remove_path,
    require_free_space,
    storage_errors,
    temp_sibling,
)
from .hashing import Hashes, ProgressFn, hash_file, hash_stream, manifest_hashes
from .layout import MODEL_EXTENSIONS, Layout, check_type, is_shelf_file, keep_extension, safe_name
from .probe import ProbeResult, probe_files, probe_path
from .records import FileEntry, HashState, Health, ModelKind, ModelRecord, SourceRef
from .removal import Remover

SHARD_PATTERN = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})(?P<ext>\.[^.]+)$")

MAX_FOLDER_FILES = 10_000
"""More files than this in one folder is no model (a diffusers folder holds a few dozen): the
walk stops there, so a folder such as ``/`` is refused at once instead of copied."""

FREE_SPACE_MARGIN = 256 * 1024 * 1024
"""Kept free on the target disk after a copy, so the system and the index still have room."""


class ImportMode(str, Enum):
    MOVE = "move"  # a rename on the same filesystem; a copy then delete across filesystems
    COPY = "copy"  # hashed while copying
    LINK = "link"  # a hardlink; same filesystem only


class HashTiming(str, Enum):
    NOW = "now"  # digests before the import returns
    DEFERRED = "deferred"  # size + mtime now, digests later (`Shelf.hash_pending`)


@dataclass
class ModelUnit:
    """What one import brings in: one file, a folder, or the shards of one model."""

    kind: ModelKind
    path: Path  # the file, the folder, or the first shard
    members: list[Path]  # every file, absolute

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.members)

    def weight_files(self) -> list[Path]:
        return [p for p in self.members if p.suffix.lower() in MODEL_EXTENSIONS]


@dataclass
class ImportBatch:
    """What importing a path did: the models imported, and each one that was not (why)."""

    imported: list[ModelRecord] = field(default_factory=list)
    failed: list[tuple[str, ShelfError]] = field(default_factory=list)
    """``(path, error)`` of each model left out; the others were imported all the same."""


@dataclass
class UnitHashes:
    """Digests of every member (keyed by path relative to the unit's parent) and of the whole."""

    files: dict[str, Hashes] = field(default_factory=dict)
    model: Hashes = field(default_factory=dict)


def find_unit(path: Path) -> ModelUnit:
    """Decide what ``path`` is as a model.

    Raises:
        `SourceNotFoundError`: nothing at ``path``.
        `NotAModelError`: not a model file, or a folder with no model file in it.
        `CorruptModelError`: a shard of a sharded set is missing.
    """
    if not path.exists():
        raise SourceNotFoundError(f"no such file or folder: {path}", path=str(path))
    if path.is_dir():
        members = _folder_members(path)
        if not any(p.suffix.lower() in MODEL_EXTENSIONS for p in members):
            raise NotAModelError(f"{path} holds no model file", path=str(path))
        return ModelUnit(ModelKind.FOLDER, path, members)
    if path.suffix.lower() not in MODEL_EXTENSIONS:
        known = " ".join(sorted(MODEL_EXTENSIONS))
        raise NotAModelError(f"{path.name} is not a model file (expected {known})", path=str(path))
    shard = SHARD_PATTERN.match(path.name)
    if shard is None:
        return ModelUnit(ModelKind.FILE, path, [path])
    total = int(shard["total"])
    shards = [
        path.with_name(f"{shard['stem']}-{i:05d}-of-{shard['total']}{shard['ext']}")
        for i in range(1, total + 1)
    ]
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise CorruptModelError(
            f"sharded set {shard['stem']} is incomplete: missing {', '.join(missing)}",
            path=str(path),
        )
    members = list(shards)
    index_json = path.with_name(f"{shard['stem']}{shard['ext']}.index.json")
    if index_json.is_file():
        members.append(index_json)
    return ModelUnit(ModelKind.SHARDED, shards[0], members)


def _folder_members(path: Path) -> list[Path]:
    """Every file below ``path`` but our own (links to folders not followed), sorted.

    A subfolder that vanishes meanwhile is skipped (it holds nothing any more).

    Raises:
        `NotAModelError`: over `MAX_FOLDER_FILES` files, or a subfolder cannot be read.
    """
    members: list[Path] = []
    pending = [path]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                found = list(entries)
            for entry in found:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file() and not is_shelf_file(entry.name):
                    members.append(Path(entry.path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise NotAModelError(
                f"{path} cannot be imported: {folder} cannot be read ({exc.strerror or exc})",
                path=str(path),
            ) from exc
        if len(members) > MAX_FOLDER_FILES:
            raise NotAModelError(
                f"{path} holds over {MAX_FOLDER_FILES} files: not a model folder", path=str(path)
            )
    return sorted(members)


def hash_unit(unit: ModelUnit, progress: ProgressFn | None = None) -> UnitHashes:
    """Hash every member of ``unit`` once; see `manifest_hashes` for multi-file identity."""
    files = {
        _source_key(unit, member): hash_file(member, progress=progress).hashes
        for member in unit.members
    }
    return _unit_hashes(unit.kind, files)


def _source_key(unit: ModelUnit, member: Path) -> str:
    return member.relative_to(unit.path.parent).as_posix()


def _placements(unit: ModelUnit, target: Path) -> list[tuple[Path, Path]]:
    """(source file, final path) for every member of ``unit`` placed at ``target``."""
    if unit.kind is ModelKind.FILE:
        return [(unit.path, target)]
    if unit.kind is ModelKind.SHARDED:
        return [(m, target.parent / m.name) for m in unit.members]
    return [(m, target / m.relative_to(unit.path)) for m in unit.members]


def _rekey(
    digests: dict[str, Hashes], unit: ModelUnit, target: Path, placements: list[tuple[Path, Path]]
) -> dict[str, Hashes]:
    """Digests keyed by source key -> keyed by the placed file's path relative to the record."""
    return {
        dst.relative_to(target.parent).as_posix(): digests[_source_key(unit, src)]
        for src, dst in placements
    }


def _unit_hashes(kind: ModelKind, files: dict[str, Hashes]) -> UnitHashes:
    if kind is ModelKind.FILE:
        return UnitHashes(files=files, model=next(iter(files.values())))
    return UnitHashes(files=files, model=manifest_hashes(files.items()))


class Importer:
    """Places model units into type folders and records them."""

    def __init__(self, layout: Layout, catalog: Catalog, remover: Remover) -> None:
        self.layout = layout
        self.catalog = catalog
        self.remover = remover

    def target_name(self, unit: ModelUnit, name: str | None) -> str:
        """The record name for ``unit``: ``name`` made safe, else the source's own name.

        For a sharded set the shard file names are kept; ``name`` is then a subfolder.
        """
        if unit.kind is ModelKind.SHARDED:
            prefix = safe_name(name) + "/" if name else ""
            return prefix + unit.path.name
        if unit.kind is ModelKind.FILE and name:
            return keep_extension(safe_name(name), unit.path.suffix)
        return safe_name(name or unit.path.name)

    def import_unit(
        self,
        unit: ModelUnit,
        model_type: str,
        mode: ImportMode,
        *,
        name: str | None = None,
        hashing: HashTiming = HashTiming.NOW,
        known_hashes: UnitHashes | None = None,
        sources: Sequence[SourceRef] = (),
        aliases: Sequence[str] = (),
        progress: ProgressFn | None = None,
    ) -> ModelRecord:
        """Place ``unit`` in the type folder and write its record. Validates everything first.

        Args:
            unit (`ModelUnit`): from `find_unit`.
            model_type (`str`): a ComfyUI folder type.
            mode (`ImportMode`): move, copy or link.
            name (`str`, *optional*): name under the type folder (subfolders allowed).
            hashing (`HashTiming`, *optional*): digest now (default) or record a fingerprint only.
            known_hashes (`UnitHashes`, *optional*): digests already computed (adopt), not re-read.
            sources, aliases: stored in the record.
            progress (`ProgressFn`, *optional*): bytes copied or hashed.

        Returns:
            `ModelRecord`: the new record, already in the index.

        Raises:
            `UnknownTypeError`, `UnsafeNameError`, `NameClashError`, `CorruptModelError`,
            `UnsupportedModeError`, `StorageFullError`: each before the library is changed.
        """
        model_type = check_type(model_type)
        if unit.kind is ModelKind.FOLDER and self.layout.root.resolve().is_relative_to(
            unit.path.resolve()
        ):
            raise NotAModelError(
                f"{unit.path} holds the library itself: import the model's own folder",
                path=str(unit.path),
            )
        record_name = self.target_name(unit, name)
        target = self.layout.model_path(model_type, record_name)
        placements = _placements(unit, target)
        self._refuse_clash(target, [dst for _, dst in placements])
        if unit.kind is ModelKind.FOLDER:
            probe = probe_path(unit.path)  # knows diffusers folders
        else:
            probe = probe_files(unit.weight_files())
        target.parent.mkdir(parents=True, exist_ok=True)

        # Digests are known before the model appears at its final name (hashed while copying,
        # given by the caller, or read from the source just now), so its record follows within
        # milliseconds: a watcher never sees a placed model without its record for long.
        digests: dict[str, Hashes] | None = known_hashes.files if known_hashes else None
        if (
            digests is None
            and hashing is HashTiming.NOW
            and _places_without_copy(unit, target, mode)
        ):
            digests = hash_unit(unit, progress).files
        try:
            if mode is ImportMode.COPY:
                digests = self._copy(unit, target, placements, progress)
            elif mode is ImportMode.LINK:
                self._link(unit, target, placements)
            else:
                digests = self._move(unit, target, placements, progress) or digests
        except FileNotFoundError as exc:
            if isinstance(exc, SourceNotFoundError):
                raise
            # A source file deleted or renamed while it was read (the temporaries are gone).
            raise SourceNotFoundError(
                f"{exc.filename or unit.path} vanished while it was imported", path=str(unit.path)
            ) from exc

        entries = self._entries(target, placements)
        unit_hashes = None
        if digests is not None:
            unit_hashes = _unit_hashes(unit.kind, _rekey(digests, unit, target, placements))
        return self._record(
            model_type, record_name, unit.kind, entries, unit_hashes, probe, sources, aliases
        )

    def register_in_place(
        self,
        unit: ModelUnit,
        hashing: HashTiming = HashTiming.NOW,
        progress: ProgressFn | None = None,
    ) -> ModelRecord:
        """Record a model that already sits in a type folder (copied in by hand, or placed by
        an import that was killed before it wrote the record). Nothing is moved.

        A file whose header is corrupt is recorded as `Health.CORRUPTED`, so it is reported
        instead of silently ignored.
        """
        model_type, name = self.layout.split(unit.path)
        placements = [(m, m) for m in unit.members]
        target = unit.path
        entries = self._entries(target, placements)
        # A link leading outside the library is never recorded, probed or hashed.
        self.catalog.records.file_paths(
            ModelRecord(type=model_type, name=name, kind=unit.kind, files=entries)
        )
        try:
            probe = (
                probe_path(unit.path)
                if unit.kind is ModelKind.FOLDER
                else probe_files(unit.weight_files())
            )
            problem = None
        except CorruptModelError as exc:
            probe, problem = ProbeResult(error=str(exc)), str(exc)
        unit_hashes = (
            self._hash_placed(unit.kind, target, entries, progress)
            if hashing is HashTiming.NOW
            else None
        )
        record = self._record(
            model_type, name, unit.kind, entries, unit_hashes, probe, (), (), save=False
        )
        if problem is not None:
            record.health, record.health_detail = Health.CORRUPTED, problem
        # Another process may be importing this very file and about to write its full record
        # (sources, aliases, digests): a bare record found by a scan must never replace it.
        return self.catalog.create(record)

    # -- placement -----------------------------------------------------------

    def _refuse_clash(self, target: Path, destinations: list[Path]) -> None:
        for path in [target, *destinations, self.layout.sidecar_for(target)]:
            if path.exists() or path.is_symlink():
                raise NameClashError(
                    f"{self.layout.split(target)[1]} already exists in "
                    f"{self.layout.split(target)[0]}; choose another --name",
                    path=str(path),
                )

    def _copy(
        self,
        unit: ModelUnit,
        target: Path,
        placements: list[tuple[Path, Path]],
        progress: ProgressFn | None,
    ) -> dict[str, Hashes]:
        """Copy with hashing into temporaries, fsync, then place. Returns digests by source key."""
        require_free_space(target, unit.size, FREE_SPACE_MARGIN)
        digests: dict[str, Hashes] = {}

        def copy(src: Path, tmp: Path) -> None:
            digests[_source_key(unit, src)] = _copy_file(src, tmp, progress)

        _place_through_temps(unit, target, placements, copy)
        return digests

    def _link(self, unit: ModelUnit, target: Path, placements: list[tuple[Path, Path]]) -> None:
        try:
            _place_through_temps(unit, target, placements, os.link)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise UnsupportedModeError(
                    f"cannot hardlink {unit.path} into the library ({exc.strerror}); "
                    "hardlinks need the same filesystem: use --mode copy or move",
                    path=str(unit.path),
                ) from exc
            raise

    def _move(
        self,
        unit: ModelUnit,
        target: Path,
        placements: list[tuple[Path, Path]],
        progress: ProgressFn | None,
    ) -> dict[str, Hashes] | None:
        """Rename into place; across filesystems copy (hashing) and then delete the source."""
        try:
            if unit.kind is ModelKind.FOLDER:
                place_no_clobber(unit.path, target)
            else:
                for src, dst in placements:
                    place_no_clobber(src, dst)
            return None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        digests = self._copy(unit, target, placements, progress)
        self.remover.delete(
            [unit.path] if unit.kind is ModelKind.FOLDER else [src for src, _ in placements],
            reason=f"moved across filesystems to {target}",
        )
        return digests

    # -- records -------------------------------------------------------------

    def _entries(self, target: Path, placements: list[tuple[Path, Path]]) -> list[FileEntry]:
        base = target.parent
        entries = []
        for _, dst in placements:
            stat = dst.stat()
            entries.append(
                FileEntry(
                    path=dst.relative_to(base).as_posix(),
                    size=stat.st_size,
                    mtime_ns=stat.st_mtime_ns,
                )
            )
        return entries

    def _hash_placed(
        self, kind: ModelKind, target: Path, entries: list[FileEntry], progress: ProgressFn | None
    ) -> UnitHashes:
        files = {
            e.path: hash_file(target.parent / e.path, progress=progress).hashes for e in entries
        }
        return _unit_hashes(kind, files)

    def _record(
        self,
        model_type: str,
        name: str,
        kind: ModelKind,
        entries: list[FileEntry],
        unit_hashes: UnitHashes | None,
        probe: ProbeResult,
        sources: Sequence[SourceRef],
        aliases: Sequence[str],
        *,
        save: bool = True,
    ) -> ModelRecord:
        if unit_hashes is not None:
            for entry in entries:
                entry.hashes = unit_hashes.files[entry.path]
        record = ModelRecord(
            type=model_type,
            name=name,
            kind=kind,
            size=sum(e.size for e in entries),
            files=entries,
            hashes=unit_hashes.model if unit_hashes else {},
            hash_state=HashState.HASHED if unit_hashes else HashState.PENDING,
            probe=probe,
            sources=list(sources),
            aliases=[a for a in aliases if a != name],
        )
        return self.catalog.save(record) if save else record


def _places_without_copy(unit: ModelUnit, target: Path, mode: ImportMode) -> bool:
    """True when ``mode`` will rename or hardlink (same filesystem), not copy the bytes."""
    if mode is ImportMode.COPY:
        return False
    return unit.path.stat().st_dev == target.parent.stat().st_dev


def _place_through_temps(
    unit: ModelUnit,
    target: Path,
    placements: list[tuple[Path, Path]],
    make_file: Callable[[Path, Path], object],
) -> None:
    """Build every file at a temporary name with ``make_file(src, tmp)``, then place them all.

    A folder model is built inside one temporary folder renamed at the end, so it appears
    whole or not at all; the files of a sharded set each get a temporary sibling. Temporaries
    are removed on any failure.
    """
    if unit.kind is ModelKind.FOLDER:
        tmp_dir = temp_sibling(target)
        try:
            for src, dst in placements:
                tmp_file = tmp_dir / dst.relative_to(target)
                tmp_file.parent.mkdir(parents=True, exist_ok=True)
                make_file(src, tmp_file)
            place_no_clobber(tmp_dir, target)
        finally:
            if tmp_dir.exists():
                remove_path(tmp_dir)
        return
    temps: list[tuple[Path, Path]] = []
    try:
        for src, dst in placements:
            temps.append((temp_sibling(dst), dst))
            make_file(src, temps[-1][0])
        for tmp, dst in temps:
            place_no_clobber(tmp, dst)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def _copy_file(src: Path, dst: Path, progress: ProgressFn | None) -> Hashes:
    """Copy one file to a new path, hashing every byte on the way; fsync before returning."""
    with open(src, "rb", buffering=0) as fin, storage_errors(dst), open(dst, "xb") as fout:
        result = hash_stream(fin, sink=fout, progress=progress)
        fout.flush()
        os.fsync(fout.fileno())
    shutil.copymode(src, dst)
    return result.hashes
