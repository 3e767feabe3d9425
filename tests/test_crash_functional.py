"""A real process killed with SIGKILL half-way through a 2 GiB copy leaves nothing behind."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli, write_big_safetensors

from model_shelf.library.layout import TEMP_SUFFIX

SIZE = 2 * 1024**3


@pytest.mark.slow
def test_import_killed_half_way_leaves_no_partial_and_no_temp(root, tmp_path):
    src = write_big_safetensors(tmp_path / "big.safetensors", SIZE)
    run_cli(root, "ls", check=True)  # create the library first
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_shelf",
            "--root",
            str(root),
            "import",
            str(src),
            "--type",
            "checkpoints",
            "--mode",
            "copy",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    folder = root / "checkpoints"
    deadline = time.monotonic() + 120
    seen = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX)]
            seen = temps[0].stat().st_size if temps else 0
            if seen >= SIZE // 2:
                break
            time.sleep(0.005)  # polling the copy's progress, not waiting for it to settle
        assert proc.poll() is None, (
            f"import finished before it could be killed: {proc.stderr.read()}"
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert SIZE // 2 <= seen < SIZE
    assert any(p.name.endswith(TEMP_SUFFIX) for p in folder.iterdir())  # the crash left one

    listed = run_cli(root, "ls", "--json", check=True)

    assert listed.stdout.strip() == "[]"  # nothing partial is listed
    leftovers = [p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIX)]
    assert leftovers == []
    assert not (folder / "big.safetensors").exists()
    assert src.stat().st_size == SIZE  # the source is untouched

    # The import can simply be run again.
    run_cli(root, "import", str(src), "--type", "checkpoints", check=True)
    assert (folder / "big.safetensors").stat().st_size == SIZE
