"""The README's two commands are what a new user copies: keep them true."""

import re

from conftest import REPO


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if "python3 -m venv" in line]


def test_ci_runs_exactly_the_readme_test_command():
    setup, test = _commands()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test in ci_lines
    assert "pytest" in test and "model_shelf" in setup


def test_requirements_match_pyproject_dependencies():
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [
        line.strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(listed) == sorted(declared)


def test_every_package_folder_is_installed():
    """A plain (non-editable) install ships only the packages pyproject lists."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(("model_shelf", *p.parent.relative_to(REPO).parts))
        for p in REPO.rglob("__init__.py")
        if not {".venv", "tests", "build"} & set(p.relative_to(REPO).parts)
    }
    assert found == listed


def test_the_suite_runs_in_a_checkout_named_as_the_readme_clones_it(tmp_path):
    """``git clone ... model-shelf``: a folder name that is no Python identifier."""
    import shutil
    import subprocess
    import sys

    checkout = tmp_path / "model-shelf"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__"))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/test_layout.py"],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
