"""`Shelf`: the one object everything outside ``library/`` talks to.

It wires the services together (layout, records, index, importer, adopter, verifier, sync)
and delegates; it holds no logic of its own beyond choosing which service answers.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from .adopt import Adopter, AdoptReport
from .catalog import Catalog
from .errors import IndexStoreError, RecordError
from .hashing import ProgressFn
from .imports import HashTiming, Importer, ImportMode, find_unit
from .index import IndexStore, SortOrder
from .layout import Layout, check_type
from .records import HashState, ModelRecord, RecordStore, SourceRef
from .removal import Remover
from .sync import Reconciler, SyncReport, scan_folders
from .verify import Verifier, VerifyResult


class Shelf:
    """A library root, opened. Safe to use from several threads and processes at once.

    Use `Shelf.open` (which also syncs the index with the folders) and `close`, or ``with``.
    """

    def __init__(self, root: Path) -> None:
        self.layout = Layout(Path(root).absolute())
        self.layout.ensure()
        self.records = RecordStore(self.layout)
        self.index = _open_index(self.layout)
        self.catalog = Catalog(self.records, self.index)
        self.remover = Remover(self.layout)
        self.importer = Importer(self.layout, self.catalog, self.remover)
        self.adopter = Adopter(self.layout, self.catalog, self.importer, self.remover)
        self.verifier = Verifier(self.catalog)
        self.reconciler = Reconciler(self.layout, self.catalog, self.importer, self.remover)
        self.last_sync: SyncReport | None = None

    @classmethod
    def open(cls, root: Path) -> Shelf:
        """Open ``root`` (created if needed) and bring the index up to date with the folders.

        Raises:
            `RootUnavailableError`: the root cannot be created or written.
        """
        shelf = cls(root)
        shelf.sync()
        return shelf

    @property
    def root(self) -> Path:
        return self.layout.root

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> Shelf:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------

    def list_models(
        self,
        model_type: str | None = None,
        order: SortOrder = SortOrder.TYPE,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelRecord]:
        if model_type is not None:
            model_type = check_type(model_type)
        return self.index.list(model_type, order, limit, offset)

    def search(
        self, text: str, model_type: str | None = None, limit: int = 50
    ) -> list[ModelRecord]:
        if model_type is not None:
            model_type = check_type(model_type)
        return self.index.search(text, model_type, limit)

    def find(self, query: str, model_type: str | None = None) -> ModelRecord:
        """One model by ``type/name``, name, alias or hash prefix. See `Catalog.find`."""
        return self.catalog.find(query, model_type)

    def model_path(self, record: ModelRecord) -> Path:
        return self.records.model_path(record)

    # -- changing ------------------------------------------------------------

    def import_model(
        self,
        path: Path,
        model_type: str,
        mode: ImportMode = ImportMode.COPY,
        *,
        name: str | None = None,
        hashing: HashTiming = HashTiming.NOW,
        sources: Sequence[SourceRef] = (),
        progress: ProgressFn | None = None,
    ) -> ModelRecord:
        """Import a file, sharded set or folder. See `Importer.import_unit` for errors."""
        model_type = check_type(model_type)
        unit = find_unit(Path(path).absolute())
        return self.importer.import_unit(
            unit, model_type, mode, name=name, hashing=hashing, sources=sources, progress=progress
        )

    def adopt(
        self,
        models_dir: Path,
        mode: ImportMode = ImportMode.MOVE,
        progress: ProgressFn | None = None,
    ) -> AdoptReport:
        """Adopt a ComfyUI ``models/`` folder. See `Adopter.adopt`."""
        return self.adopter.adopt(Path(models_dir), mode, progress)

    def remove(self, query: str) -> ModelRecord:
        """Delete a model's files and its record together (journaled), and drop it from the index.

        Raises:
            `ModelNotFoundError`, `AmbiguousModelError`: as `find`.
        """
        record = self.find(query)
        paths = [self.records.model_path(record), *self.records.file_paths(record)]
        unique = list(dict.fromkeys(paths))  # a single-file model's path is also its only file
        self.remover.delete(
            [*unique, self.records.sidecar_path(record)], reason="removed by user", record=record
        )
        self.index.delete(record.id)
        return record

    def verify(
        self,
        queries: Sequence[str] = (),
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> list[VerifyResult]:
        """Re-hash the named models (all when none named) and record what was found."""
        records = [self.find(q) for q in queries] if queries else self.index.list()
        return [self.verifier.verify(r, progress, cancel) for r in records]

    def hash_pending(self, progress: ProgressFn | None = None) -> list[VerifyResult]:
        """Compute full digests for models recorded with a fingerprint only."""
        pending = [r for r in self.index.list() if r.hash_state is HashState.PENDING]
        return [self.verifier.verify(r, progress) for r in pending]

    def sync(self) -> SyncReport:
        """Stat-only reconcile of index and folders (see `Reconciler`)."""
        self.last_sync = self.reconciler.sync()
        return self.last_sync

    def rebuild_index(self) -> int:
        """Recreate the index from the sidecars alone; returns the number of models.

        Bad sidecars are skipped and reported by `sync` afterwards.
        """
        self.index.clear()
        good = []
        for sidecar, mtime_ns in scan_folders(self.layout).sidecars.items():
            try:
                good.append((self.records.read(sidecar), mtime_ns))
            except RecordError:
                continue
        count = self.index.upsert_many(good)
        self.sync()
        return count


def _open_index(layout: Layout) -> IndexStore:
    """Open the index; one that is not a database any more is set aside and rebuilt later."""
    try:
        return IndexStore(layout.index_db)
    except (IndexStoreError, sqlite3.DatabaseError):
        broken = layout.index_db.with_name(layout.index_db.name + ".broken")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(layout.index_db) + suffix)
            if src.exists():
                src.replace(Path(str(broken) + suffix))
        return IndexStore(layout.index_db)
