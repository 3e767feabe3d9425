"""What nodes reach at run time: the one holder of the running library, set by ``comfy_entry``.

ComfyUI creates node objects itself and calls their method with the node's inputs only, so a
node cannot be handed the library the way a route table is. ``comfy_entry.start`` binds a
provider here when Model Shelf starts inside ComfyUI (and unbinds it when it stops); nodes call
`current` when they run. Nothing else in the package keeps state in a module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from ..library import Shelf
from ..library.comfy_paths import FolderPathsBridge
from ..library.errors import LibraryNotReadyError


@dataclass(frozen=True)
class NodeContext:
    """The running library and ComfyUI's ``folder_paths`` it is bridged to."""

    shelf: Shelf
    folder_paths: ModuleType | None = None
    bridge: FolderPathsBridge | None = None


Provider = Callable[[], "NodeContext | None"]

_lock = threading.Lock()
_provider: Provider | None = None


def bind(provider: Provider) -> Callable[[], None]:
    """Make ``provider`` the source of `current`; returns the function that unbinds it (only if
    it is still the bound one: a later start keeps its own)."""
    global _provider
    with _lock:
        _provider = provider

    def unbind() -> None:
        global _provider
        with _lock:
            if _provider is provider:
                _provider = None

    return unbind


def current() -> NodeContext:
    """The running library, for a node that is running.

    Raises:
        `LibraryNotReadyError`: Model Shelf is not started, or its library is still opening.
    """
    with _lock:
        provider = _provider
    context = provider() if provider is not None else None
    if context is None:
        raise LibraryNotReadyError(
            "the Model Shelf library is not open (yet): check the ComfyUI log for its root, "
            "and run again in a moment"
        )
    return context
