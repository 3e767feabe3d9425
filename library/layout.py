"""Where files live in a library root, and which names are allowed there.

```
<root>/<type>/<name>                 a model (file, diffusers folder, or shards side by side)
<root>/<type>/<name>.shelf.json      its record
<root>/.shelf/index.db               SQLite index (disposable)
<root>/.shelf/state.db               task queue (kept)
<root>/.shelf/partial/               downloads in progress
<root>/.shelf/deletions.jsonl        one line per deleted file, written before the delete
```
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import RootUnavailableError, UnknownTypeError, UnsafeNameError

# ComfyUI's model folder types (folder_paths.folder_names_and_paths, 0.3.64 and newer), minus the
# ones that hold no models (configs, custom_nodes).
MODEL_TYPES: tuple[str, ...] = (
    "checkpoints",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)

# Older folder names ComfyUI still reads, mapped to the type they feed.
LEGACY_FOLDERS: dict[str, str] = {
    "clip": "text_encoders",
    "unet": "diffusion_models",
    "t2i_adapter": "controlnet",
}

# folder_paths.supported_pt_extensions, plus GGUF (loaded by the popular GGUF node pack).
MODEL_EXTENSIONS: frozenset[str] = frozenset(
    {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft", ".gguf"}
)
PICKLE_EXTENSIONS: frozenset[str] = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".pkl"})

SIDECAR_SUFFIX = ".shelf.json"
TEMP_SUFFIX = ".shelf-tmp"
STATE_DIRNAME = ".shelf"

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)
}
# Characters NTFS and exFAT refuse in a name, and control characters.
_ILLEGAL_CHARS = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
# Bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and kin) make ``evil\u202egpj.exe``
# read as another name: removed.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MAX_COMPONENT_BYTES = 255


def check_type(model_type: str) -> str:
    """Return ``model_type`` if ComfyUI knows it (legacy names mapped), else raise.

    Raises:
        `UnknownTypeError`: the type is not a ComfyUI model folder type.
    """
    model_type = LEGACY_FOLDERS.get(model_type, model_type)
    if model_type not in MODEL_TYPES:
        known = ", ".join(MODEL_TYPES)
        raise UnknownTypeError(f"unknown model type {model_type!r}; known types: {known}")
    return model_type


def safe_name(name: str) -> str:
    """Make a model name safe to use under a type folder on NTFS, exFAT and POSIX.

    Subfolders are allowed (``sdxl/base.safetensors``, as ComfyUI lists them). Characters that
    NTFS/exFAT refuse become ``_``, bidirectional controls are removed, trailing dots and spaces
    are dropped, reserved device names get a ``_`` after the stem (``NUL_.safetensors``).

    Raises:
        `UnsafeNameError`: the name is empty, absolute, or would leave its folder (``..``).
    """
    raw = unicodedata.normalize("NFC", name.strip())
    parts_in = raw.replace("\\", "/").split("/")
    if not raw or raw.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", raw):
        raise UnsafeNameError(f"unsafe model name {name!r}: must be a relative name")
    if any(part == ".." for part in parts_in):
        raise UnsafeNameError(f"unsafe model name {name!r}: '..' would leave the library folder")
    parts: list[str] = []
    for part in parts_in:
        if part in ("", "."):
            continue
        part = _ILLEGAL_CHARS.sub("_", _BIDI_CONTROLS.sub("", part)).rstrip(" .")
        if not part:
            raise UnsafeNameError(f"unsafe model name {name!r}: a path part is empty once cleaned")
        stem = part.split(".")[0]
        if stem.rstrip(" ").upper() in _WINDOWS_RESERVED:
            # ``NUL.safetensors`` -> ``NUL_.safetensors``: the extension stays the extension.
            part = stem + "_" + part[len(stem) :]
        if part.startswith(STATE_DIRNAME) or part.endswith((SIDECAR_SUFFIX, TEMP_SUFFIX)):
            raise UnsafeNameError(
                f"unsafe model name {name!r}: {part!r} is reserved by Model Shelf"
            )
        if len(part.encode()) > _MAX_COMPONENT_BYTES:
            raise UnsafeNameError(f"unsafe model name {name!r}: {part[:40]}... is too long")
        parts.append(part)
    if not parts:
        raise UnsafeNameError(f"unsafe model name {name!r}: empty")
    return "/".join(parts)


def keep_extension(name: str, suffix: str) -> str:
    """``name`` with the model file extension ``suffix`` appended if it carries none.

    ComfyUI lists only files with a model extension, and the extension tells loaders the
    format: a name given without one (``sdxl/base``) keeps the file's own (``.safetensors``).
    """
    if suffix and PurePosixPath(name).suffix.lower() not in MODEL_EXTENSIONS:
        return name + suffix
    return name


def is_shelf_file(name: str) -> bool:
    """True for our own files inside type folders (records, temporaries), which are not models."""
    return name.endswith((SIDECAR_SUFFIX, TEMP_SUFFIX)) or name.startswith(STATE_DIRNAME)


@dataclass(frozen=True)
class Layout:
    """Paths inside one library root. Pure path arithmetic, no I/O except `ensure`."""

    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIRNAME

    @property
    def index_db(self) -> Path:
        return self.state_dir / "index.db"

    @property
    def state_db(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def partial_dir(self) -> Path:
        return self.state_dir / "partial"

    @property
    def logs_dir(self) -> Path:
        """``serve``'s log files (issue #11), rotated (`logfile.log_to_file`)."""
        return self.state_dir / "logs"

    @property
    def deletions_log(self) -> Path:
        return self.state_dir / "deletions.jsonl"

    def ensure(self) -> None:
        """Create the state folder and one folder per type.

        Raises:
            `RootUnavailableError`: the root cannot be created or written (a vanished drive).
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.partial_dir.mkdir(parents=True, exist_ok=True)
            for model_type in MODEL_TYPES:
                (self.root / model_type).mkdir(exist_ok=True)
        except OSError as exc:
            raise RootUnavailableError(
                f"library root {self.root} is not usable: {exc.strerror or exc}",
                path=str(self.root),
            ) from exc

    def type_dir(self, model_type: str) -> Path:
        return self.root / check_type(model_type)

    def model_path(self, model_type: str, name: str) -> Path:
        """The path of model ``name`` (already made safe) in its type folder."""
        return self.type_dir(model_type) / PurePosixPath(name)

    def sidecar_for(self, model_path: Path) -> Path:
        return model_path.with_name(model_path.name + SIDECAR_SUFFIX)

    def model_for_sidecar(self, sidecar: Path) -> Path:
        return sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)])

    def split(self, path: Path) -> tuple[str, str]:
        """Return ``(type, name)`` for a path inside a type folder.

        Raises:
            `UnsafeNameError`: the path is not inside a type folder of this root.
        """
        try:
            rel = path.absolute().relative_to(self.root.absolute())
        except ValueError:
            raise UnsafeNameError(f"{path} is outside the library root {self.root}") from None
        if len(rel.parts) < 2 or rel.parts[0] not in MODEL_TYPES:
            raise UnsafeNameError(f"{path} is not inside a type folder of {self.root}")
        return rel.parts[0], "/".join(rel.parts[1:])
