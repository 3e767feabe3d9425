"""One read, every digest: xxh3-128 (fast integrity), sha256 (Hugging Face, Civitai, workflows),
blake3 (ComfyUI core's asset database). Digests are ``"algo:hex"`` strings.

sha256 is the slowest of the three and, like blake3, releases the GIL. Two threads ("lanes")
are fed the same chunks in order: sha256 on one, blake3 then xxh3 on the other (together about
half the cost of sha256), while the caller reads the next chunk. On two cores this hashes all
three at about the speed of sha256 alone, and leaves the reading thread free to read.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import blake3
import xxhash

from .errors import ShelfError
from .fsutil import storage_errors
from .settings import HASH_CHUNK_BYTES

Algorithm = Literal["xxh3_128", "sha256", "blake3"]
ALL_ALGORITHMS: tuple[Algorithm, ...] = ("xxh3_128", "sha256", "blake3")
Hashes = dict[str, str]
"""Algorithm name -> ``"algo:hex"``."""

ProgressFn = Callable[[int], None]
"""Called with the number of bytes just processed."""

# Chunks handed to the digest threads but not yet hashed; bounds memory and, for `hash_file`,
# tells how many read buffers are needed so none is overwritten while still being hashed.
_MAX_IN_FLIGHT = 3
RING_BUFFERS = _MAX_IN_FLIGHT + 1
"""Buffers a producer cycles through when it hands `MultiHasher.update` views of its own
buffers: with this many, none is overwritten while a digest thread still reads it."""


class HashCancelled(ShelfError):
    """Hashing was stopped through its cancel event."""

    code = "CANCELLED"


def _new_digest(algo: str):
    if algo == "sha256":
        return hashlib.sha256()
    if algo == "blake3":
        return blake3.blake3()
    if algo == "xxh3_128":
        return xxhash.xxh3_128()
    raise ValueError(f"unknown hash algorithm {algo!r}")


def split_digest(value: str) -> tuple[str, str]:
    """``"sha256:ab12..."`` -> ``("sha256", "ab12...")``; a bare hex string is taken as sha256."""
    algo, sep, hexdigest = value.partition(":")
    if not sep:
        return "sha256", value.lower()
    return algo.lower(), hexdigest.lower()


def _update_all(digests: list[Any], chunk: bytes | memoryview) -> None:
    for digest in digests:
        digest.update(chunk)


class MultiHasher:
    """Feed chunks once, get every digest. Not thread-safe: one producer.

    Use as a context manager (it owns two threads) or call `close`.
    """

    def __init__(self, algorithms: Sequence[str] = ALL_ALGORITHMS) -> None:
        self.algorithms = tuple(algorithms)
        self.bytes_hashed = 0
        self._digests = {algo: _new_digest(algo) for algo in self.algorithms}
        # sha256 alone on a lane; blake3 and xxh3 share the other (blake3 + xxh3 cost about half
        # of sha256). xxh3 alone (verify) stays on the caller's thread: no hop for a fast digest.
        lanes: dict[str, list[str]] = {}
        for algo in self._digests:
            lanes.setdefault("sha256" if algo == "sha256" else "other", []).append(algo)
        threaded = "sha256" in self._digests or "blake3" in self._digests
        self._inline = [] if threaded else list(self._digests.values())
        self._threaded = [
            (
                [self._digests[algo] for algo in algos],
                ThreadPoolExecutor(1, thread_name_prefix="shelf-" + "+".join(algos)),
            )
            for algos in (lanes.values() if threaded else ())
        ]
        self._pending: deque[list[Future[None]]] = deque()

    @property
    def has_threads(self) -> bool:
        return bool(self._threaded)

    def update(self, chunk: bytes | memoryview) -> list[Future[None]]:
        """Add ``chunk`` to every digest.

        A ``memoryview`` over a buffer the caller reuses must not be overwritten until the
        returned futures are done (or `_MAX_IN_FLIGHT` further updates have returned: cycle
        through `RING_BUFFERS` buffers).

        Returns:
            `list[Future]`: one per digest thread, done when it has hashed ``chunk``.
        """
        futures = [pool.submit(_update_all, digests, chunk) for digests, pool in self._threaded]
        for digest in self._inline:
            digest.update(chunk)
        self.bytes_hashed += len(chunk)
        self._pending.append(futures)
        while len(self._pending) > _MAX_IN_FLIGHT:
            for future in self._pending.popleft():
                future.result()
        return futures

    def _drain(self) -> None:
        while self._pending:
            for future in self._pending.popleft():
                future.result()

    def hexdigests(self) -> Hashes:
        """Wait for queued chunks and return ``{algo: "algo:hex"}``. The hasher stays usable."""
        self._drain()
        return {algo: f"{algo}:{d.hexdigest()}" for algo, d in self._digests.items()}

    def close(self) -> None:
        for _, pool in self._threaded:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> MultiHasher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class HashResult:
    """Digests of one stream, and how many bytes were read to get them."""

    hashes: Hashes
    size: int
    extra: dict[str, object] = field(default_factory=dict)


def hash_stream(
    source: BinaryIO,
    *,
    algorithms: Sequence[str] = ALL_ALGORITHMS,
    sink: BinaryIO | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> HashResult:
    """Read ``source`` to the end once, hashing every chunk and optionally writing it to ``sink``.

    Args:
        source (`BinaryIO`): an unbuffered or buffered binary file supporting ``readinto``.
        algorithms (`Sequence[str]`, *optional*): digests to compute; all three by default.
        sink (`BinaryIO`, *optional*): where to copy the bytes (hash-while-copying).
        progress (`ProgressFn`, *optional*): called with each chunk's size.
        cancel (`threading.Event`, *optional*): checked per chunk.

    Returns:
        `HashResult`: the digests and the number of bytes read.

    Raises:
        `HashCancelled`: ``cancel`` was set.
        `StorageFullError`: writing to ``sink`` hit a full disk.
    """
    size = 0
    with MultiHasher(algorithms) as hasher:
        # Chunks in flight on digest threads must not be overwritten, hence a ring of buffers;
        # with no threads (xxh3 alone: verify) one buffer that stays warm in the CPU cache.
        ring_size = RING_BUFFERS if hasher.has_threads else 1
        views = [memoryview(bytearray(HASH_CHUNK_BYTES)) for _ in range(ring_size)]
        turn = 0
        while True:
            if cancel is not None and cancel.is_set():
                raise HashCancelled("hashing cancelled")
            n = source.readinto(views[turn])
            if not n:
                break
            chunk = views[turn][:n]
            hasher.update(chunk)
            if sink is not None:
                with storage_errors(Path(getattr(sink, "name", "output"))):
                    sink.write(chunk)
            size += n
            if progress is not None:
                progress(n)
            turn = (turn + 1) % ring_size
        return HashResult(hashes=hasher.hexdigests(), size=size)


def hash_file(
    path: Path,
    *,
    algorithms: Sequence[str] = ALL_ALGORITHMS,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> HashResult:
    """Hash one file in a single read. See `hash_stream` for arguments and errors."""
    with open(path, "rb", buffering=0) as handle:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)  # deeper readahead
        return hash_stream(handle, algorithms=algorithms, progress=progress, cancel=cancel)


def manifest_hashes(entries: Iterable[tuple[str, Hashes]]) -> Hashes:
    """Digests that identify a multi-file model (a folder or a sharded set).

    Each algorithm hashes the sorted lines ``"<relative path>\\0<file digest>\\n"``, so the value
    changes when any file's content or name changes, and costs nothing beyond the file hashes.
    """
    ordered = sorted(entries)
    result: Hashes = {}
    algorithms = {algo for _, hashes in ordered for algo in hashes}
    for algo in sorted(algorithms):
        digest = _new_digest(algo)
        for rel, hashes in ordered:
            digest.update(f"{rel}\0{hashes.get(algo, '')}\n".encode())
        result[algo] = f"{algo}:{digest.hexdigest()}"
    return result
