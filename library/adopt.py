"""Adopt an existing ComfyUI ``models/`` folder: every model moves (or hardlinks) into the library.

Identical content (same sha256) is kept once: the duplicate's name becomes an alias of the
model kept, and in move mode the duplicate file is deleted, since it is byte-for-byte the same
as what stays. Nothing that is not identical to something kept is ever deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import Catalog
from .errors import ShelfError, SourceNotFoundError, UnsafeNameError, UnsupportedModeError
from .hashing import ProgressFn
from .imports import Importer, ImportMode, ModelUnit, hash_unit
from .layout import LEGACY_FOLDERS, MODEL_TYPES, Layout
from .removal import Remover
from .sync import scan_folders_under


@dataclass
class AdoptReport:
    """``type/name`` of each model imported, kept once, or left where it was (and why)."""

    imported: list[str] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    bytes_hashed: int = 0


class Adopter:
    def __init__(
        self, layout: Layout, catalog: Catalog, importer: Importer, remover: Remover
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.importer = importer
        self.remover = remover

    def adopt(
        self, models_dir: Path, mode: ImportMode, progress: ProgressFn | None = None
    ) -> AdoptReport:
        """Adopt every model under ``models_dir`` (a ComfyUI ``models/`` folder).

        Raises:
            `SourceNotFoundError`: ``models_dir`` is not a folder.
            `UnsafeNameError`: ``models_dir`` is inside the library itself.
            `UnsupportedModeError`: ``mode`` is copy (adopting means not keeping two copies).
        """
        if mode is ImportMode.COPY:
            raise UnsupportedModeError("adopt moves or hardlinks; use 'import --mode copy' to copy")
        models_dir = models_dir.absolute()
        if not models_dir.is_dir():
            raise SourceNotFoundError(f"no such folder: {models_dir}", path=str(models_dir))
        root = self.layout.root.absolute()
        if models_dir == root or root in models_dir.parents or models_dir in root.parents:
            raise UnsafeNameError(f"{models_dir} overlaps the library root {root}")
        report = AdoptReport()
        for model_type, unit, name in self._units(models_dir, report):
            try:
                self._adopt_one(unit, model_type, name, mode, report, progress)
            except ShelfError as exc:
                report.skipped.append(
                    {"path": str(unit.path), "code": exc.code, "reason": exc.message}
                )
        return report

    def _units(self, models_dir: Path, report: AdoptReport) -> Iterator[tuple[str, ModelUnit, str]]:
        for child in sorted(models_dir.iterdir()):
            if not child.is_dir():
                continue
            model_type = LEGACY_FOLDERS.get(child.name, child.name)
            if model_type not in MODEL_TYPES:
                report.skipped.append(
                    {"path": str(child), "code": "UNKNOWN_TYPE", "reason": "not a model folder"}
                )
                continue
            problems: list[str] = []
            for unit in scan_folders_under(child, problems):
                yield model_type, unit, unit.path.relative_to(child).as_posix()
            report.skipped += [
                {"path": p.split(": ", 1)[0], "code": "CORRUPT_FILE", "reason": p} for p in problems
            ]

    def _adopt_one(
        self,
        unit: ModelUnit,
        model_type: str,
        name: str,
        mode: ImportMode,
        report: AdoptReport,
        progress: ProgressFn | None,
    ) -> None:
        hashes = hash_unit(unit, progress)
        report.bytes_hashed += unit.size
        same = [
            r for r in self.catalog.index.by_hash(hashes.model["sha256"]) if r.type == model_type
        ]
        if not same:
            record = self.importer.import_unit(
                unit,
                model_type,
                mode,
                name=self.importer.target_name(unit, name),
                known_hashes=hashes,
            )
            report.imported.append(record.display())
            return
        kept = same[0]
        alias = self.importer.target_name(unit, name)
        if alias != kept.name and alias not in kept.aliases:
            kept.aliases.append(alias)
            self.catalog.save(kept)
        if mode is ImportMode.MOVE:
            self.remover.delete(unit.members, reason=f"identical to {kept.display()} (adopt)")
        report.duplicates.append(
            {
                "path": str(unit.path),
                "kept": kept.display(),
                "removed": str(mode is ImportMode.MOVE),
            }
        )
