"""Pytest fixtures for ComfyUI tests: add ``pytest_plugins = ["comfy_stubs.fixtures"]``.

Test modules import helpers from ``comfy_stubs`` itself, never from here (pytest must import
this module first, as a plugin, to rewrite its asserts). ``shelf`` and the thread-leak guard
come from ``tests/conftest.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfy_stubs import Comfy, load_stand_in, make_comfy_tree


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
