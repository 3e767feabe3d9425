"""Start Model Shelf inside a running ComfyUI. Only ``__init__.py`` calls this.

The library is opened on a background thread: the start-up sync touches the disk and ComfyUI's
own start must not wait for it.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from .library import Shelf, ShelfError
from .library.settings import resolve_root

log = logging.getLogger("model_shelf")


def start() -> threading.Thread:
    """Open the library root in the background; returns the thread doing it."""
    folder_paths = sys.modules["folder_paths"]
    root = resolve_root(None, comfy_base=Path(folder_paths.base_path))

    def open_library() -> None:
        try:
            shelf = Shelf.open(root)
        except ShelfError as exc:
            log.error("Model Shelf: library at %s unavailable: %s", root, exc)
            return
        log.info("Model Shelf: library at %s, %d models", root, shelf.index.count())

    thread = threading.Thread(target=open_library, name="model-shelf-open", daemon=True)
    thread.start()
    return thread
