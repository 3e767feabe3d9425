"""Models with the same content under different names: found by sha256, deduplicated into one
file whose record keeps the other names as aliases (workflows that use them still resolve).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import Catalog
from ..errors import RecordError
from ..index import DuplicateRow
from ..records import HashState, Health, ModelRecord, RecordStore
from ..removal import Remover
from ..verify import Verifier
from .report import DuplicateGroup


@dataclass
class DedupeReport:
    """``kept -> [names removed and aliased]`` and groups left alone (with why)."""

    merged: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def find_duplicates(catalog: Catalog) -> list[DuplicateGroup]:
    """Every group of models sharing a sha256, oldest first (the one `dedupe` keeps). Reads the
    index's shared-sha256 rows only: no record is parsed, no other row is read."""
    by_sha: dict[str, list[DuplicateRow]] = {}
    for row in catalog.index.duplicate_rows():
        by_sha.setdefault(row.sha256, []).append(row)
    groups = []
    for sha256, rows in by_sha.items():
        kept = rows[0]
        groups.append(
            DuplicateGroup(
                sha256=sha256,
                size=kept.size,
                keep=f"{kept.type}/{kept.name}",
                others=[f"{r.type}/{r.name}" for r in rows[1:] if r.type == kept.type],
                across_types=[f"{r.type}/{r.name}" for r in rows[1:] if r.type != kept.type],
            )
        )
    return groups


class Deduplicator:
    """Keeps one copy of each duplicated model; the others' names become its aliases."""

    def __init__(
        self, records: RecordStore, catalog: Catalog, remover: Remover, verifier: Verifier
    ) -> None:
        self.records = records
        self.catalog = catalog
        self.remover = remover
        self.verifier = verifier

    def dedupe(self, keep: set[str] | None = None, only: set[str] | None = None) -> DedupeReport:
        """Merge every same-type duplicate group.

        The copy kept (the oldest, or the one named in ``keep``) is verified first: a copy that
        no longer matches its digests is never the one kept. Each duplicate's names, tags and
        sources move to the kept record, which is saved before the duplicate's files and
        sidecar are removed (journaled), so a crash in between loses nothing.

        Args:
            keep (`set[str]`, *optional*): copies to keep instead of the oldest: ``type/name``,
                name, file name, alias or hash, as `Catalog.find` takes them.
            only (`set[str]`, *optional*): merge only groups holding one of these ``type/name``
                (cleanup merges the copies it listed, nothing more).

        Returns:
            `DedupeReport`: what was merged and what was left alone.

        Raises:
            `ModelNotFoundError`, `AmbiguousModelError`: a name in ``keep``, before any change.
        """
        keep_ids = {self.catalog.find(name).id for name in keep or ()}
        report = DedupeReport()
        for records in self.catalog.index.duplicate_groups():
            by_type: dict[str, list[ModelRecord]] = {}
            for record in records:
                by_type.setdefault(record.type, []).append(record)
            for group in by_type.values():
                if only is not None and not any(r.display() in only for r in group):
                    continue
                if len(group) > 1:
                    self._merge(group, keep_ids, report)
        return report

    def _merge(self, group: list[ModelRecord], keep_ids: set[str], report: DedupeReport) -> None:
        usable = []
        paths: dict[str, list[Path]] = {}
        for record in group:
            if record.health is not Health.OK or record.hash_state is not HashState.HASHED:
                continue
            try:  # a record leading outside the library is never merged, kept or deleted
                files = self.records.file_paths(record)
            except RecordError:
                continue
            paths[record.id] = [self.records.model_path(record), *files]
            usable.append(record)
        if len(usable) < 2:
            report.skipped.append(
                f"{', '.join(r.display() for r in group)}: not all verified copies (verify first)"
            )
            return
        chosen = [r for r in usable if r.id in keep_ids]
        ordered = chosen + [r for r in usable if r not in chosen]
        kept = None
        for candidate in ordered:
            if self.verifier.verify(candidate).health is Health.OK:
                kept = self.catalog.index.get(candidate.id)
                break
        if kept is None:
            report.skipped.append(f"{group[0].display()}: no copy matches its digests")
            return
        others = [r for r in usable if r.id != kept.id]
        for other in others:
            for name in [other.name, *other.aliases]:
                if name != kept.name and name not in kept.aliases:
                    kept.aliases.append(name)
            kept.tags += [t for t in other.tags if t not in kept.tags]
            known = {s.url for s in kept.sources}
            kept.sources += [s for s in other.sources if s.url not in known]
            kept.usage.count += other.usage.count
        self.catalog.save(kept)
        for other in others:
            self.remover.delete(
                [*dict.fromkeys(paths[other.id]), self.records.sidecar_path(other)],
                reason=f"duplicate of {kept.display()} (dedupe)",
                record=other,
            )
            self.catalog.index.delete(other.id)
            report.bytes_freed += other.size
        report.merged[kept.display()] = [o.display() for o in others]
