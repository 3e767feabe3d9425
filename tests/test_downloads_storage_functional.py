"""A full disk: refused before the first byte when the size is known, stopped cleanly when it
fills mid-way (partial data kept, nothing else damaged), and resumed once there is room.

The library lives on a real filesystem with 64 MiB free, mounted for each test: a tmpfs, and an
ext4 image, where downloads are written with direct I/O (needs root; skipped otherwise).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from downloads_support import MIB, EngineThread, quick_settings, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.downloads import TaskState
from model_shelf.library.fsutil import direct_io_supported, free_bytes


@dataclass
class SmallDisk:
    path: Path
    make_room: Callable[[], None]
    """Free space for the rest of the test (what a user does after STORAGE_FULL)."""


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture(params=["tmpfs", "ext4"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    """A real filesystem with 64 MiB free, unmounted at the end whatever happened: a tmpfs
    (downloads written through the page cache) or an ext4 image on a loop device (written with
    direct I/O, as on a real disk)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if request.param == "tmpfs":
        done = _run("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point))

        def make_room() -> None:
            _run("mount", "-o", "remount,size=256m", str(mount_point)).check_returncode()

    else:
        if shutil.which("mkfs.ext4") is None:
            pytest.skip("mkfs.ext4 is not installed")
        image = tmp_path / "disk.img"
        with open(image, "wb") as handle:
            handle.truncate(256 * MIB)
        formatted = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
        if formatted.returncode != 0:
            pytest.skip(f"cannot make an ext4 image here: {formatted.stderr.strip()}")
        done = _run("mount", "-o", "loop", str(image), str(mount_point))
        ballast = mount_point / "ballast.bin"

        def make_room() -> None:
            ballast.unlink()

    if done.returncode != 0:
        pytest.skip(f"cannot mount a {request.param} here: {done.stderr.strip()}")
    try:
        if request.param == "ext4":
            assert direct_io_supported(mount_point / "library")  # the path this variant tests
            with open(ballast, "wb") as handle:  # leaves 64 MiB free, like the tmpfs
                handle.truncate(0)
                os.posix_fallocate(handle.fileno(), 0, free_bytes(mount_point) - 64 * MIB)
        yield SmallDisk(mount_point, make_room)
    finally:
        _run("umount", "-l", str(mount_point))


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


def fill(folder: Path) -> Path:
    """Another program fills the disk to the last byte."""
    filler = folder / "filler.bin"
    block = b"\0" * MIB
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_known_size_larger_than_free_space_is_refused_before_any_byte(small_disk, server, tmp_path):
    src = write_model_file(tmp_path / "big.safetensors", 100 * MIB)
    server.serve("big.safetensors", src)
    with Shelf.open(small_disk.path / "library", quick_settings()) as shelf:
        task = shelf.downloads.add(server.url("big.safetensors"), "checkpoints")
        (failed,) = shelf.downloads.run_foreground([task.id])

        assert failed.error_code == "STORAGE_FULL"
        assert "not enough free space" in failed.error_message
        partial = shelf.layout.partial_dir / f"{task.id}.part"
        assert not partial.exists() or partial.stat().st_size == 0


def test_disk_filling_mid_way_stops_keeps_partial_and_resumes_when_space_is_freed(
    small_disk, server, tmp_path, make_model
):
    src = write_model_file(tmp_path / "big.safetensors", 100 * MIB, seed=4)
    # No Content-Length: nothing to check in advance, so the disk fills while writing.
    served = server.serve("big.safetensors", src, chunked=True)
    with Shelf.open(small_disk.path / "library", quick_settings()) as shelf:
        other = shelf.import_model(make_model(folder=small_disk.path), "loras", ImportMode.MOVE)
        other_bytes = shelf.model_path(other).read_bytes()

        task = shelf.downloads.add(server.url("big.safetensors"), "checkpoints")
        (failed,) = shelf.downloads.run_foreground([task.id])

        assert failed.state is TaskState.FAILED
        assert failed.error_code == "STORAGE_FULL"
        partial = shelf.layout.partial_dir / f"{task.id}.part"
        kept = partial.stat().st_size
        assert kept > 16 * MIB and failed.bytes_done == kept  # partial data kept, recorded
        # Nothing else was damaged: the other model, its record, the index, the queue.
        assert shelf.model_path(other).read_bytes() == other_bytes
        assert [r.health.value for r in shelf.verify()] == ["ok"]
        assert [t.id for t in shelf.downloads.list()] == [task.id]

        small_disk.make_room()
        shelf.downloads.resume(task.id)
        (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE, done.error_message
    assert served.requests[-1].headers["Range"] == f"bytes={kept}-"  # resumed, not restarted
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"


def test_another_program_filling_the_disk_to_zero_is_survived(small_disk, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 24 * MIB, seed=5)
    served = server.serve("m.safetensors", src, hold_at_byte=8 * MIB)
    with Shelf.open(small_disk.path / "library", quick_settings()) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        partial = shelf.layout.partial_dir / f"{task.id}.part"
        with EngineThread(shelf) as engine:
            wait_until(lambda: partial.exists() and partial.stat().st_size >= 4 * MIB)
            filler = fill(small_disk.path)  # not one byte left, not even for SQLite
            served.behaviour.hold_at_byte = None
            served.behaviour.release.set()
            failed = engine.wait_for(task.id, "failed")
            assert failed.error_code == "STORAGE_FULL"
            assert partial.exists() and failed.bytes_done == partial.stat().st_size

            filler.unlink()
            shelf.downloads.resume(task.id)
            done = engine.wait_for(task.id, "done", "failed")

    assert done.state is TaskState.DONE, done.error_message
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"
