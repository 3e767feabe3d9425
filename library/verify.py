"""Verify models against their records: re-read every file once and compare digests."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .catalog import Catalog
from .errors import RecordError
from .hashing import ProgressFn, hash_file, manifest_hashes
from .records import HashState, Health, ModelKind, ModelRecord, utc_now


@dataclass
class VerifyResult:
    model: str
    health: Health
    detail: str | None
    bytes_read: int
    model_id: str | None = None
    retry: bool = False
    """No verdict: a file changed while it was read, or the record moved meanwhile. Try later."""


class Verifier:
    """Checks records against file content and records the verdict.

    ``bytes_hashed`` counts every byte this verifier has read (all threads): benchmarks and
    tests use it to prove that a rename or a relocation re-hashed nothing.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.bytes_hashed = 0
        self._count_lock = threading.Lock()

    def verify(
        self,
        record: ModelRecord,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> VerifyResult:
        """Re-hash ``record``'s files and compare; a model never hashed gets its digests now.

        A model already hashed is checked with xxh3-128 alone (several times faster than
        sha256; its other digests are trusted as long as xxh3 agrees). A file written to while
        it is read gives no verdict (``retry``); so does a record moved or replaced meanwhile.

        Raises:
            `HashCancelled`: ``cancel`` was set; nothing is recorded.
        """
        if record.health is Health.DAMAGED:
            return VerifyResult(
                record.display(), Health.DAMAGED, record.health_detail, 0, record.id
            )
        try:
            paths = self.catalog.records.file_paths(record)
        except RecordError as exc:  # an index row older than the check: nothing is read
            return VerifyResult(record.display(), Health.DAMAGED, exc.message, 0, record.id)
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            return self._conclude(record, Health.MISSING, f"file gone: {', '.join(missing)}", 0)
        first_time = record.hash_state is HashState.PENDING
        algorithms = ("xxh3_128", "sha256", "blake3") if first_time else ("xxh3_128",)
        bytes_read = 0
        bad: list[str] = []
        for entry, path in zip(record.files, paths, strict=True):
            before = path.stat()
            result = hash_file(path, algorithms=algorithms, progress=progress, cancel=cancel)
            with self._count_lock:
                self.bytes_hashed += result.size
            bytes_read += result.size
            stat = path.stat()
            if (before.st_size, before.st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                return VerifyResult(
                    record.display(),
                    record.health,
                    f"{entry.path} changed while it was read",
                    bytes_read,
                    record.id,
                    retry=True,
                )
            if first_time:
                entry.hashes = result.hashes
                entry.size, entry.mtime_ns = stat.st_size, stat.st_mtime_ns
            elif result.hashes["xxh3_128"] != entry.hashes.get("xxh3_128"):
                bad.append(entry.path)
            else:
                # Same content, maybe touched: remember the new mtime so the stat-only sync
                # stops seeing a change.
                entry.mtime_ns = stat.st_mtime_ns
        if first_time:
            record.size = sum(e.size for e in record.files)
            record.hashes = (
                record.files[0].hashes
                if record.kind is ModelKind.FILE
                else manifest_hashes((e.path, e.hashes) for e in record.files)
            )
            record.hash_state = HashState.HASHED
        if bad:
            return self._conclude(
                record,
                Health.CORRUPTED,
                f"content differs from record: {', '.join(bad)}",
                bytes_read,
            )
        return self._conclude(record, Health.OK, None, bytes_read)

    def _conclude(
        self, record: ModelRecord, health: Health, detail: str | None, bytes_read: int
    ) -> VerifyResult:
        record.health, record.health_detail = health, detail
        if health is not Health.MISSING:
            record.verified_at = utc_now()
        fresh = self._fresh(record)
        if fresh is None:
            return VerifyResult(
                record.display(),
                health,
                "the record was moved or replaced while the files were read",
                bytes_read,
                record.id,
                retry=True,
            )
        self.catalog.save(fresh)
        return VerifyResult(record.display(), health, detail, bytes_read, record.id)

    def _fresh(self, record: ModelRecord) -> ModelRecord | None:
        """The record as its sidecar holds it now, with this verification's findings applied.

        Hashing a big file takes minutes; meanwhile another thread or process may have saved
        the record (usage counts, tags) or moved it. Their changes are kept; a record that is
        gone or now describes other files gets nothing (None).
        """
        try:
            fresh = self.catalog.records.read(self.catalog.records.sidecar_path(record))
        except RecordError:
            return None
        if fresh.id != record.id or [e.path for e in fresh.files] != [e.path for e in record.files]:
            return None
        fresh.files = record.files
        fresh.size, fresh.hashes, fresh.hash_state = record.size, record.hashes, record.hash_state
        fresh.health, fresh.health_detail = record.health, record.health_detail
        fresh.verified_at = record.verified_at
        return fresh
