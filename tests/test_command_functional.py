"""The CLI run with ComfyUI's python from custom_nodes/ (issue 16): the folder is not
importable as ``model_shelf`` there, so the folder itself runs the CLI, and our messages name
that command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ModelFactory

from model_shelf.library.command import cli_command

REPO = Path(__file__).resolve().parent.parent


def install_copy(tmp_path: Path) -> Path:
    """The package as ComfyUI-Manager leaves it: a folder with a dash in custom_nodes/."""
    target = tmp_path / "ComfyUI" / "custom_nodes" / "comfyui-model-shelf"
    shutil.copytree(
        REPO,
        target,
        ignore=shutil.ignore_patterns(".*", "tests", "bench", "test-artifacts", "__pycache__"),
    )
    return target


def test_the_folder_runs_the_cli_and_names_itself(tmp_path: Path) -> None:
    folder = install_copy(tmp_path)
    comfy = folder.parent.parent
    root = tmp_path / "library"
    # As the README says: from the ComfyUI folder, with ComfyUI's python.
    listed = subprocess.run(
        [sys.executable, "custom_nodes/comfyui-model-shelf", "--root", str(root), "ls"],
        cwd=comfy,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    helped = subprocess.run(
        [sys.executable, str(folder), "--help"], capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0, helped.stderr
    # This copy is not what `import model_shelf` finds: the usage names the folder command.
    usage = " ".join(helped.stdout.split())  # argparse wraps long lines
    assert usage.startswith(f"usage: {sys.executable} {folder} ")


def test_installed_with_pip_the_command_is_python_m() -> None:
    assert cli_command() == "python -m model_shelf"


def test_run_from_custom_nodes_the_cli_uses_the_library_comfyui_uses(
    tmp_path: Path, make_model: ModelFactory
) -> None:
    """No --root: `ls` and `import` work on ``<ComfyUI>/model-shelf`` (or the root the install's
    settings name), the library ComfyUI lists, not a per-user one ComfyUI never sees."""
    import json
    import os

    folder = install_copy(tmp_path)
    comfy = folder.parent.parent
    (comfy / "folder_paths.py").write_text("# ComfyUI's module, as the CLI finds it\n")
    model = make_model("tiny.safetensors")
    env = {k: v for k, v in os.environ.items() if k != "MODEL_SHELF_ROOT"}
    env["XDG_DATA_HOME"] = str(tmp_path / "per-user")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "custom_nodes/comfyui-model-shelf", *args],
            cwd=comfy,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    imported = cli("import", str(model), "--type", "loras")
    assert imported.returncode == 0, imported.stderr
    assert (comfy / "model-shelf" / "loras" / "tiny.safetensors").is_file()
    assert not (tmp_path / "per-user").exists()

    chosen = tmp_path / "shared-library"
    settings = comfy / "user" / "model-shelf" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"root": str(chosen)}))
    imported = cli("import", str(model), "--type", "vae")
    assert imported.returncode == 0, imported.stderr
    assert (chosen / "vae" / "tiny.safetensors").is_file()
    assert str(chosen) in "".join(cli("--help").stdout.split())  # argparse wraps lines
