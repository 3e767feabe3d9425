"""A task's partial data: ``.shelf/partial/<task id>.part``, hashed as it is written.

The invariant that makes resume cheap: the file's size, the write offset and the bytes the
running `MultiHasher` has seen are the same number. Within one process the hasher lives as long
as the task, across reconnects and pauses, so resumed bytes are never read back. After a restart
the hasher is gone: the bytes already on disk are read once through a new one, then the download
continues from the network.

The body is read straight into the partial file's own buffers (`buffer`), which are hashed and
written from where they are. On a local disk (Linux) the bulk of each block is written with
``O_DIRECT``: a download of many gigabytes would otherwise pass through the page cache, evicting
everything else and costing the kernel more CPU to copy and reclaim than the write itself (and
the fsync before the file enters the library would flush it all at the end). Direct I/O needs
block-aligned offsets and memory: the buffers are page-aligned and handed out at the file's own
alignment, and the unaligned head and tail of a block take the ordinary path.

Every method here blocks (file I/O, hashing): the engine calls them in worker threads.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from pathlib import Path

from ..errors import StorageFullError
from ..fsutil import direct_io_supported, free_bytes, fsync_dir, storage_errors
from ..hashing import RING_BUFFERS, HashCancelled, Hashes, MultiHasher
from ..settings import HASH_CHUNK_BYTES

log = logging.getLogger("model_shelf.downloads")

try:  # POSIX: an OS lock on top of the task lease, so two processes never write one file
    import fcntl
except ImportError:  # Windows: the lease alone decides who writes
    fcntl = None  # type: ignore[assignment]

STATE_HEADROOM_BYTES = 8 * 1024 * 1024
"""Always left free by a download, even with no margin set: room for the queue's own database
and the records of other models, so a full disk damages nothing else."""

BLOCK_BYTES = 4 * 1024 * 1024
"""Size of one buffer from `PartialFile.buffer`: per-block overhead vanishes at this size."""
DIRECT_IO_ALIGN = 4096
"""Offset, length and memory alignment of direct writes: every local disk's block size divides
it (and the page-aligned buffers satisfy it)."""

WRITEBACK_BYTES = 64 * 1024 * 1024
"""Writeback of the bytes written through the page cache is started every this many bytes."""
_fadvise = getattr(os, "posix_fadvise", None)  # not on Windows or macOS
_FADV_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 4)

GIVE_BACK_BYTES = 4 * 1024 * 1024
"""How much of its tail a partial file gives up when even recording a failure found no room."""


def _pwrite(fd: int, data: memoryview, offset: int) -> int:
    """``os.pwrite``; on Windows (which has none) a seek and a write: one writer per file."""
    if hasattr(os, "pwrite"):
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


class PartialLockedError(Exception):
    """Another live process holds the partial file's lock (internal; never reaches users)."""


