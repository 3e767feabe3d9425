"""The closest models the library has, for a model a workflow asks for and nobody can provide.

Only models of the same type folder can stand in (ComfyUI's loader lists only that folder), and
only those whose files are in place. They are ranked by, in order: the same kind and the same
architecture / base model as the missing one, the same architecture, the same kind, then how
alike the names are (``difflib``); each comes with the reason it was chosen.

The missing model's architecture is taken from what is known, best first: its own record (an
archived or ghost stub keeps its probe), the models the same prompt uses (a LoRA for an SDXL
checkpoint is an SDXL LoRA), then words in its name ("sdxl", "flux", "sd15"...).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from pydantic import BaseModel

from .records import Health, ModelRecord

MAX_ALTERNATIVES = 5

_NAME_HINTS: tuple[tuple[str, str], ...] = (
    (r"sdxl|(^|[^a-z])xl([^a-z]|$)|pony|illustrious", "sdxl"),
    (r"flux", "flux"),
    (r"sd3", "sd3"),
    (r"sd_?1\.?5|sd15|v1-5|(^|[^0-9])1\.5([^0-9]|$)", "sd1"),
    (r"sd_?2|v2-1|(^|[^0-9])2\.1([^0-9]|$)", "sd2"),
    (r"wan", "wan"),
    (r"ltx", "ltxv"),
    (r"hunyuan", "hunyuan_video"),
    (r"qwen", "qwen_image"),
)


_KIND_OF_TYPE = {
    "checkpoints": "checkpoint",
    "loras": "lora",
    "vae": "vae",
    "text_encoders": "text_encoder",
    "clip": "text_encoder",
    "diffusion_models": "diffusion_model",
    "unet": "diffusion_model",
    "controlnet": "controlnet",
    "clip_vision": "clip_vision",
    "upscale_models": "upscaler",
    "embeddings": "embedding",
}
"""What a model in a type folder is expected to be, when nothing better is known."""


class Alternative(BaseModel):
    id: str
    name: str
    """The name as ComfyUI lists it in its type folder (what the widget is set to)."""
    type: str
    architecture: str | None = None
    kind: str | None = None
    similarity: float
    """How alike the names are, 0..1."""
    reason: str


def architecture_from_name(name: str) -> str | None:
    """The architecture a model's file name suggests, or None."""
    text = PurePosixPath(name.lower()).stem
    for pattern, architecture in _NAME_HINTS:
        if re.search(pattern, text):
            return architecture
    return None


def _stem(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", PurePosixPath(name.lower()).stem).strip()


def find_alternatives(
    missing: str,
    model_type: str,
    candidates: Iterable[ModelRecord],
    *,
    known: ModelRecord | None = None,
    context: Sequence[ModelRecord] = (),
    limit: int = MAX_ALTERNATIVES,
) -> list[Alternative]:
    """Rank the library's models that could stand in for ``missing`` (see the module).

    Args:
        missing (`str`): the name the workflow asks for.
        model_type (`str`): its type folder.
        candidates (`Iterable[ModelRecord]`): the library's models of that type, in place.
        known (`ModelRecord`, *optional*): the library's record of the missing model (a stub).
        context (`Sequence[ModelRecord]`): the other library models the same prompt uses.
        limit (`int`, *optional*): how many to return.
    """
    wanted_kind = known.probe.kind if known is not None else None
    wanted_arch = known.probe.architecture if known is not None else None
    arch_why = "its record"
    if wanted_arch is None:
        archs = [r.probe.architecture for r in context if r.probe.architecture]
        if archs:
            wanted_arch, arch_why = max(set(archs), key=archs.count), "the workflow's other models"
    if wanted_arch is None:
        wanted_arch, arch_why = architecture_from_name(missing), "its name"
    if wanted_kind is None:
        wanted_kind = _KIND_OF_TYPE.get(model_type)
    ranked = []
    for record in candidates_list(candidates, model_type):
        if known is not None and record.id == known.id:
            continue
        same_kind = wanted_kind is not None and record.probe.kind == wanted_kind
        same_arch = wanted_arch is not None and record.probe.architecture == wanted_arch
        similarity = difflib.SequenceMatcher(None, _stem(missing), _stem(record.name)).ratio()
        tier = 0 if same_kind and same_arch else 1 if same_arch else 2 if same_kind else 3
        parts = []
        if same_kind:
            parts.append(f"same kind ({wanted_kind})")
        if same_arch:
            parts.append(f"same architecture ({wanted_arch}, from {arch_why})")
        elif wanted_arch is not None and record.probe.architecture:
            parts.append(f"other architecture ({record.probe.architecture}, not {wanted_arch})")
        parts.append(f"name {round(similarity * 100)}% alike")
        ranked.append(
            (
                (tier, -similarity, record.name),
                Alternative(
                    id=record.id,
                    name=record.name,
                    type=record.type,
                    architecture=record.probe.architecture,
                    kind=record.probe.kind,
                    similarity=round(similarity, 3),
                    reason="; ".join(parts),
                ),
            )
        )
    ranked.sort(key=lambda pair: pair[0])
    return [alternative for _, alternative in ranked[:limit]]


def candidates_list(candidates: Iterable[ModelRecord], model_type: str) -> list[ModelRecord]:
    """The candidates that can stand in at all: same type folder, files in place."""
    if not isinstance(candidates, list):
        candidates = list(candidates)
    return [
        r
        for r in candidates
        if r.type == model_type and r.health is not Health.MISSING and r.archived_at is None
    ]


def alternatives_text(alternatives: Sequence[Alternative]) -> str:
    """One sentence for an error message (the node's, the CLI's)."""
    if not alternatives:
        return ""
    shown = "; ".join(f"'{a.name}' ({a.reason})" for a in alternatives[:3])
    return f". Closest in the library: {shown}"
