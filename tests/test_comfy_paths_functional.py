"""Two processes on one library root: what one adds, the other's ComfyUI lists within 2 s.

A real second process (the CLI, ``python -m model_shelf --root R import ...``) adds a model
while this process runs the bridge and the watcher with their default settings over a stand-in
ComfyUI 0.3.64, as ``comfy_entry`` runs them. We wait on the watcher's notification (a queue,
with the 2 s deadline as timeout) and report the measured delay; no test asserts anything finer
about time.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from comfy_stubs import Comfy, write_model

from model_shelf.library import Shelf
from model_shelf.library.comfy_paths import FolderPathsBridge
from model_shelf.library.comfy_settings import ComfySettings
from model_shelf.library.settings import ROOT_ENV
from model_shelf.library.usage import UsageRecorder

pytest_plugins = ["comfy_stubs.fixtures"]

DEADLINE_SECONDS = 2.0


class Changes:
    """Watcher listener: each change notice with the time it arrived."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[float, frozenset[str]]] = queue.Queue()

    def library_changed(self, types: frozenset[str]) -> None:
        self.events.put((time.monotonic(), types))

    def root_changed(self, available: bool) -> None:
        pass


@pytest.fixture
def running(comfy: Comfy, shelf: Shelf) -> Iterator[tuple[FolderPathsBridge, Changes]]:
    usage = UsageRecorder(shelf)
    bridge = FolderPathsBridge(shelf, comfy.folder_paths, ComfySettings(), usage)
    bridge.install()
    changes = Changes()
    watcher = shelf.start_watching()  # the default settings, as inside ComfyUI
    watcher.subscribe(bridge)
    watcher.subscribe(changes)
    usage.start()
    try:
        assert watcher.wait_idle(30)
        yield bridge, changes
    finally:
        shelf.stop_watching()
        usage.stop()
        bridge.close()


def test_a_model_added_by_another_process_is_listed_within_2s(
    comfy: Comfy,
    shelf: Shelf,
    running: tuple[FolderPathsBridge, Changes],
    tmp_path: Path,
    record_property: pytest.RecordProperty,
) -> None:
    _, changes = running
    fp = comfy.folder_paths
    assert fp.get_filename_list("checkpoints") == []  # ComfyUI has cached an empty list
    source = write_model(tmp_path / "elsewhere" / "remote.safetensors")
    env = {k: v for k, v in os.environ.items() if k != ROOT_ENV}
    command = [sys.executable, "-m", "model_shelf", "--root", str(shelf.root), "import"]
    command += [str(source), "--type", "checkpoints", "--name", "sub/remote.safetensors"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finished = time.monotonic()
    assert done.returncode == 0, done.stderr

    deadline = finished + DEADLINE_SECONDS
    while True:
        arrived, types = changes.events.get(timeout=max(0.0, deadline - time.monotonic()))
        if "checkpoints" in types:
            break
    delay = arrived - finished
    record_property("listed_after_seconds", round(delay, 3))
    print(f"\nmodel from another process listed {delay:.3f} s after it exited")
    assert delay <= DEADLINE_SECONDS
    assert fp.get_filename_list("checkpoints") == ["sub/remote.safetensors"]
    expected = os.path.join(str(shelf.root), "checkpoints", "sub", "remote.safetensors")
    assert fp.get_full_path("checkpoints", "remote.safetensors") == expected  # bare name too


def test_two_comfyui_installs_share_one_root(
    comfy: Comfy,
    shelf: Shelf,
    running: tuple[FolderPathsBridge, Changes],
    tmp_path: Path,
    record_property: pytest.RecordProperty,
) -> None:
    """The other way round: a second stand-in ComfyUI in its own process lists our import."""
    helper = Path(__file__).parent / "comfy_stubs" / "second_install.py"
    env = {k: v for k, v in os.environ.items() if k != ROOT_ENV}
    second = subprocess.Popen(
        [sys.executable, str(helper), str(tmp_path / "ComfyUI-2"), str(shelf.root)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert second.stdout is not None and second.stdin is not None
        assert second.stdout.readline().strip() == "ready"
        source = write_model(tmp_path / "incoming" / "shared.safetensors")
        shelf.import_model(source, "loras", name="shared.safetensors")
        added = time.monotonic()
        second.stdin.write("loras shared.safetensors\n")
        second.stdin.flush()
        line = second.stdout.readline().split()
        assert line[:1] == ["listed"], line
        delay = float(line[1])  # measured in the second process, from our message to its list
        record_property("second_install_listed_after_seconds", round(delay, 3))
        print(f"\nsecond install listed our model {delay:.3f} s after the import")
        assert delay <= DEADLINE_SECONDS
        assert time.monotonic() - added < 30
    finally:
        if second.stdin is not None:
            second.stdin.close()
        second.wait(timeout=30)
        stderr = second.stderr.read() if second.stderr is not None else ""
        if second.returncode != 0:
            pytest.fail(f"second install failed: {stderr}")
