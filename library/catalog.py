"""Records and index kept in step: every save writes the sidecar, then the index row."""

from __future__ import annotations

import threading

from .errors import AmbiguousModelError, ModelNotFoundError
from .index import IndexStore
from .layout import LEGACY_FOLDERS, MODEL_EXTENSIONS, MODEL_TYPES
from .records import ModelRecord, RecordStore


class Catalog:
    """The one way to save or look up a record."""

    def __init__(self, records: RecordStore, index: IndexStore) -> None:
        self.records = records
        self.index = index
        self.lock = threading.RLock()
        """Held by a change made from what was read a moment before (the watcher marking a
        ghost) and by a removal it must not undo (a repair setting the model aside), so that
        in this process one never saves a record the other has just removed."""

    def save(self, record: ModelRecord) -> ModelRecord:
        """Write the sidecar (the truth), then refresh the index row from it."""
        self.records.write(record)
        self.index.upsert(record, self.records.sidecar_path(record).stat().st_mtime_ns)
        return record

    def create(self, record: ModelRecord) -> ModelRecord:
        """Like `save`, for a record that must be new; never replaces another's sidecar.

        Raises:
            `NameClashError`: a sidecar already exists for that model.
        """
        self.records.create(record)
        self.index.upsert(record, self.records.sidecar_path(record).stat().st_mtime_ns)
        return record

    def find(self, query: str, model_type: str | None = None) -> ModelRecord:
        """One model by ``type/name``, name, bare filename, alias, or hash prefix (8+ hex digits);
        last, a name without its extension (``a`` or ``loras/a`` for ``loras/a.safetensors``).

        Raises:
            `ModelNotFoundError`: nothing matches.
            `AmbiguousModelError`: several models match; the message lists them.
        """
        matches = self.find_all(query, model_type)
        if not matches:
            raise ModelNotFoundError(f"no model matches {query!r}")
        if len(matches) > 1:
            names = ", ".join(m.display() for m in matches[:10])
            raise AmbiguousModelError(f"{query!r} matches several models: {names}")
        return matches[0]

    def find_all(self, query: str, model_type: str | None = None) -> list[ModelRecord]:
        """Every model matching ``query``, trying the most specific kind of match first."""
        first, _, rest = query.partition("/")
        first = LEGACY_FOLDERS.get(first, first)
        if rest and model_type is None and first in MODEL_TYPES:
            found = self.index.by_name(rest, first)
            if found:
                return found
        for lookup in (self.index.by_name, self.index.by_alias):
            found = lookup(query, model_type)
            if found:
                return found
        found = [r for r in self.index.by_hash(query) if model_type is None or r.type == model_type]
        if found:
            return found
        # Least specific: a name typed without its extension ("a" for loras/a.safetensors),
        # with or without its type folder; several matches make `find` list them.
        if rest and model_type is None and first in MODEL_TYPES:
            found = self.index.by_stem(rest, MODEL_EXTENSIONS, first)
            if found:
                return found
        return self.index.by_stem(query, MODEL_EXTENSIONS, model_type)
