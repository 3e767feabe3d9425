"""A full disk: refused before the first byte when the size is known, stopped cleanly when it
fills mid-way (partial data kept, nothing else damaged), and resumed once there is room.

The library lives on a real 64 MiB tmpfs mounted for each test (needs root; skipped otherwise).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from downloads_support import MIB, EngineThread, quick_settings, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.downloads import TaskState


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, unmounted at the end whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


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
    with Shelf.open(small_disk / "library", quick_settings()) as shelf:
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
    with Shelf.open(small_disk / "library", quick_settings()) as shelf:
        other = shelf.import_model(make_model(folder=small_disk), "loras", ImportMode.MOVE)
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

        subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
        shelf.downloads.resume(task.id)
        (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE, done.error_message
    assert served.requests[-1].headers["Range"] == f"bytes={kept}-"  # resumed, not restarted
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"


def test_another_program_filling_the_disk_to_zero_is_survived(small_disk, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 24 * MIB, seed=5)
    served = server.serve("m.safetensors", src, hold_at_byte=8 * MIB)
    with Shelf.open(small_disk / "library", quick_settings()) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        partial = shelf.layout.partial_dir / f"{task.id}.part"
        with EngineThread(shelf) as engine:
            wait_until(lambda: partial.exists() and partial.stat().st_size >= 4 * MIB)
            filler = fill(small_disk)  # not one byte left, not even for SQLite
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
