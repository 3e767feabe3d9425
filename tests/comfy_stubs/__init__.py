"""Stand-ins for ComfyUI's ``folder_paths`` and ``server`` modules, and how tests load them.

ComfyUI cannot be installed from a package registry, so tests load these small, faithful
stand-ins (see each module's docstring for the ComfyUI version it mirrors) under the top-level
names ComfyUI gives the real ones.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

STUBS_DIR = Path(__file__).parent
BASE_ENV = "COMFY_STAND_IN_BASE"


def load_stand_in(name: str, base: Path) -> ModuleType:
    """Execute ``<name>.py`` afresh as top-level module ``name`` for a ComfyUI in ``base``.

    The caller puts it in ``sys.modules`` (and removes it again).
    """
    previous = os.environ.get(BASE_ENV)
    os.environ[BASE_ENV] = str(base)
    try:
        spec = importlib.util.spec_from_file_location(name, STUBS_DIR / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            os.environ.pop(BASE_ENV, None)
        else:
            os.environ[BASE_ENV] = previous
    return module


def load_stub_module(module_name: str, filename: str) -> ModuleType:
    """Execute ``<filename>`` afresh as module ``module_name`` (``comfy.utils``...); the caller
    puts it in ``sys.modules``."""
    spec = importlib.util.spec_from_file_location(module_name, STUBS_DIR / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_custom_node(module_path: Path) -> ModuleType:
    """Import a ``custom_nodes`` folder as ComfyUI 0.3.64's ``nodes.load_custom_node`` does:
    ``spec_from_file_location`` on its ``__init__.py``, under a module name made from the
    folder's path with dots replaced by ``_x_`` (also in ``sys.modules``)."""
    sys_module_name = str(module_path).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(
        sys_module_name, os.path.join(module_path, "__init__.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[sys_module_name] = module
    spec.loader.exec_module(module)
    return module


def make_comfy_tree(base: Path, folder_paths: ModuleType) -> None:
    """Create the model folders a ComfyUI checkout ships with (it keeps them in git)."""
    for folders, _ in folder_paths.folder_names_and_paths.values():
        for folder in folders:
            Path(folder).mkdir(parents=True, exist_ok=True)


@dataclass
class Comfy:
    """A stand-in ComfyUI: its base folder and its ``folder_paths`` and ``server`` modules."""

    base: Path
    folder_paths: ModuleType
    server: ModuleType

    @property
    def models(self) -> Path:
        return self.base / "models"


def safetensors_bytes(tag: str) -> bytes:
    """A tiny valid safetensors file; ``tag`` goes into its metadata so contents differ."""
    header = {
        "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "__metadata__": {"tag": tag},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\0\0\0\0"


def write_model(path: Path, tag: str | None = None) -> Path:
    """Write a tiny safetensors model at ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(safetensors_bytes(tag or path.name))
    return path
