"""Tests for comfy_entry.py and __init__.py: starting inside a (stand-in) ComfyUI.

The package is also loaded exactly as ComfyUI's ``nodes.load_custom_node`` (0.3.64) loads a
folder in ``custom_nodes`` (`comfy_stubs.load_custom_node`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from comfy_stubs import Comfy, load_custom_node, write_model

import model_shelf.comfy_entry as comfy_entry
from model_shelf.comfy_entry import ComfyRuntime, start
from model_shelf.library import ImportMode, Shelf
from model_shelf.library.settings import ROOT_ENV

pytest_plugins = ["comfy_stubs.fixtures"]


def set_root_setting(comfy: Comfy, root: Path) -> None:
    path = Path(comfy.folder_paths.get_user_directory()) / "model-shelf" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"root": str(root)}))


@pytest.fixture
def runtimes() -> Iterator[list[ComfyRuntime]]:
    """Runtimes started by a test, stopped after it whatever happens."""
    started: list[ComfyRuntime] = []
    yield started
    for runtime in started:
        runtime.stop()


def seed_library(root: Path, tmp_path: Path) -> None:
    with Shelf.open(root) as shelf:
        source = write_model(tmp_path / "incoming" / "seeded.safetensors")
        shelf.import_model(source, "checkpoints", ImportMode.COPY, name="sub/seeded.safetensors")


@pytest.mark.parametrize(
    "setting, env, expected",
    [
        ("from-setting", "from-env", "from-setting"),
        (None, "from-env", "from-env"),
        (None, None, "ComfyUI/model-shelf"),
    ],
)
def test_root_precedence(
    comfy: Comfy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    runtimes: list[ComfyRuntime],
    setting: str | None,
    env: str | None,
    expected: str,
) -> None:
    if setting:
        set_root_setting(comfy, tmp_path / setting)
    if env:
        monkeypatch.setenv(ROOT_ENV, str(tmp_path / env))
    runtime = start(comfy.folder_paths, comfy.server)
    runtimes.append(runtime)
    assert runtime.root == tmp_path / expected
    assert runtime.ready.wait(10) and runtime.shelf is not None


def test_start_lists_library_models_and_tells_the_page(
    comfy: Comfy, tmp_path: Path, runtimes: list[ComfyRuntime]
) -> None:
    root = tmp_path / "library"
    seed_library(root, tmp_path)
    set_root_setting(comfy, root)
    fp = comfy.folder_paths
    runtime = start(fp, comfy.server)
    runtimes.append(runtime)
    assert runtime.ready.wait(10) and runtime.bridge is not None
    assert fp.get_filename_list("checkpoints") == ["sub/seeded.safetensors"]
    path = fp.get_full_path("checkpoints", "seeded.safetensors")
    assert path == os.path.join(str(root), "checkpoints", "sub", "seeded.safetensors")

    with Shelf(root) as other:
        source = write_model(tmp_path / "incoming" / "late.safetensors")
        other.import_model(source, "loras", ImportMode.COPY)
    messages = comfy.server.PromptServer.instance.messages
    while True:  # skip other news (none expected, but a record write can race a tick)
        event, data, sid = messages.get(timeout=5)
        if "loras" in data.get("types", ()):
            break
    assert (event, data, sid) == ("model-shelf.library-changed", {"types": ["loras"]}, None)
    assert fp.get_filename_list("loras") == ["late.safetensors"]

    runtime.stop()
    assert runtime.usage is None and runtime.bridge is None
    assert os.path.join(str(root), "checkpoints") not in fp.get_folder_paths("checkpoints")
    with Shelf.open(root) as shelf:  # the use noted above was saved on the way out
        assert shelf.find("seeded.safetensors").usage.count == 1


def test_folders_are_listed_before_the_library_opens(
    comfy: Comfy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtimes: list[ComfyRuntime]
) -> None:
    """Issue #16: ComfyUI 0.33 starts its core asset scan right after node packs are imported,
    while our library may still be opening: the folders must be ComfyUI's by then."""
    root = tmp_path / "library"
    seed_library(root, tmp_path)
    set_root_setting(comfy, root)
    opening = threading.Event()
    original = Shelf.open

    def held_open(root: Path, *args: object, **kwargs: object) -> Shelf:
        assert opening.wait(10)
        return original(root, *args, **kwargs)

    monkeypatch.setattr(comfy_entry.Shelf, "open", held_open)
    fp = comfy.folder_paths
    runtime = start(fp, comfy.server)
    runtimes.append(runtime)
    ours = os.path.join(str(root), "checkpoints")
    assert fp.get_folder_paths("checkpoints")[-1] == ours
    assert fp.get_filename_list("checkpoints") == ["sub/seeded.safetensors"]
    opening.set()
    assert runtime.ready.wait(10) and runtime.bridge is not None
    assert fp.get_folder_paths("checkpoints").count(ours) == 1
    runtime.stop()
    assert ours not in fp.get_folder_paths("checkpoints")


