"""Verify models against their records: re-read every file once and compare digests."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .catalog import Catalog
from .hashing import ProgressFn, hash_file, manifest_hashes
from .records import HashState, Health, ModelKind, ModelRecord, utc_now


@dataclass
class VerifyResult:
    model: str
    health: Health
    detail: str | None
    bytes_read: int


class Verifier:
    """Checks records against file content and records the verdict."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def verify(
        self,
        record: ModelRecord,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> VerifyResult:
        """Re-hash ``record``'s files and compare; a model never hashed gets its digests now.

        A model already hashed is checked with xxh3-128 alone (several times faster than
        sha256; its other digests are trusted as long as xxh3 agrees).
        """
        paths = self.catalog.records.file_paths(record)
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            return self._conclude(record, Health.MISSING, f"file gone: {', '.join(missing)}", 0)
        first_time = record.hash_state is HashState.PENDING
        algorithms = ("xxh3_128", "sha256", "blake3") if first_time else ("xxh3_128",)
        bytes_read = 0
        bad: list[str] = []
        for entry, path in zip(record.files, paths, strict=True):
            result = hash_file(path, algorithms=algorithms, progress=progress, cancel=cancel)
            bytes_read += result.size
            stat = path.stat()
            if first_time:
                entry.hashes = result.hashes
                entry.size, entry.mtime_ns = stat.st_size, stat.st_mtime_ns
            elif result.hashes["xxh3_128"] != entry.hashes.get("xxh3_128"):
                bad.append(entry.path)
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
        self.catalog.save(record)
        return VerifyResult(record.display(), health, detail, bytes_read)
