"""The few ComfyUI run-time services our nodes use, imported only when a node runs.

``comfy.utils.ProgressBar`` shows progress on a node (ComfyUI routes it to the page that ran the
prompt); ``comfy.model_management`` holds ComfyUI's cancel flag and the exception that ends a
run as interrupted. Outside ComfyUI (the CLI, tests without the stand-ins) neither exists and
nodes still work, without a bar and without a cancel.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import NoReturn

from ..library.errors import FetchInterruptedError


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def progress_reporter(node_id: str | None = None) -> Callable[[int, int | None], None] | None:
    """A ``(bytes_done, total)`` callback drawing ComfyUI's progress bar, or None outside it.

    Args:
        node_id (`str`, *optional*): the node to draw it on (default: the running node).

    The bar's own hook raises ComfyUI's interrupt exception when the run is cancelled: let it
    through (the wait it interrupts pauses the download).
    """
    utils = _module("comfy.utils")
    if utils is None:
        return None
    bar = None

    def report(done: int, total: int | None) -> None:
        nonlocal bar
        if not total:
            return  # no size known yet: a bar needs one
        if bar is None:
            bar = utils.ProgressBar(total, node_id=node_id)
        bar.update_absolute(min(done, total), total)

    return report


def interrupted() -> bool:
    """True once ComfyUI's cancel was pressed for the running prompt."""
    management = _module("comfy.model_management")
    return bool(management is not None and management.processing_interrupted())


def raise_interrupted(cause: FetchInterruptedError) -> NoReturn:
    """End the node as ComfyUI ends an interrupted one (its own exception, its flag reset)."""
    management = _module("comfy.model_management")
    if management is None:
        raise cause
    management.throw_exception_if_processing_interrupted()
    raise management.InterruptProcessingException() from cause
