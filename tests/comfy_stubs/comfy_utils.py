"""Stand-in for the progress part of ComfyUI's ``comfy.utils`` (written for our tests).

Mirrors ComfyUI 0.3.64 (commit 637221995f7424a561bd825de3e61ea117dfe1e3): ``ProgressBar(total,
node_id=None)`` takes the global hook when it is made and calls it from ``update_absolute``
(values above the total are clipped); ``set_progress_bar_global_hook`` sets that hook (ComfyUI's
``main.py`` sets one that raises on cancel and sends ``progress`` to the page: see
``execution.hijack_progress``). Loaded as ``comfy.utils``; nothing else of the module is here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PROGRESS_BAR_ENABLED = True
PROGRESS_BAR_HOOK: Callable[..., Any] | None = None


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


def set_progress_bar_global_hook(function: Callable[..., Any] | None) -> None:
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar:
    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)
