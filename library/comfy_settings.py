"""Per-install settings for one ComfyUI: which library root it uses and what it should not see.

Read from ``<ComfyUI user folder>/model-shelf/settings.json`` (``folder_paths
.get_user_directory()``, normally ``<ComfyUI>/user``), so each install keeps its own choice and
the file survives updates of the node pack. Every key is optional::

    {"root": "/mnt/models/shelf", "hide_types": ["upscale_models"], "hide_tags": ["nsfw"]}

Which library root an install uses (first one set wins):

1. ``root`` in that file;
2. the ``MODEL_SHELF_ROOT`` environment variable (read in `settings`);
3. ``<ComfyUI>/model-shelf``, beside ComfyUI's ``models/``.

``extra_model_paths.yaml`` stays ComfyUI's own: Model Shelf never reads or writes it. Folders
listed there keep working beside the library's, ahead of it (ComfyUI reads the file before it
loads node packs and we append our folders after). Listing a library type folder there as well
is harmless: it is not added twice.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import SettingsError
from .layout import check_type

log = logging.getLogger(__name__)

COMFY_USER_DIRNAME = "user"
"""ComfyUI's user folder under its base folder (``folder_paths.get_user_directory()`` unless
ComfyUI runs with ``--user-directory``): where the CLI looks for an install's settings."""
SETTINGS_DIRNAME = "model-shelf"
SETTINGS_FILENAME = "settings.json"


class ComfySettings(BaseModel):
    """What one ComfyUI install wants from the shared library."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    root: str | None = Field(
        default=None, description="Library root; wins over MODEL_SHELF_ROOT and the default"
    )
    hide_types: frozenset[str] = Field(
        default=frozenset(), description="Type folders this install does not register"
    )
    hide_tags: frozenset[str] = Field(
        default=frozenset(), description="Models with any of these tags are not listed here"
    )

    @field_validator("hide_types")
    @classmethod
    def _known_types(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(check_type(t) for t in value)  # legacy names map, unknown ones fail

    @field_validator("hide_tags")
    @classmethod
    def _folded_tags(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(t.strip().casefold() for t in value if t.strip())

    def hides_tags(self, tags: list[str]) -> bool:
        """True if a model with ``tags`` must not be listed or resolved in this install."""
        return bool(self.hide_tags) and any(t.casefold() in self.hide_tags for t in tags)


def settings_path(user_dir: Path) -> Path:
    """Where the settings file of the install whose user folder is ``user_dir`` lives."""
    return Path(user_dir) / SETTINGS_DIRNAME / SETTINGS_FILENAME


def load_comfy_settings(user_dir: Path) -> ComfySettings:
    """Read this install's settings; a missing file means the defaults.

    Args:
        user_dir (`Path`): ComfyUI's user folder (``folder_paths.get_user_directory()``).

    Returns:
        `ComfySettings`: the settings, defaults for keys not given.

    Raises:
        `SettingsError`: the file exists but is not valid JSON or names an unknown type folder. We
            refuse to guess: falling back to the default root would quietly start a second,
            empty library.
    """
    path = settings_path(user_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ComfySettings()
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}", path=str(path)) from exc
    try:
        return ComfySettings.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        # ShelfError subclasses raised by validators (unknown type) arrive wrapped here too.
        raise SettingsError(f"settings file {path} is not valid: {exc}", path=str(path)) from exc
