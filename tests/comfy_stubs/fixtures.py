"""Pytest fixtures for ComfyUI tests: add ``pytest_plugins = ["comfy_stubs.fixtures"]``.

Test modules import helpers from ``comfy_stubs`` itself, never from here (pytest must import
this module first, as a plugin, to rewrite its asserts). ``shelf`` and the thread-leak guard
come from ``tests/conftest.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from comfy_stubs import Comfy, load_stand_in, load_stub_module, make_comfy_tree


@pytest.fixture
def comfy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Comfy]:
    """Fresh ``folder_paths``/``server`` stand-ins in ``sys.modules``, removed afterwards."""
    base = tmp_path / "ComfyUI"
    base.mkdir()
    folder_paths = load_stand_in("folder_paths", base)
    make_comfy_tree(base, folder_paths)
    server = load_stand_in("server", base)
    server.PromptServer()
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)
    monkeypatch.setitem(sys.modules, "server", server)
    monkeypatch.delenv("MODEL_SHELF_ROOT", raising=False)
    yield Comfy(base, folder_paths, server)


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def custom_node_folder(comfy: Comfy) -> Iterator[Path]:
    """The repository as ``custom_nodes/<odd name>``; its modules are unloaded afterwards."""
    folder = comfy.base / "custom_nodes" / "Model Shelf.v0-1"
    folder.symlink_to(REPO, target_is_directory=True)  # as a git clone would sit there
    prefix = str(folder).replace(".", "_x_")
    yield folder
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


@pytest.fixture
def comfy_core(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """ComfyUI's ``comfy.utils`` (ProgressBar) and ``comfy.model_management`` (cancel) stand-ins
    in ``sys.modules`` as ``comfy.*``, removed afterwards; yields the ``comfy`` package."""
    package = ModuleType("comfy")
    package.__path__ = []  # a package: ``import comfy.utils`` finds the entries below
    package.utils = load_stub_module("comfy.utils", "comfy_utils.py")
    package.model_management = load_stub_module(
        "comfy.model_management", "comfy_model_management.py"
    )
    monkeypatch.setitem(sys.modules, "comfy", package)
    monkeypatch.setitem(sys.modules, "comfy.utils", package.utils)
    monkeypatch.setitem(sys.modules, "comfy.model_management", package.model_management)
    yield package
