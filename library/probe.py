"""What is this model file? Answered from headers alone: no weights loaded, nothing unpickled.

* safetensors: the 8-byte length and the JSON header are parsed and validated here, with the same
  rules as the reference implementation, so a broken file gets a precise, human message. When
  numpy is importable (always, inside ComfyUI), ``safetensors.safe_open`` then confirms the
  header too; it cannot be the only check because it refuses to open anything without numpy.
* pickle formats (``.ckpt .pt .pt2 .pth .bin .pkl``): scanned with picklescan, which reads the
  opcodes (inside PyTorch's zip format as well) and never executes them.
* GGUF: the magic, the version and the tensor count from the fixed-size start of the file.

Architecture and kind are guessed from key names (and a few shapes) by one ordered rule table,
`_RULES`; the first rule that matches wins.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO, Literal

from picklescan.scanner import SafetyLevel, scan_file_path
from pydantic import BaseModel, Field
from safetensors import SafetensorError, safe_open

from .errors import CorruptModelError, NotAModelError, SourceNotFoundError

Format = Literal["safetensors", "pickle", "gguf", "other"]

SAFETENSORS_SUFFIXES = frozenset({".safetensors", ".sft"})  # .sft: early Flux releases
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pt2", ".pth", ".bin", ".pkl"})  # as layout.py
GGUF_SUFFIXES = frozenset({".gguf"})
WEIGHT_SUFFIXES = (SAFETENSORS_SUFFIXES | PICKLE_SUFFIXES | GGUF_SUFFIXES) - {".pkl"}
"""Files `probe_path` treats as a folder model's weights."""

# The reference implementation refuses larger headers; so do we, before reading a byte of them.
MAX_HEADER_BYTES = 100_000_000
# Legal headers beyond these are not parsed (a million tensors cost 1.7 GB and 13 s): the
# result says so and the file is imported all the same. Real models stay far below (Flux:
# ~1,500 tensors, a ~200 KB header).
MAX_INSPECT_HEADER_BYTES = 16 * 1024 * 1024
MAX_INSPECT_TENSORS = 100_000
MAX_METADATA_KEYS = 100
MAX_METADATA_VALUE_CHARS = 2000
MAX_METADATA_KEY_CHARS = 200

# Bits per element of every dtype safetensors 0.8 accepts; anything else fails to load anyway.
_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

_GGUF_MAGIC = b"GGUF"


class PickleVerdict(str, Enum):
    """What picklescan concluded about a pickle-based file."""

    SAFE = "safe"
    DANGEROUS = "dangerous"
    UNSCANNED = "unscanned"
    ERROR = "error"


# Worst first: merging several files keeps the worst verdict.
_VERDICT_SEVERITY = (
    PickleVerdict.DANGEROUS,
    PickleVerdict.ERROR,
    PickleVerdict.UNSCANNED,
    PickleVerdict.SAFE,
)


class ProbeResult(BaseModel):
    """What a model file (or a set of files forming one model) looks like from its headers.

    Stored inside the sidecar record, so every field is JSON-friendly and defaulted.
    """

    format: Format = "other"
    tensor_count: int | None = None
    parameter_count: int | None = None
    dtypes: dict[str, int] = Field(default_factory=dict)
    """Safetensors dtype name ("F16", "BF16", "F8_E4M3", ...) -> number of tensors."""
    architecture: str | None = None
    """Model family ("sd1", "sdxl", "flux", "wan", ...); for text encoders the encoder itself
    ("clip_l", "t5", ...). None when unknown."""
    kind: str | None = None
    """"checkpoint", "diffusion_model", "lora", "vae", "text_encoder", "controlnet",
    "clip_vision", "upscaler", "embedding", or None when unknown."""
    metadata: dict[str, str] = Field(default_factory=dict)
    """Safetensors ``__metadata__``, at most 100 keys, each value cut to 2000 characters."""
    pickle_verdict: PickleVerdict | None = None
    """Set only when a pickle-based file was scanned."""
    pickle_globals: list[str] = Field(default_factory=list)
    """Dangerous globals picklescan found, as "module.name"."""
    error: str | None = None
    """A non-fatal problem, e.g. picklescan itself failed."""


