"""A task's partial data: ``.shelf/partial/<task id>.part``, hashed as it is written.

The invariant that makes resume cheap: the file's size, the write offset and the bytes the
running `MultiHasher` has seen are the same number. Within one process the hasher lives as long
as the task, across reconnects and pauses, so resumed bytes are never read back. After a restart
the hasher is gone: the bytes already on disk are read once through a new one, then the download
continues from the network.

The body is read straight into the partial file's own buffers (`buffer`), which are written and
hashed from where they are, in a pipeline: `append` hands a block to a writer thread and
returns, so the reading thread goes back to the socket while the block goes to disk; once
written, the block goes to the digest threads (`MultiHasher`: sha256 on one, blake3 and xxh3 on
another). Only written bytes are hashed, so file and digests never disagree, even when a write
fails. A buffer is handed out again only once its write and its digests are done, and `flush`
(called before the offset is relied on: the end of a transfer, `finish`, `close`) waits for
every block appended. On a local disk (Linux) the bulk of each block is written with
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
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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

PIPELINE_BUFFERS = RING_BUFFERS + 2
"""Buffers of one partial file: one being read into, one being written, the rest being hashed
(`MultiHasher` holds up to `RING_BUFFERS` - 1 chunks in flight)."""
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
        self._end = 0  # file offset after every block appended (written or still queued)
        self._writer: ThreadPoolExecutor | None = None
        self._writes: deque[Future[list[Future[None]]]] = deque()  # appended, in order
        self._in_use: dict[int, Future[list[Future[None]]]] = {}  # buffer turn -> its write
        self._failure: BaseException | None = None  # a write that failed: later ones are skipped

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
        """Close the file (releasing its lock). The hasher is kept for a later resume.

        Blocks still queued are written first (a failure among them was raised by `flush`, or
        is seen by the next `prepare`, which compares the hasher with the file)."""
        self._settle()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None
        if self._fd is not None:
            os.close(self._fd)  # closing also releases the flock
            self._fd = None
        # Dropped, not closed: views of them may still wait in the hasher's digest threads.
        self._buffers = []
        self._failure = None

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
        self._settle()
        self._failure = None
        on_disk = self.size_on_disk()
        if self.hasher is not None and self.hasher.bytes_hashed == on_disk:
            self._end = on_disk
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
        self._end = hasher.bytes_hashed
        return hasher.bytes_hashed

    def restart(self) -> None:
        """Drop every byte: the remote file changed, or the server ignored our range."""
        self._settle()
        self._failure = None
        self.discard_hasher()
        assert self._fd is not None, "open() first"
        os.ftruncate(self._fd, 0)
        self._written_back = 0
        self._end = 0
        self.hasher = MultiHasher()

    def buffer(self) -> memoryview:
        """A `BLOCK_BYTES` view to read the next bytes of the file into, then pass to `append`.

        The same buffer until something is appended: buffers are reused in turn, one per
        append, and each only once its write and its digests are done (this waits for them).

        Raises:
            `StorageFullError`, `OSError`: an earlier block could not be written.
        """
        if not self._buffers:
            # Anonymous maps are page-aligned; the extra block keeps room for the skew below.
            size = BLOCK_BYTES + DIRECT_IO_ALIGN
            self._buffers = [mmap.mmap(-1, size) for _ in range(PIPELINE_BUFFERS)]
        write = self._in_use.pop(self._turn, None)
        if write is not None:
            for digest in write.result():  # raises the write's failure
                digest.result()
        if self._failure is not None:
            raise self._failure
        buffer = self._buffers[self._turn]
        # Start at the file offset's place within a block, so that the block-aligned middle of
        # what is read lies at an aligned address too: the direct write can take it as it is.
        skew = self._end % DIRECT_IO_ALIGN if self._direct_fd is not None else 0
        return memoryview(buffer)[skew : skew + BLOCK_BYTES]

    def append(self, data: bytes | memoryview) -> None:
        """Queue ``data`` to be written at the end of the file, then hashed; returns at once.

        ``data`` must stay as it is until written: a view from `buffer` does (the buffer is not
        handed out again before); anything else must not change before `flush`.

        Raises:
            `StorageFullError`, `OSError`: an earlier block could not be written.
        """
        assert self._fd is not None and self.hasher is not None, "open() and prepare() first"
        if self._failure is not None:
            raise self._failure
        view = memoryview(data)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="shelf-write")
        write = self._writer.submit(self._write_block, view, self._end)
        self._end += len(view)
        self._writes.append(write)
        if self._buffers and view.obj is self._buffers[self._turn]:
            self._in_use[self._turn] = write
            # The next block goes in the next buffer: this one is being written and hashed.
            self._turn = (self._turn + 1) % PIPELINE_BUFFERS
        while self._writes and self._writes[0].done():
            self._writes.popleft()

    def flush(self) -> None:
        """Wait until every appended block is written and handed to the digests.

        Raises:
            `StorageFullError`: the disk is full, or its free space fell below the margin (the
                file keeps every byte before the block that did not fit, hashed).
            `OSError`: another write failure.
        """
        self._settle()
        if self._failure is not None:
            raise self._failure

    def _settle(self) -> None:
        """Wait for the queued writes, without raising (their failure is kept in `_failure`)."""
        while self._writes:
            self._writes.popleft().exception()
        for write in self._in_use.values():  # and for the digests still reading our buffers
            if write.exception() is None:
                for digest in write.result():
                    digest.exception()
        self._in_use.clear()

    def _write_block(self, view: memoryview, offset: int) -> list[Future[None]]:
        """The writer thread: write one block at ``offset``, then hash what reached the file.

        On a full disk only the bytes that reached the file are hashed, so file and hasher stay
        in step and a later resume continues from exactly there; the blocks queued behind it
        are then not written (the file must not get a gap).
        """
        assert self.hasher is not None
        if self._failure is not None:
            raise self._failure
        written = 0
        failure: BaseException | None = None
        try:
            self._check_space(len(view))
            with storage_errors(self.path):
                # Counted per write: a short write followed by a failure (a limit reached
                # mid-block) still counts what it wrote.
                for _start, end, direct in self._pieces(offset, len(view)):
                    while written < end:
                        written += self._write_some(view[written:end], offset + written, direct)
        except BaseException as exc:  # kept for the reading thread, which raises it
            self._failure = failure = exc
        digests = self.hasher.update(view[:written]) if written else []
        if failure is not None:
            for digest in digests:  # nobody waits for this buffer's digests after a failure
                digest.result()
            raise failure
        self._start_writeback()
        return digests

    def _pieces(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """Split ``length`` bytes written at ``offset`` into (start, end, direct) pieces: an
        unaligned head, the aligned middle (direct, when available), an unaligned tail."""
        if self._direct_fd is None:
            return [(0, length, False)]
        head = min(length, -offset % DIRECT_IO_ALIGN)
        middle = (length - head) // DIRECT_IO_ALIGN * DIRECT_IO_ALIGN
        pieces = [(0, head, False), (head, head + middle, True), (head + middle, length, False)]
        return [piece for piece in pieces if piece[1] > piece[0]]

    def _write_some(self, data: memoryview, offset: int, direct: bool) -> int:
        """One write of (the start of) ``data`` at ``offset``; returns how much was written."""
        assert self._fd is not None
        if direct and self._direct_fd is not None:
            try:
                return _pwrite(self._direct_fd, data, offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # The filesystem wants another alignment after all: use the page cache.
                log.info("direct I/O refused for %s; writing through the cache", self.path)
                os.close(self._direct_fd)
                self._direct_fd = None
        return _pwrite(self._fd, data, offset)

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
        self._settle()
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
        self.flush()
        os.fsync(self._fd)
        fsync_dir(self.path.parent)
        return self.hasher.hexdigests()


__all__ = ["HashCancelled", "PartialFile", "PartialLockedError"]
