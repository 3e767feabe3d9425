"""Real processes: a download killed with SIGKILL half-way resumes where it stopped, and two
processes asked for the same model at once download it once.

The server runs on a thread of the test process, independent of the downloaders it serves.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
from conftest import run_cli
from downloads_support import MIB, cli_command, partial_size, quick_env, sigkill_when
from remote_server import RemoteServer, write_model_file

GIB = 1024 * MIB


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


def digests(path: Path) -> dict[str, str]:
    sha, b3 = hashlib.sha256(), blake3.blake3()
    with open(path, "rb") as handle:
        while chunk := handle.read(16 * MIB):
            sha.update(chunk)
            b3.update(chunk)
    return {"sha256": f"sha256:{sha.hexdigest()}", "blake3": f"blake3:{b3.hexdigest()}"}


@pytest.mark.slow
def test_sigkill_half_way_through_1_gib_resumes_and_fetches_at_most_1_05x(root, server, tmp_path):
    src = write_model_file(tmp_path / "remote" / "big.safetensors", GIB, seed=11)
    expected = digests(src)
    # A server-side pace (~4 s per GiB) so that "about half" is there to be caught.
    served = server.serve("big.safetensors", src, throttle_bytes_per_second=256 * MIB)
    command = cli_command(root, "add", server.url("big.safetensors"), "--type", "checkpoints")
    env = quick_env()

    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = sigkill_when(
        first, lambda: (size := partial_size(root)) >= GIB // 2 and size, "half of the file"
    )
    assert GIB // 2 <= seen < GIB

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    assert second.returncode == 0, second.stderr
    print(f"server sent {served.full_transfers:.4f} x the file")
    assert served.bytes_sent <= 1.05 * GIB, served.full_transfers
    resumed = served.requests[-1]
    assert resumed.status == 206 and int(resumed.headers["Range"][6:-1]) >= GIB // 2
    shown = json.loads(run_cli(root, "show", "checkpoints/big.safetensors", "--json").stdout)
    assert shown["hashes"]["sha256"] == expected["sha256"]
    assert shown["hashes"]["blake3"] == expected["blake3"]
    assert shown["size"] == GIB
    assert list((root / ".shelf" / "partial").iterdir()) == []
    src.unlink()


def test_two_processes_asked_for_the_same_model_download_it_once(root, server, tmp_path):
    size = 96 * MIB
    src = write_model_file(tmp_path / "remote" / "m.safetensors", size, seed=12)
    served = server.serve("m.safetensors", src, throttle_bytes_per_second=64 * MIB)
    run_cli(root, "ls", check=True)  # the library exists before both start
    command = cli_command(
        root, "add", server.url("m.safetensors"), "--type", "checkpoints", "--json"
    )

    both = [
        subprocess.Popen(
            command, env=quick_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in both]

    assert [p.returncode for p in both] == [0, 0], [err for _, err in outputs]
    tasks = [json.loads(out) for out, _ in outputs]
    assert tasks[0]["id"] == tasks[1]["id"]
    assert tasks[0]["state"] == tasks[1]["state"] == "done"
    assert len(served.requests) == 1 and served.bytes_sent == size  # one download
    listed = json.loads(run_cli(root, "ls", "--json", check=True).stdout)
    assert [m["name"] for m in listed] == ["m.safetensors"]