class PartialFile:
    """The partial data of one task and the digests of the bytes in it."""

    def __init__(self, path: Path, free_space_margin_bytes: int, direct_io: bool = False) -> None:
        self.path = path
        self.free_space_margin_bytes = free_space_margin_bytes
        self.direct_io = direct_io
        self.hasher: MultiHasher | None = None
        self._fd: int | None = None
        self._direct_fd: int | None = None  # the same file opened with O_DIRECT, if used
        self._written_back = 0  # bytes handed to the kernel's writeback (`_start_writeback`)
        self._buffers: list[mmap.mmap] = []
        self._turn = 0

    # -- ownership -----------------------------------------------------------

    def open(self) -> None:
        """Open (creating it empty if needed) and lock the file for writing.

        Raises:
            `PartialLockedError`: another process is writing it.
            `StorageFullError`: the file cannot even be created.
        """
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with storage_errors(self.path):
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise PartialLockedError(str(self.path)) from None
        self._fd = fd
        if self.direct_io and direct_io_supported(self.path):
            try:
                self._direct_fd = os.open(self.path, os.O_WRONLY | os.O_DIRECT)
            except OSError as exc:  # refused by this filesystem after all: the page cache it is
                log.debug("no direct I/O for %s: %s", self.path, exc)

    def close(self) -> None:
        """Close the file (releasing its lock). The hasher is kept for a later resume."""
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None
        if self._fd is not None:
            os.close(self._fd)  # closing also releases the flock
            self._fd = None
        # Dropped, not closed: views of them may still wait in the hasher's digest threads.
        self._buffers = []

    def discard_hasher(self) -> None:
        if self.hasher is not None:
            self.hasher.close()
            self.hasher = None

    @property
    def offset(self) -> int:
        return self.hasher.bytes_hashed if self.hasher is not None else 0

    @property
    def writes_directly(self) -> bool:
        """Is the bulk of each block written with direct I/O (open, and supported here)?"""
        return self._direct_fd is not None

    def size_on_disk(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    # -- content -------------------------------------------------------------

    def prepare(self, cancel: threading.Event | None = None) -> int:
        """Make the hasher match the bytes on disk, reading them once if it does not.

        Returns:
            `int`: the offset to resume from.

        Raises:
            `HashCancelled`: ``cancel`` was set while re-reading.
        """
        on_disk = self.size_on_disk()
        if self.hasher is not None and self.hasher.bytes_hashed == on_disk:
            return on_disk
        self.discard_hasher()
        hasher = MultiHasher()
        try:
            with open(self.path, "rb", buffering=0) as handle:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise HashCancelled("re-reading partial data cancelled")
                    chunk = handle.read(HASH_CHUNK_BYTES)
                    if not chunk:
                        break
                    hasher.update(chunk)
        except BaseException:
            hasher.close()
            raise
        self.hasher = hasher
        self._written_back = 0
        return hasher.bytes_hashed

    def restart(self) -> None:
        """Drop every byte: the remote file changed, or the server ignored our range."""
        self.discard_hasher()
        assert self._fd is not None, "open() first"
        os.ftruncate(self._fd, 0)
        self._written_back = 0
        self.hasher = MultiHasher()

    def buffer(self) -> memoryview:
        """A `BLOCK_BYTES` view to read the next bytes of the file into, then pass to `append`.

        The same buffer until something is appended: buffers are reused in turn, one per
        append, so that none is overwritten while the digest threads may still read it.
        """
        if not self._buffers:
            # Anonymous maps are page-aligned; the extra block keeps room for the skew below.
            size = BLOCK_BYTES + DIRECT_IO_ALIGN
            self._buffers = [mmap.mmap(-1, size) for _ in range(RING_BUFFERS)]
        buffer = self._buffers[self._turn]
        # Start at the file offset's place within a block, so that the block-aligned middle of
        # what is read lies at an aligned address too: the direct write can take it as it is.
        skew = self.offset % DIRECT_IO_ALIGN if self._direct_fd is not None else 0
        return memoryview(buffer)[skew : skew + BLOCK_BYTES]

    def append(self, data: bytes | memoryview) -> None:
        """Write ``data`` at the end of the file and hash it.

        On a full disk only the bytes that reached the file are hashed, so file and hasher stay
        in step and a later resume continues from exactly there.

        Raises:
            `StorageFullError`: the disk is full, or its free space fell below the margin.
        """
        assert self._fd is not None and self.hasher is not None, "open() and prepare() first"
        view = memoryview(data)
        self._check_space(len(view))
        written = 0
        try:
            with storage_errors(self.path):
                for start, end, direct in self._pieces(self.offset, len(view)):
                    written += self._write_at(view[start:end], self.offset + start, direct)
        finally:
            if written:
                self.hasher.update(view[:written])
                # The next block goes in the next buffer: this one may still be being hashed.
                self._turn = (self._turn + 1) % RING_BUFFERS
        self._start_writeback()

    def _pieces(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """Split ``length`` bytes written at ``offset`` into (start, end, direct) pieces: an
        unaligned head, the aligned middle (direct, when available), an unaligned tail."""
        if self._direct_fd is None:
            return [(0, length, False)]
        head = min(length, -offset % DIRECT_IO_ALIGN)
        middle = (length - head) // DIRECT_IO_ALIGN * DIRECT_IO_ALIGN
        pieces = [(0, head, False), (head, head + middle, True), (head + middle, length, False)]
        return [piece for piece in pieces if piece[1] > piece[0]]

    def _write_at(self, data: memoryview, offset: int, direct: bool) -> int:
        """Write all of ``data`` at ``offset``; returns its length (raises on a failure)."""
        assert self._fd is not None
        written = 0
        while written < len(data):
            if direct and self._direct_fd is not None:
                try:
                    written += _pwrite(self._direct_fd, data[written:], offset + written)
                    continue
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    # The filesystem wants another alignment after all: use the page cache.
                    log.info("direct I/O refused for %s; writing through the cache", self.path)
                    os.close(self._direct_fd)
                    self._direct_fd = None
            written += _pwrite(self._fd, data[written:], offset + written)
        return written

    def _start_writeback(self) -> None:
        """Ask the kernel to start writing what we wrote, without waiting for it.

        A machine with plenty of memory would otherwise keep gigabytes of the download dirty
        in the page cache, and the fsync before the file enters the library would write them
        all at the end, while the user waits. Written behind the download, that cost overlaps
        with it. (Linux: ``POSIX_FADV_DONTNEED`` starts writeback of dirty pages and drops the
        clean ones, so a large download does not push everything else out of the cache.)
        """
        if _fadvise is None or self._fd is None or self.hasher is None:
            return
        if self._direct_fd is not None:
            return  # the bulk went to the disk directly
        end = self.hasher.bytes_hashed
        if end - self._written_back < WRITEBACK_BYTES:
            return
        _fadvise(self._fd, self._written_back, end - self._written_back, _FADV_DONTNEED)
        self._written_back = end

    def _check_space(self, nbytes: int) -> None:
        """Stop before the disk is full, not when it is: a statvfs per block costs nothing."""
        keep = max(self.free_space_margin_bytes, STATE_HEADROOM_BYTES)
        free = free_bytes(self.path)
        if free - nbytes < keep:
            raise StorageFullError(
                f"the disk holding {self.path.parent} is full ({free:,} bytes free, "
                f"{keep:,} kept free); the download stopped and keeps its partial data: "
                "free some space, then resume",
                path=str(self.path),
            )

    def give_back(self) -> int:
        """Cut up to `GIVE_BACK_BYTES` off the end, when the disk has no room left at all (not
        even to record that the download stopped). Returns the new size; resume re-reads.
        """
        size = self.size_on_disk()
        new_size = max(0, size - GIVE_BACK_BYTES)
        if self._fd is not None:
            os.ftruncate(self._fd, new_size)
        else:
            os.truncate(self.path, new_size)
        self.discard_hasher()
        return new_size

    def finish(self) -> Hashes:
        """fsync the file and return the digests of everything in it."""
        assert self._fd is not None and self.hasher is not None, "open() and prepare() first"
        os.fsync(self._fd)
        fsync_dir(self.path.parent)
        return self.hasher.hexdigests()


__all__ = ["HashCancelled", "PartialFile", "PartialLockedError"]
