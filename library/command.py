"""The command that runs our CLI from this install, for messages that tell a person what to type.

Installed with pip, the package is ``model_shelf`` and ``python -m model_shelf`` works. Loaded by
ComfyUI from ``custom_nodes/<folder>/`` it is not importable by that name (ComfyUI names the
module by its path), so the command runs the folder itself (its ``__main__.py``) with the
interpreter that is running now: the one that has our dependencies.
"""

from __future__ import annotations

import os
import shlex
import sys
from functools import cache
from pathlib import Path

PACKAGE = "model_shelf"
PACKAGE_DIR = Path(os.path.abspath(__file__)).parent.parent
"""This install's folder as it was reached (a link under custom_nodes stays a link)."""


@cache
def cli_command() -> str:
    """``python -m model_shelf`` where that works, else ``<python> <package folder>``."""
    if _importable_here():
        return f"python -m {PACKAGE}"
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(PACKAGE_DIR))}"


def _importable_here() -> bool:
    """Would a fresh interpreter import this folder as ``model_shelf``? Asks the import
    system's finders (sys.path, editable installs), not ``sys.modules``: a folder run by its
    ``__main__.py`` registers itself there under that name."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(PACKAGE, None)
        except (ImportError, ValueError, TypeError):
            continue
        if spec is not None:
            return bool(spec.origin) and Path(spec.origin).resolve().parent == PACKAGE_DIR.resolve()
    return False


def enclosing_comfy(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The ComfyUI folder this install is a node pack of (``<ComfyUI>/custom_nodes/<folder>``),
    or None: there the CLI uses the library that ComfyUI uses, not a per-user one."""
    custom_nodes = package_dir.parent
    comfy = custom_nodes.parent
    if custom_nodes.name == "custom_nodes" and (comfy / "folder_paths.py").is_file():
        return comfy
    return None


__all__ = ["cli_command", "enclosing_comfy"]