def test_folders_go_when_the_library_cannot_open(
    comfy: Comfy, tmp_path: Path, runtimes: list[ComfyRuntime]
) -> None:
    root = tmp_path / "not-a-folder"
    root.write_bytes(b"")
    set_root_setting(comfy, root)
    runtime = start(comfy.folder_paths, comfy.server)
    runtimes.append(runtime)
    assert runtime.ready.wait(10) and runtime.shelf is None
    assert os.path.join(str(root), "loras") not in comfy.folder_paths.get_folder_paths("loras")


def test_a_missing_root_is_awaited_not_created(
    comfy: Comfy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    runtimes: list[ComfyRuntime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(comfy_entry, "ROOT_RETRY_SECONDS", 0.05)
    drive = tmp_path / "drive"
    set_root_setting(comfy, drive / "library")
    with caplog.at_level(logging.WARNING, "model_shelf"):
        runtime = start(comfy.folder_paths, comfy.server)
        runtimes.append(runtime)
        assert not runtime.ready.wait(0.3)
        assert not drive.exists()
        drive.mkdir()  # the drive is mounted
        assert runtime.ready.wait(10) and runtime.shelf is not None
    assert sum("not reachable" in r.getMessage() for r in caplog.records) == 1


def test_stop_ends_the_wait_for_a_root(
    comfy: Comfy, tmp_path: Path, runtimes: list[ComfyRuntime]
) -> None:
    set_root_setting(comfy, tmp_path / "never" / "library")
    runtime = start(comfy.folder_paths, comfy.server)
    runtime.stop(timeout=5)
    assert runtime.ready.is_set() and runtime.shelf is None


# -- loaded the way ComfyUI loads a node pack ----------------------------------------


def test_loads_as_a_custom_node(
    comfy: Comfy, custom_node_folder: Path, tmp_path: Path, runtimes: list[ComfyRuntime]
) -> None:
    root = tmp_path / "library"
    seed_library(root, tmp_path)
    set_root_setting(comfy, root)
    module = load_custom_node(custom_node_folder)
    runtime = module._runtime
    assert runtime is not None
    runtimes.append(runtime)
    assert isinstance(module.NODE_CLASS_MAPPINGS, dict)
    assert isinstance(module.NODE_DISPLAY_NAME_MAPPINGS, dict)
    assert module.WEB_DIRECTORY == "./web"
    assert runtime.ready.wait(10) and runtime.shelf is not None
    assert comfy.folder_paths.get_filename_list("checkpoints") == ["sub/seeded.safetensors"]
    # ComfyUI prints a node's exception type as module.qualname: ours read as the package's,
    # not as the folder's path (the module ComfyUI named it by).
    errors = sys.modules[module.__name__ + ".library.errors"]
    assert errors.DownloadFailedError.__module__ == "model_shelf.library.errors"
    assert errors.ModelUnavailableError.__module__ == "model_shelf.library.errors"


def test_a_failure_in_start_is_logged_once_and_does_not_raise(
    comfy: Comfy, custom_node_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_user_directory() -> str:
        raise RuntimeError("user directory is broken")

    comfy.folder_paths.get_user_directory = broken_user_directory
    with caplog.at_level(logging.ERROR):
        module = load_custom_node(custom_node_folder)
    assert module._runtime is None
    assert module.WEB_DIRECTORY == "./web"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Model Shelf failed to start; ComfyUI continues without it"
    ]
    assert errors[0].exc_info is not None


def test_an_invalid_settings_file_is_reported_not_guessed(
    comfy: Comfy, custom_node_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = Path(comfy.folder_paths.get_user_directory()) / "model-shelf" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("{oops")
    with caplog.at_level(logging.ERROR):
        module = load_custom_node(custom_node_folder)
    assert module._runtime is None
    assert not (comfy.base / "model-shelf").exists()  # no default library was started instead
    assert any(str(path) in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
