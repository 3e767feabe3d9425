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
