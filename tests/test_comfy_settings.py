"""Tests for library/comfy_settings.py: the per-install settings file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_shelf.library.comfy_settings import ComfySettings, load_comfy_settings, settings_path
from model_shelf.library.errors import SettingsError


def write_settings(user_dir: Path, data: object) -> Path:
    path = settings_path(user_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_comfy_settings(tmp_path) == ComfySettings()
    assert settings_path(tmp_path) == tmp_path / "model-shelf" / "settings.json"


def test_values_are_read_and_normalised(tmp_path: Path) -> None:
    write_settings(
        tmp_path,
        {
            "root": "/mnt/models",
            "hide_types": ["unet", "loras"],
            "hide_tags": [" NSFW ", "Test"],
            "unknown_key_from_a_newer_version": 1,
        },
    )
    settings = load_comfy_settings(tmp_path)
    assert settings.root == "/mnt/models"
    assert settings.hide_types == {"diffusion_models", "loras"}  # legacy names mapped
    assert settings.hide_tags == {"nsfw", "test"}
    assert settings.hides_tags(["landscape", "Nsfw"])
    assert not settings.hides_tags(["landscape"])
    assert not ComfySettings().hides_tags(["nsfw"])


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"hide_types": ["no_such_type"]}), json.dumps(["a", "list"])],
    ids=["bad-json", "unknown-type", "not-an-object"],
)
def test_an_invalid_file_is_refused_with_its_path(tmp_path: Path, content: str) -> None:
    path = write_settings(tmp_path, content)
    with pytest.raises(SettingsError) as caught:
        load_comfy_settings(tmp_path)
    assert caught.value.code == "BAD_SETTINGS"
    assert str(path) in str(caught.value) and caught.value.path == str(path)