# --- public API ---------------------------------------------------------------------------------


def probe_file(path: Path) -> ProbeResult:
    """Describe one model file from its header.

    Args:
        path (`Path`): The file. Its suffix picks the reader: ``.safetensors``/``.sft``,
            ``.ckpt``/``.pt``/``.pt2``/``.pth``/``.bin``/``.pkl`` (pickle, scanned), ``.gguf``;
            anything else gives ``format="other"``.

    Returns:
        `ProbeResult`: Counts, dtypes, guessed architecture and kind, and for pickles the
        picklescan verdict.

    Raises:
        `SourceNotFoundError`: The file does not exist.
        `NotAModelError`: The path is a folder or some other non-file.
        `CorruptModelError`: A safetensors or GGUF header is truncated or invalid.
    """
    path = Path(path)
    return _combine([_probe_one(path)])


def probe_files(paths: Sequence[Path]) -> ProbeResult:
    """Describe several files that together form one model.

    A sharded set (``model-00001-of-00005.safetensors`` ...) or the weight files of a diffusers
    folder. Tensor and parameter counts and dtypes are summed; architecture and kind are guessed
    from the union of all keys; the worst pickle verdict wins.

    Args:
        paths (`Sequence[Path]`): The files, in any order.

    Returns:
        `ProbeResult`: The combined description.

    Raises:
        `NotAModelError`: ``paths`` is empty, or one of them is not a file.
        `SourceNotFoundError`: One of the files does not exist.
        `CorruptModelError`: One of the files has a truncated or invalid header.
    """
    if not paths:
        raise NotAModelError("no files to probe")
    return _combine([_probe_one(Path(p)) for p in paths])


def probe_path(path: Path) -> ProbeResult:
    """Describe a model file or a model folder.

    A file goes to `probe_file`. A folder goes to `probe_files` over its weight files
    (``WEIGHT_SUFFIXES``: ``.safetensors``, ``.sft``, ``.bin``, ``.ckpt``, ``.pt``, ``.pth``,
    ``.gguf``; recursive, sorted, hidden files and folders skipped). When a folder has
    safetensors files, only those are counted, because diffusers repositories often carry
    ``.bin`` copies of the same weights; the pickle files are still scanned and their verdict
    reported. A diffusers folder (one with ``model_index.json``) is a ``"checkpoint"`` and
    takes its architecture from the pipeline's ``_class_name`` where that is recognised.

    Args:
        path (`Path`): A model file or folder.

    Returns:
        `ProbeResult`: The description.

    Raises:
        `SourceNotFoundError`: Nothing exists at ``path``.
        `NotAModelError`: A folder without weight files, or a path that is neither file nor folder.
        `CorruptModelError`: A file has a truncated or invalid header.
    """
    path = Path(path)
    if not path.is_dir():
        return probe_file(path)

    weights = _weight_files(path)
    if not weights:
        raise NotAModelError(
            f"{path}: no model weight files ({', '.join(sorted(WEIGHT_SUFFIXES))}) in this folder",
            path=str(path),
        )
    counted = [p for p in weights if p.suffix.lower() in SAFETENSORS_SUFFIXES] or weights
    scan_only = [p for p in weights if p.suffix.lower() in PICKLE_SUFFIXES and p not in counted]
    result = _combine(
        [_probe_one(p) for p in counted], scan_only=[_scan_pickle(p) for p in scan_only]
    )

    if (path / "model_index.json").is_file():
        result.kind = "checkpoint"
        result.architecture = _diffusers_architecture(path) or result.architecture
    return result


# --- one file -----------------------------------------------------------------------------------


@dataclass
class _FileProbe:
    """One file's result before combining, plus the key shapes the rules need."""

    result: ProbeResult
    shapes: dict[str, tuple[int, ...]]


