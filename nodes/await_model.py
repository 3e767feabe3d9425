"""The waiting node that auto-fetch puts into a prompt, and the on-prompt handler that does it.

`AutoFetchHandler` is registered by ``comfy_entry.start`` with
``PromptServer.instance.add_on_prompt_handler``: for each submitted prompt it plans, queues and
rewrites (see `library.autofetch`). Each injected `AwaitModel` node waits for its download on
ComfyUI's worker thread (the event loop stays free), with the progress bar on the loader it
feeds, and returns the model's listed name; or fails with the reason a model is unavailable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..library.autofetch import FolderPathsResolver, execute, plan, rewrite
from ..library.errors import DownloadFailedError, FetchInterruptedError, ModelUnavailableError
from . import comfy_host, runtime
from .types import ANY

log = logging.getLogger("model_shelf.autofetch")

AWAIT_CLASS = "ModelShelfAwaitModel"
MISSING_CLASS = "Missing model (Model Shelf)"
"""The same node, injected where a model is unavailable: the page titles a run-time error with
the failing node's class name, so this one reads as plain words."""


class ModelNotProvided(ModelUnavailableError):
    """`ModelUnavailableError` as a node raises it. ComfyUI reports an exception's type as
    ``<module>.<qualname>`` and loads this package from custom_nodes under a module named by
    its file path (``.../custom_nodes/comfyui-model-shelf.library.errors``): this one is named
    as the package is known."""


ModelNotProvided.__module__ = "model_shelf"
ModelNotProvided.__qualname__ = ModelNotProvided.__name__ = "ModelUnavailableError"


class AwaitModel:
    """Waits for a model's download and returns its name (added by auto-fetch, not by hand)."""

    CATEGORY = "Model Shelf/internal"
    FUNCTION = "wait"
    RETURN_TYPES = (ANY,)
    RETURN_NAMES = ("model_name",)
    # ComfyUI's page leaves deprecated nodes out of its search: this one is only ever added to
    # a prompt by the auto-fetch handler.
    DEPRECATED = True
    DESCRIPTION = "Added by Model Shelf's auto-fetch: waits for a workflow's missing model."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple[Any, ...]]]:
        return {
            "required": {
                "task_id": ("STRING", {"default": ""}),
                "model_type": ("STRING", {"default": ""}),
                "model": ("STRING", {"default": ""}),
                "for_node": ("STRING", {"default": ""}),
                "error": ("STRING", {"default": ""}),
            },
            # The loader as the person sees it (`autofetch.loader_label`), for a failed download.
            "optional": {"loader": ("STRING", {"default": ""})},
        }

    def wait(
        self,
        task_id: str,
        model_type: str,
        model: str,
        for_node: str,
        error: str,
        loader: str = "",
    ) -> tuple[str]:
        """The fetched model's listed name.

        Raises:
            `ModelUnavailableError`: nobody can provide the model (``error`` says why).
            `DownloadFailedError`: its download failed or was cancelled.
            ComfyUI's ``InterruptProcessingException``: the run was cancelled (download paused).
        """
        if error or not task_id:
            raise ModelNotProvided(error or f"Model '{model}' ({model_type}) is unavailable")
        shelf = runtime.current().shelf
        try:
            name = shelf.wait_for_download(
                task_id,
                progress=comfy_host.progress_reporter(for_node or None),
                should_stop=comfy_host.interrupted,
            )
        except FetchInterruptedError as stopped:
            comfy_host.raise_interrupted(stopped)
        except DownloadFailedError as failed:
            if not loader:
                raise
            raise DownloadFailedError(
                f"{loader}: {failed.message}", task_id=failed.task_id, task_code=failed.task_code
            ) from failed
        return (name,)


class AutoFetchHandler:
    """ComfyUI's on-prompt handler: fetch what a prompt's loaders miss (see the module).

    Args:
        context (`Callable`): the running library (`runtime.NodeContext`), None until open.
    """

    def __init__(self, context: Callable[[], runtime.NodeContext | None]) -> None:
        self.context = context

    def __call__(self, json_data: dict[str, Any]) -> dict[str, Any]:
        """Return the ``/prompt`` body to validate: rewritten when models must be fetched or
        renamed, else as given. Never raises (ComfyUI would skip the rest of its handlers)."""
        try:
            return self._handle(json_data)
        except Exception:  # handler top level: the prompt goes on as the user sent it
            log.exception("Model Shelf: auto-fetch failed; the prompt is run as submitted")
            return json_data

    def _handle(self, json_data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(json_data, dict) or not isinstance(json_data.get("prompt"), dict):
            return json_data
        context = self.context()
        if context is None or context.folder_paths is None:
            return json_data  # the library is still opening: ComfyUI's own checks apply
        resolver = FolderPathsResolver(context.folder_paths, context.bridge)
        fetch_plan = plan(json_data, context.shelf, resolver)
        if not fetch_plan.changes_prompt:
            return json_data
        execute(fetch_plan, context.shelf)
        for fetch in fetch_plan.fetches:
            if fetch.task_id:
                log.info(
                    "Model Shelf: fetching %s (%s) for the prompt: download %s",
                    fetch.requested,
                    fetch.model_type,
                    fetch.task_id,
                )
        return rewrite(json_data, fetch_plan, AWAIT_CLASS, MISSING_CLASS)
