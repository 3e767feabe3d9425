"""The one place that reads the environment: where the library root is, with units on numbers.

Order for the root: an explicit ``--root`` (or caller argument), then ``MODEL_SHELF_ROOT``, then
the default: ``<ComfyUI>/model-shelf`` inside ComfyUI (beside its ``models/``), else
``$XDG_DATA_HOME/model-shelf`` (``~/.local/share/model-shelf``; ``%LOCALAPPDATA%`` on Windows).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT_ENV = "MODEL_SHELF_ROOT"

HASH_CHUNK_BYTES = 4 * 1024 * 1024
"""Read size for hashing and copying: large enough that per-chunk overhead vanishes."""

STALE_TEMP_SECONDS = 24 * 3600
"""A temporary file whose owner we cannot check (another host) is removed after this long."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""Several processes share one index; a writer waits this long for another's lock."""


def default_root(comfy_base: Path | None = None) -> Path:
    """Return the documented default library root.

    Args:
        comfy_base (`Path`, *optional*): ComfyUI's base folder when running inside ComfyUI.

    Returns:
        `Path`: ``<comfy_base>/model-shelf`` inside ComfyUI, else a per-user data folder.
    """
    if comfy_base is not None:
        return comfy_base / "model-shelf"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "model-shelf"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "model-shelf"


def resolve_root(
    explicit: str | os.PathLike[str] | None = None, comfy_base: Path | None = None
) -> Path:
    """Pick the library root: explicit argument, then ``MODEL_SHELF_ROOT``, then the default."""
    chosen = explicit or os.environ.get(ROOT_ENV) or default_root(comfy_base)
    return Path(chosen).expanduser().absolute()