def _probe_one(path: Path) -> _FileProbe:
    if not path.exists():
        raise SourceNotFoundError(f"{path}: no such file", path=str(path))
    if not path.is_file():
        raise NotAModelError(f"{path}: not a regular file", path=str(path))

    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _probe_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _FileProbe(_scan_pickle(path), {})
    if suffix in GGUF_SUFFIXES:
        return _FileProbe(_probe_gguf(path), {})
    return _FileProbe(ProbeResult(format="other"), {})


class _TooLargeToInspect(Exception):
    """A legal header larger than the probe will parse (see `MAX_INSPECT_HEADER_BYTES`)."""


def _probe_safetensors(path: Path) -> _FileProbe:
    try:
        shapes, dtypes, metadata = _read_safetensors_header(path)
    except _TooLargeToInspect as exc:
        return _FileProbe(ProbeResult(format="safetensors", error=str(exc)), {})
    _confirm_with_reference(path)
    result = ProbeResult(
        format="safetensors",
        tensor_count=len(shapes),
        parameter_count=sum(math.prod(shape) for shape in shapes.values()),
        dtypes=dict(Counter(dtypes.values())),
        metadata=_trim_metadata(metadata),
    )
    return _FileProbe(result, shapes)


def _read_safetensors_header(
    path: Path,
) -> tuple[dict[str, tuple[int, ...]], dict[str, str], dict[str, str]]:
    """Parse and validate a safetensors header: shapes, dtypes and metadata by tensor name.

    Reads only the 8-byte length and the header itself. Every check the reference
    implementation makes is made here, each with its own message.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header_bytes = _read_header_bytes(f, size, path)

    try:
        text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _corrupt(path, f"the header is not UTF-8 text (bad byte at {exc.start})") from None
    try:
        header = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _corrupt(
            path, f"the header is not valid JSON ({exc.msg} at character {exc.pos})"
        ) from None
    except (ValueError, RecursionError) as exc:
        # Absurdly long numbers or deep nesting: Python's json gives up before finding an error.
        raise _corrupt(path, f"the header is not usable JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "the header is JSON but not an object")
    if len(header) > MAX_INSPECT_TENSORS:
        raise _TooLargeToInspect(
            f"header too large to inspect: {len(header):,} tensors, over the "
            f"{MAX_INSPECT_TENSORS:,} the probe reads (not checked, not guessed)"
        )

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _corrupt(path, "__metadata__ must map strings to strings")

    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        dtype, shape, begin, end = _tensor_entry(path, name, info)
        shapes[name] = shape
        dtypes[name] = dtype
        spans.append((begin, end, name))

    data_start = 8 + len(header_bytes)
    data_end = data_start + max((end for _, end, _ in spans), default=0)
    if data_end > size:
        raise _corrupt(
            path,
            f"truncated: the header says the data ends at byte {data_end:,} "
            f"but the file has {size:,} bytes",
        )
    if data_end < size:
        raise _corrupt(
            path,
            f"{size - data_end:,} unexpected bytes after the tensor data (the header says "
            f"the data ends at byte {data_end:,}, the file has {size:,} bytes)",
        )

    expected_begin = 0
    for begin, end, name in sorted(spans):
        if begin != expected_begin:
            raise _corrupt(
                path,
                f"tensor {name!r} starts at data offset {begin:,} but the previous tensor "
                f"ends at {expected_begin:,} (overlapping or gapped data_offsets)",
            )
        numel = _numel(shapes[name])
        bits = None if numel is None else numel * _DTYPE_BITS[dtypes[name]]
        if bits is None or bits % 8 or bits // 8 != end - begin:
            needs = "more than 2**64 elements" if bits is None else f"{bits / 8:g} bytes"
            raise _corrupt(
                path,
                f"tensor {name!r} ({dtypes[name]} {list(shapes[name])}) needs {needs} "
                f"but its data_offsets span {end - begin:,} bytes",
            )
        expected_begin = end
    return shapes, dtypes, metadata


def _read_header_bytes(f: BinaryIO, size: int, path: Path) -> bytes:
    """Read the length field and the header it announces, checking both against the file."""
    prefix = f.read(8)
    if len(prefix) < 8:
        raise _corrupt(
            path,
            f"the file has only {size} bytes, fewer than the 8-byte header length "
            "every safetensors file starts with",
        )
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER_BYTES:
        raise _corrupt(
            path,
            f"the header length field says {length:,} bytes, over the {MAX_HEADER_BYTES:,} "
            f"limit{_looks_like(prefix)}",
        )
    if 8 + length > size:
        raise _corrupt(
            path,
            f"truncated inside the header: the header is {length:,} bytes but only "
            f"{size - 8:,} bytes follow the length field{_looks_like(prefix)}",
        )
    if length > MAX_INSPECT_HEADER_BYTES:
        raise _TooLargeToInspect(
            f"header too large to inspect: {length:,} bytes, over the "
            f"{MAX_INSPECT_HEADER_BYTES:,} the probe reads (not checked, not guessed)"
        )
    return f.read(length)


def _looks_like(prefix: bytes) -> str:
    """A hint for files that are some other format with a safetensors name."""
    if prefix.startswith(b"PK\x03\x04"):
        return "; this looks like a zip file (a PyTorch checkpoint?), not safetensors"
    if prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "; this looks like a pickle file, not safetensors"
    if prefix.startswith(_GGUF_MAGIC):
        return "; this looks like a GGUF file, not safetensors"
    return ""


def _tensor_entry(path: Path, name: str, info: object) -> tuple[str, tuple[int, ...], int, int]:
    """Validate one header entry; returns dtype, shape and the data_offsets pair."""
    if not isinstance(info, dict):
        raise _corrupt(path, f"tensor {name!r} has a malformed header entry")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _DTYPE_BITS:
        raise _corrupt(path, f"tensor {name!r} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_size(d) for d in shape):
        raise _corrupt(path, f"tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_size(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise _corrupt(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _numel(shape: tuple[int, ...]) -> int | None:
    """Element count, or None past 2**64 (as the reference does, and before a header listing
    thousands of huge dimensions turns into one enormous multiplication)."""
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count >= 2**64:
            return None
    return count


def _is_size(value: object) -> bool:
    # bool is an int in Python but not in JSON; sizes are unsigned 64-bit in the format.
    return type(value) is int and 0 <= value < 2**64


def _confirm_with_reference(path: Path) -> None:
    """Let safetensors itself open the header, in case it rejects what we accepted."""
    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except SafetensorError as exc:
        raise _corrupt(path, f"rejected by safetensors: {exc}") from None
    except ImportError:
        # safetensors needs numpy to open any file; without it our own checks stand alone.
        pass


def _trim_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    # Sorted so that which 100 keys survive does not depend on the writer's order.
    return {
        key[:MAX_METADATA_KEY_CHARS]: value[:MAX_METADATA_VALUE_CHARS]
        for key, value in sorted(metadata.items())[:MAX_METADATA_KEYS]
    }


def _scan_pickle(path: Path) -> ProbeResult:
    """Scan a pickle-based file with picklescan; its failures are recorded, never raised."""
    try:
        scan = scan_file_path(str(path))
    except Exception as exc:  # third-party parser on hostile input: any crash is a result
        return ProbeResult(
            format="pickle",
            pickle_verdict=PickleVerdict.ERROR,
            error=f"{path.name}: picklescan failed: {type(exc).__name__}: {exc}",
        )
    dangerous = sorted(
        {f"{g.module}.{g.name}" for g in scan.globals if g.safety == SafetyLevel.Dangerous}
    )
    result = ProbeResult(format="pickle", pickle_globals=dangerous)
    if dangerous:
        result.pickle_verdict = PickleVerdict.DANGEROUS
    elif scan.scan_err:
        result.pickle_verdict = PickleVerdict.ERROR
        result.error = f"{path.name}: picklescan could not parse the whole pickle stream"
    elif scan.scanned_files == 0:
        # A zip with no pickle inside: nothing was checked, so nothing can be called safe.
        result.pickle_verdict = PickleVerdict.UNSCANNED
        result.error = f"{path.name}: no pickle stream found to scan"
    else:
        result.pickle_verdict = PickleVerdict.SAFE
    return result


def _probe_gguf(path: Path) -> ProbeResult:
    """Read the GGUF magic, version and counts (little-endian) from the start of the file."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        start = f.read(24)
    if start[:4] != _GGUF_MAGIC:
        raise _corrupt(path, f"does not start with the GGUF magic (found {start[:4]!r})", "GGUF")
    if len(start) < 8:
        raise _corrupt(path, f"truncated: the file has only {size} bytes", "GGUF")
    (version,) = struct.unpack_from("<I", start, 4)
    # Version 1 stored the counts as uint32; later versions as uint64.
    counts_format = "<II" if version == 1 else "<QQ"
    fixed_size = 8 + struct.calcsize(counts_format)
    if len(start) < fixed_size:
        raise _corrupt(path, f"truncated: the file has only {size} bytes", "GGUF")
    tensor_count, kv_count = struct.unpack_from(counts_format, start, 8)
    # Each tensor entry takes at least 24 bytes and each metadata entry at least 13, so a
    # count the file cannot hold means a damaged header, caught here without reading further.
    if fixed_size + tensor_count * 24 + kv_count * 13 > size:
        raise _corrupt(
            path,
            f"the header claims {tensor_count:,} tensors and {kv_count:,} metadata entries, "
            f"more than a file of {size:,} bytes can hold",
            "GGUF",
        )
    return ProbeResult(format="gguf", tensor_count=tensor_count)


