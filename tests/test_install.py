"""install.py names what failed and still installs the rest."""

import os
import subprocess
import sys

from conftest import REPO


def _load_install_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("shelf_install", REPO / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirements_are_read_from_the_file():
    install = _load_install_module()
    reqs = install.requirements()
    assert "xxhash==4.1.0" in reqs and all(not r.startswith("#") for r in reqs)


def test_a_failing_requirement_is_named(tmp_path, monkeypatch):
    install = _load_install_module()
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip asks no package index: nothing leaves here
    # Already-satisfied pins succeed offline; a version that cannot exist fails at once.
    failed = install.install(["xxhash==4.1.0", "xxhash==0.0.0.0.1"], python=sys.executable)
    assert [req for req, _ in failed] == ["xxhash==0.0.0.0.1"]
    assert failed[0][1]  # pip's reason is carried along


def test_running_it_reports_success_in_this_environment():
    result = subprocess.run(
        [sys.executable, str(REPO / "install.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PIP_NO_INDEX": "1"},  # satisfied already: no index needed
    )
    assert result.returncode == 0, result.stderr
    assert "all requirements installed" in result.stdout
