"""The partial file of a download: bytes written (around the page cache where the disk allows)
and hashed as they come, so that the file, the offset and the digests always agree."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_shelf.library.downloads.partial import (
    BLOCK_BYTES,
    DIRECT_IO_ALIGN,
    PIPELINE_BUFFERS,
    PartialFile,
)
from model_shelf.library.fsutil import direct_io_supported

# Sizes that leave the file offset everywhere relative to the block size: unaligned heads and
# tails, whole blocks, a single byte, more than one buffer's worth is never asked of `buffer`.
PIECES = [5000, 3 * DIRECT_IO_ALIGN, 1, DIRECT_IO_ALIGN - 1, 1 << 20, 123_457, 2 * DIRECT_IO_ALIGN]

needs_direct_io = pytest.mark.skipif(
    not direct_io_supported(Path(tempfile.gettempdir()) / "x"),
    reason="the temporary folder is not on a local disk filesystem with O_DIRECT",
)


def write_through_buffers(partial: PartialFile, data: bytes, sizes: list[int]) -> None:
    """What the engine does: read into `buffer()`, `append` what was read, and `flush` at the
    end of the transfer (appends only queue the writes)."""
    done = 0
    for size in sizes:
        block = partial.buffer()
        block[:size] = data[done : done + size]
        partial.append(block[:size])
        done += size
    partial.flush()


@contextlib.contextmanager
def opened(path: Path, direct_io: bool) -> Iterator[PartialFile]:
    """The partial file as the engine holds it: open, locked, its digests matching the disk."""
    partial = PartialFile(path, free_space_margin_bytes=0, direct_io=direct_io)
    partial.open()
    try:
        partial.prepare()
        yield partial
    finally:
        partial.close()
        partial.discard_hasher()


@pytest.mark.parametrize("direct_io", [True, False], ids=["direct", "page-cache"])
def test_blocks_at_any_offset_land_whole_and_hashed(tmp_path, direct_io):
    data = random.Random(1).randbytes(sum(PIECES))
    with opened(tmp_path / "t.part", direct_io) as partial:
        write_through_buffers(partial, data, PIECES)
        assert partial.offset == len(data)
        hashes = partial.finish()
    assert (tmp_path / "t.part").read_bytes() == data
    assert hashes["sha256"] == "sha256:" + hashlib.sha256(data).hexdigest()


@needs_direct_io
def test_direct_io_is_used_on_a_local_disk_and_survives_a_resume_at_an_odd_offset(tmp_path):
    data = random.Random(2).randbytes(sum(PIECES))
    path = tmp_path / "t.part"
    with opened(path, direct_io=True) as first:  # closing drops its digests: a restart
        assert first.writes_directly
        write_through_buffers(first, data[:5001], [5001])  # stops mid-block, as a link drop does

    with opened(path, direct_io=True) as again:
        assert again.offset == 5001  # re-read once from disk
        write_through_buffers(again, data[5001:], [len(data) - 5001])
        assert again.writes_directly  # the odd offset did not turn direct I/O off
        hashes = again.finish()
    assert path.read_bytes() == data
    assert hashes["sha256"] == "sha256:" + hashlib.sha256(data).hexdigest()


@needs_direct_io
def test_a_buffer_the_disk_refuses_to_take_directly_is_written_through_the_cache(tmp_path):
    # Bytes from anywhere (not `buffer()`) are rarely aligned in memory: the kernel says EINVAL,
    # and the partial file falls back rather than losing the block.
    data = random.Random(3).randbytes(8 * DIRECT_IO_ALIGN)
    with opened(tmp_path / "t.part", direct_io=True) as partial:
        partial.append(memoryview(bytearray(b"x" + data))[1:])  # one byte off every alignment
        partial.append(data)
        hashes = partial.finish()
    assert (tmp_path / "t.part").read_bytes() == data + data
    assert hashes["sha256"] == "sha256:" + hashlib.sha256(data + data).hexdigest()


def test_without_pwrite_as_on_windows_blocks_still_land_in_order(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "pwrite")
    data = random.Random(4).randbytes(sum(PIECES))
    with opened(tmp_path / "t.part", direct_io=False) as partial:
        write_through_buffers(partial, data, PIECES)
        hashes = partial.finish()
    assert (tmp_path / "t.part").read_bytes() == data
    assert hashes["sha256"] == "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_buffer_is_handed_out_again_until_something_is_appended(tmp_path):
    # A read that failed before its first byte appends nothing; the retry must not be given a
    # buffer the digest threads may still be reading.
    with opened(tmp_path / "t.part", direct_io=False) as partial:
        first = partial.buffer()
        assert partial.buffer().obj is first.obj
        first[:10] = b"0123456789"
        partial.append(first[:10])
        assert partial.buffer().obj is not first.obj


def _digests(data: bytes) -> dict[str, str]:
    import blake3
    import xxhash

    return {
        "sha256": "sha256:" + hashlib.sha256(data).hexdigest(),
        "blake3": "blake3:" + blake3.blake3(data).hexdigest(),
        "xxh3_128": "xxh3_128:" + xxhash.xxh3_128(data).hexdigest(),
    }


@pytest.mark.parametrize("direct_io", [True, False], ids=["direct", "page-cache"])
def test_many_full_blocks_through_the_pipeline_keep_every_digest_right(tmp_path, direct_io):
    # More blocks than buffers, each different: a buffer reused while its write or one of its
    # digests still read it would show up as a wrong digest or wrong bytes on disk.
    count = 3 * PIPELINE_BUFFERS
    data = random.Random(5).randbytes(count * BLOCK_BYTES + 777)
    sizes = [BLOCK_BYTES] * count + [777]
    with opened(tmp_path / "t.part", direct_io) as partial:
        write_through_buffers(partial, data, sizes)
        assert partial.offset == len(data)
        hashes = partial.finish()
    assert (tmp_path / "t.part").read_bytes() == data
    assert hashes == _digests(data)