def _corrupt(path: Path, reason: str, what: str = "safetensors") -> CorruptModelError:
    return CorruptModelError(f"{path}: not a valid {what} file: {reason}", path=str(path))


# --- several files ------------------------------------------------------------------------------


def _combine(parts: Sequence[_FileProbe], scan_only: Iterable[ProbeResult] = ()) -> ProbeResult:
    """Merge per-file results into one; ``scan_only`` contributes pickle findings alone."""
    results = [part.result for part in parts]
    scans = list(scan_only)
    formats = {r.format for r in results}
    shapes: dict[str, tuple[int, ...]] = {}
    for part in parts:
        shapes.update(part.shapes)
    architecture, kind = _classify(shapes) if shapes else (None, None)

    dtypes: Counter[str] = Counter()
    metadata: dict[str, str] = {}
    for r in results:
        dtypes.update(r.dtypes)
        for key, value in r.metadata.items():
            if len(metadata) < MAX_METADATA_KEYS:
                metadata.setdefault(key, value)

    verdicts = {r.pickle_verdict for r in results + scans if r.pickle_verdict is not None}
    errors = [r.error for r in results + scans if r.error]
    return ProbeResult(
        format=next(f for f in ("safetensors", "gguf", "pickle", "other") if f in formats),
        tensor_count=_sum_known(r.tensor_count for r in results),
        parameter_count=_sum_known(r.parameter_count for r in results),
        dtypes=dict(dtypes),
        architecture=architecture,
        kind=kind,
        metadata=metadata,
        pickle_verdict=next((v for v in _VERDICT_SEVERITY if v in verdicts), None),
        pickle_globals=sorted({g for r in results + scans for g in r.pickle_globals}),
        error="; ".join(dict.fromkeys(errors)) or None,
    )


