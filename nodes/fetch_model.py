"""Fetch Model: a model by its source, from the library or downloaded now, named for a loader.

Its output links into any loader's model input (``ckpt_name``, ``lora_name``...): the loader gets
the model's name as ComfyUI lists it.
"""

from __future__ import annotations

from typing import Any

from ..library.downloads.tasks import TaskOrigin
from ..library.errors import FetchInterruptedError, ShelfError
from ..library.layout import MODEL_TYPES
from . import comfy_host, runtime
from .types import ANY


class FetchModel:
    """Returns the library's model for a source (matched by sha256, source or name), or
    downloads it first with a progress bar on the node. Cancelling the run pauses the
    download; running again resumes it."""

    CATEGORY = "Model Shelf"
    FUNCTION = "fetch"
    RETURN_TYPES = (ANY,)
    RETURN_NAMES = ("model_name",)
    OUTPUT_TOOLTIPS = ("The model's name as ComfyUI lists it: link it to a loader's model input.",)
    DESCRIPTION = (
        "Gets a model into the Model Shelf library (Hugging Face, Civitai or any https URL) and "
        "gives its name to a loader. Models already in the library are not downloaded again."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, tuple[Any, ...]]]:
        return {
            "required": {
                "source": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "https URL, Hugging Face link or org/repo/file, hf://..., "
                        "Civitai link, civitai:<version id>, or urn:air:...",
                    },
                ),
                "type": (list(MODEL_TYPES), {"default": "checkpoints"}),
            },
            "optional": {
                "name": (
                    "STRING",
                    {"default": "", "tooltip": "Name under the type folder (default: the file's)"},
                ),
                "sha256": (
                    "STRING",
                    {"default": "", "tooltip": "Expected sha256: another file is refused"},
                ),
            },
        }

    @classmethod
    def IS_CHANGED(cls, source: str, type: str, name: str = "", sha256: str = "") -> str:
        """Run again when the inputs change, or when the model they name left the library."""
        key = f"{type}|{source.strip()}|{name.strip()}|{sha256.strip().lower()}"
        try:
            record = runtime.current().shelf.fetcher.find(
                source, type, name.strip() or None, sha256.strip() or None
            )
        except (ShelfError, OSError):  # not ready, or a bad source: `fetch` will say why
            return key + "|unknown"
        return f"{key}|{record.id if record is not None else 'missing'}"

    def fetch(self, source: str, type: str, name: str = "", sha256: str = "") -> tuple[str]:
        """The model's listed name; downloads it first if the library lacks it.

        Raises:
            `ShelfError`: a refused source, a failed download (ComfyUI shows the message).
            ComfyUI's ``InterruptProcessingException``: the run was cancelled (download paused).
        """
        shelf = runtime.current().shelf
        try:
            record = shelf.fetch_model(
                source,
                type,
                name.strip() or None,
                sha256.strip() or None,
                progress=comfy_host.progress_reporter(),
                should_stop=comfy_host.interrupted,
                # The node's source is part of a workflow, which may come from anyone.
                origin=TaskOrigin.WORKFLOW,
            )
        except FetchInterruptedError as stopped:
            comfy_host.raise_interrupted(stopped)
        return (record.name,)
