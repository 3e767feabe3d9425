"""Stand-ins for a few of ComfyUI's own nodes (written for our tests, not ComfyUI's code).

The loaders mirror ComfyUI 0.3.64's ``nodes.py`` where a workflow meets them: the same class
names, input names, combos built from ``folder_paths.get_filename_list`` at ``INPUT_TYPES``
time, the same return types, and the same call to ``folder_paths.get_full_path_or_raise``. They
return the resolved path instead of loading weights. ``ModelSink`` is ours: an output node to
end a test prompt with (ComfyUI runs only what feeds an output node).
"""

from __future__ import annotations

import sys
from typing import Any


def _folder_paths() -> Any:
    return sys.modules["folder_paths"]


class CheckpointLoaderSimple:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"ckpt_name": (_folder_paths().get_filename_list("checkpoints"), {})}}

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"

    def load_checkpoint(self, ckpt_name: str) -> tuple[str, str, str]:
        path = _folder_paths().get_full_path_or_raise("checkpoints", ckpt_name)
        return (path, path, path)


class LoraLoader:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL", {}),
                "clip": ("CLIP", {}),
                "lora_name": (_folder_paths().get_filename_list("loras"), {}),
                "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0}),
                "strength_clip": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0}),
            }
        }

    RETURN_TYPES = ("MODEL", "CLIP")
    FUNCTION = "load_lora"

    def load_lora(
        self, model: str, clip: str, lora_name: str, strength_model: float, strength_clip: float
    ) -> tuple[str, str]:
        path = _folder_paths().get_full_path_or_raise("loras", lora_name)
        return (f"{model}+{path}", f"{clip}+{path}")


class VAELoader:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        # The real list also offers taesd variants found in vae_approx; pixel_space always.
        return {
            "required": {
                "vae_name": ([*_folder_paths().get_filename_list("vae"), "pixel_space"], {})
            }
        }

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"

    def load_vae(self, vae_name: str) -> tuple[str]:
        if vae_name == "pixel_space":
            return ("pixel_space",)
        return (_folder_paths().get_full_path_or_raise("vae", vae_name),)


class ModelSink:
    """Ours: an output node that keeps what it was given."""

    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "keep"
    received: list[tuple[str, ...]] = []

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL", {})}, "optional": {"vae": ("VAE", {})}}

    def keep(self, model: str, vae: str | None = None) -> tuple[()]:
        type(self).received.append((model,) if vae is None else (model, vae))
        return ()


MAPPINGS: dict[str, type] = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple,
    "LoraLoader": LoraLoader,
    "VAELoader": VAELoader,
    "ModelSink": ModelSink,
}