def _sum_known(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _weight_files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue  # .cache/, .git/ and editor droppings are never part of the model
        if path.suffix.lower() in WEIGHT_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


# Pipelines whose family is certain from the name alone. StableDiffusionPipeline also runs SD2,
# told apart by the UNet's cross-attention width in `_diffusers_architecture`.
_DIFFUSERS_PIPELINES: dict[str, str] = {
    "StableDiffusionPipeline": "sd1",
    "StableDiffusionImg2ImgPipeline": "sd1",
    "StableDiffusionInpaintPipeline": "sd1",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusionXLInpaintPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
    "FluxFillPipeline": "flux",
    "FluxKontextPipeline": "flux",
    "WanPipeline": "wan",
    "WanImageToVideoPipeline": "wan",
    "HunyuanVideoPipeline": "hunyuan_video",
    "LTXPipeline": "ltxv",
    "LTXImageToVideoPipeline": "ltxv",
    "QwenImagePipeline": "qwen_image",
}


def _diffusers_architecture(folder: Path) -> str | None:
    class_name = _read_json_object(folder / "model_index.json").get("_class_name")
    architecture = _DIFFUSERS_PIPELINES.get(class_name) if isinstance(class_name, str) else None
    if architecture == "sd1":
        unet = _read_json_object(folder / "unet" / "config.json")
        if unet.get("cross_attention_dim") == 1024:
            architecture = "sd2"
    return architecture


def _read_json_object(path: Path) -> dict[str, object]:
    """A small JSON config, or {} when missing or unreadable: these only refine a guess."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


# --- architecture and kind from key names -------------------------------------------------------

_UNET_PREFIX = "model.diffusion_model."
# What rides along with the diffusion model in a full checkpoint: VAE and text encoders.
_CHECKPOINT_PARTS = (
    "first_stage_model.",
    "cond_stage_model.",
    "conditioner.",
    "text_encoders.",
    "vae.",
)
_LORA_MARKS = ("lora_up.", "lora_down.", "lora_A.", "lora_B.", "lora.up.", "lora.down.")
_LORA_MARKS += ("hada_w1_a", "lokr_w1")  # LyCORIS LoHa / LoKr
_LORA_UP_MARKS = ("lora_up.", "lora_B.", "lora.up.")
_EMBEDDING_KEYS = frozenset({"emb_params", "clip_l", "clip_g"})
_DIFFUSION = "diffusion"
"""Placeholder kind: "checkpoint" when a VAE or text encoder rides along, else "diffusion_model"."""


class _Keys:
    """The key names and shapes of one model, and the questions the rules ask about them."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.shapes = shapes
        inner = [k[len(_UNET_PREFIX) :] for k in shapes if k.startswith(_UNET_PREFIX)]
        # Keys are joined once, newline-framed, so each question is one substring search.
        self._all = "\n" + "\n".join(shapes) + "\n"
        self._dm = "\n" + "\n".join(inner) + "\n" if inner else self._all
        self.in_checkpoint = bool(inner) and self.starts(*_CHECKPOINT_PARTS)
        self.is_lora = self.has(*_LORA_MARKS)
        self.is_controlnet = self.starts("control_model.") or self.has(
            "input_hint_block", "controlnet_"
        )
        self.is_unet = self.dm_starts("input_blocks.0.0.weight")
        self.is_vae = self.starts(
            "encoder.conv_in.", "decoder.conv_in.", "encoder.down.0.", "decoder.up.0."
        )
        self.is_embedding = all(
            k in _EMBEDDING_KEYS or k.startswith("string_to_param.") for k in shapes
        )

    def has(self, *parts: str) -> bool:
        """Some key contains one of ``parts``."""
        return any(part in self._all for part in parts)

    def starts(self, *prefixes: str) -> bool:
        """Some key starts with one of ``prefixes``."""
        return any("\n" + prefix in self._all for prefix in prefixes)

    def dm_starts(self, *prefixes: str) -> bool:
        """Some diffusion-model key (``model.diffusion_model.`` removed) starts with a prefix."""
        return any("\n" + prefix in self._dm for prefix in prefixes)

    def context_dim(self) -> int | None:
        """Width of the text conditioning: the input side of a cross-attention key projection."""
        for key, shape in self.shapes.items():
            if (
                ("attn2.to_k" in key or "attn2_to_k" in key)
                and key.endswith("weight")
                and not any(mark in key for mark in _LORA_UP_MARKS)
                and len(shape) == 2
            ):
                return shape[1]
        return None

    def latent_channels(self) -> int | None:
        """Channels of a VAE's latent, read off the decoder's first convolution."""
        shape = self.shapes.get("decoder.conv_in.weight", ())
        return shape[1] if len(shape) >= 2 else None

    def embedding_width(self) -> int | None:
        for key, shape in self.shapes.items():
            if (key == "emb_params" or key.startswith("string_to_param.")) and shape:
                return shape[-1]
        return None


@dataclass(frozen=True)
class _Rule:
    applies: Callable[[_Keys], bool]
    architecture: str | None
    kind: str


# Ordered: the first match wins. Key names follow ComfyUI's own loaders.
_RULES: tuple[_Rule, ...] = (
    # LoRAs first: their key names spell out the layers they patch, so later rules would match.
    _Rule(
        lambda k: (
            k.is_lora and k.has("double_blocks", "single_blocks", "single_transformer_blocks")
        ),
        "flux",
        "lora",
    ),
    _Rule(lambda k: k.is_lora and k.has("joint_blocks"), "sd3", "lora"),
    _Rule(
        lambda k: (
            k.is_lora
            and k.has("blocks.0.self_attn.", "blocks_0_self_attn_", "blocks.0.cross_attn.")
        ),
        "wan",
        "lora",
    ),
    _Rule(
        lambda k: k.is_lora and k.has("lora_te2_", "text_encoder_2.", "label_emb"), "sdxl", "lora"
    ),
    _Rule(lambda k: k.is_lora and k.context_dim() == 2048, "sdxl", "lora"),
    _Rule(lambda k: k.is_lora and k.context_dim() == 1024, "sd2", "lora"),
    _Rule(lambda k: k.is_lora and k.context_dim() == 768, "sd1", "lora"),
    _Rule(lambda k: k.is_lora, None, "lora"),
    # ControlNets carry a copy of the model they steer, plus a hint encoder or controlnet_ heads.
    _Rule(
        lambda k: k.is_controlnet and k.has("double_blocks", "single_transformer_blocks"),
        "flux",
        "controlnet",
    ),
    _Rule(lambda k: k.is_controlnet and k.context_dim() == 2048, "sdxl", "controlnet"),
    _Rule(lambda k: k.is_controlnet and k.context_dim() == 1024, "sd2", "controlnet"),
    _Rule(lambda k: k.is_controlnet and k.context_dim() == 768, "sd1", "controlnet"),
    _Rule(lambda k: k.is_controlnet, None, "controlnet"),
    # Diffusion models, bare or under model.diffusion_model. in a full checkpoint.
    _Rule(lambda k: k.dm_starts("txt_in.individual_token_refiner."), "hunyuan_video", _DIFFUSION),
    _Rule(lambda k: k.dm_starts("distilled_guidance_layer."), "chroma", _DIFFUSION),
    _Rule(
        lambda k: k.dm_starts("double_blocks.") and k.dm_starts("single_blocks."),
        "flux",
        _DIFFUSION,
    ),
    _Rule(lambda k: k.dm_starts("joint_blocks."), "sd3", _DIFFUSION),
    _Rule(
        lambda k: k.dm_starts("patch_embedding.") and k.dm_starts("blocks.0.self_attn."),
        "wan",
        _DIFFUSION,
    ),
    _Rule(
        # PixArt shares adaln_single and scale_shift_table but has a patch pos_embed.
        lambda k: (
            k.dm_starts("adaln_single.")
            and k.dm_starts("scale_shift_table")
            and not k.dm_starts("pos_embed.")
        ),
        "ltxv",
        _DIFFUSION,
    ),
    _Rule(
        lambda k: k.dm_starts("txt_norm.") and k.dm_starts("transformer_blocks."),
        "qwen_image",
        _DIFFUSION,
    ),
    _Rule(lambda k: k.dm_starts("cap_embedder."), "lumina2", _DIFFUSION),
    _Rule(lambda k: k.is_unet and k.context_dim() == 2048, "sdxl", _DIFFUSION),
    _Rule(lambda k: k.is_unet and k.context_dim() == 1280, "sdxl_refiner", _DIFFUSION),
    _Rule(lambda k: k.is_unet and k.context_dim() == 1024, "sd2", _DIFFUSION),
    _Rule(lambda k: k.is_unet and k.context_dim() == 768, "sd1", _DIFFUSION),
    # No cross-attention to measure (a pruned file): the bundled text encoder tells the family.
    _Rule(lambda k: k.is_unet and k.starts("conditioner.embedders.1."), "sdxl", _DIFFUSION),
    _Rule(lambda k: k.is_unet and k.starts("cond_stage_model.model."), "sd2", _DIFFUSION),
    _Rule(lambda k: k.is_unet and k.starts("cond_stage_model.transformer."), "sd1", _DIFFUSION),
    _Rule(lambda k: k.is_unet or k.starts(_UNET_PREFIX), None, _DIFFUSION),
    # VAEs. SD1, SD2 and SDXL share the 4-channel layout, SD3 and Flux the 16-channel one; the
    # weights cannot tell them apart, so "sd1" and "flux" name the layout.
    _Rule(lambda k: k.starts("encoder.downsamples.", "decoder.upsamples."), "wan", "vae"),
    _Rule(lambda k: k.is_vae and k.latent_channels() == 16, "flux", "vae"),
    _Rule(lambda k: k.is_vae and k.latent_channels() == 4, "sd1", "vae"),
    _Rule(lambda k: k.is_vae, None, "vae"),
    # Text encoders: CLIP sizes by depth (G has 32 layers, H 24, L 12), then T5 and LLMs.
    _Rule(
        lambda k: k.starts("text_model.encoder.layers.30.", "transformer.resblocks.30."),
        "clip_g",
        "text_encoder",
    ),
    _Rule(
        lambda k: k.starts("text_model.encoder.layers.22.", "transformer.resblocks.22."),
        "clip_h",
        "text_encoder",
    ),
    _Rule(
        lambda k: k.starts("text_model.encoder.layers.", "transformer.resblocks."),
        "clip_l",
        "text_encoder",
    ),
    # UMT5 (Wan's encoder) keeps a relative attention bias in every block, T5 only in the first.
    _Rule(
        lambda k: k.starts("encoder.block.1.layer.0.SelfAttention.relative_attention_bias"),
        "umt5",
        "text_encoder",
    ),
    _Rule(lambda k: k.starts("encoder.block.0.layer.0.SelfAttention."), "t5", "text_encoder"),
    _Rule(
        lambda k: k.starts("model.layers.") and k.has("post_feedforward_layernorm"),
        "gemma",
        "text_encoder",
    ),
    _Rule(
        lambda k: k.starts("model.layers.") and k.has("self_attn.k_proj.bias"),
        "qwen",
        "text_encoder",
    ),
    _Rule(lambda k: k.starts("model.layers.0.self_attn."), None, "text_encoder"),
    _Rule(
        lambda k: k.starts("vision_model.encoder.layers.", "visual.transformer.resblocks."),
        None,
        "clip_vision",
    ),
    _Rule(
        lambda k: k.starts("conv_first.", "RRDB_trunk.", "body.0.rdb1.", "model.1.sub.0.RDB1."),
        None,
        "upscaler",
    ),
    # Textual inversion: SDXL ones hold a vector per text encoder, older ones a single one.
    _Rule(lambda k: k.is_embedding and k.has("clip_g"), "sdxl", "embedding"),
    _Rule(lambda k: k.is_embedding and k.embedding_width() == 768, "sd1", "embedding"),
    _Rule(lambda k: k.is_embedding and k.embedding_width() == 1024, "sd2", "embedding"),
    _Rule(lambda k: k.is_embedding, None, "embedding"),
)


def _classify(shapes: Mapping[str, tuple[int, ...]]) -> tuple[str | None, str | None]:
    """Guess (architecture, kind) from key names and shapes; (None, None) when unknown."""
    keys = _Keys(shapes)
    for rule in _RULES:
        if rule.applies(keys):
            if rule.kind == _DIFFUSION:
                return rule.architecture, "checkpoint" if keys.in_checkpoint else "diffusion_model"
            return rule.architecture, rule.kind
    return None, None
