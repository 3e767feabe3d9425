"""The CLI run with ComfyUI's python from custom_nodes/ (issue 16): the folder is not
importable as ``model_shelf`` there, so the folder itself runs the CLI, and our messages name
that command."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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
