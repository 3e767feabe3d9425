"""``python -m model_shelf add | tasks | pause | resume | cancel`` as a user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator

import pytest
from downloads_support import MIB, cli_command, quick_env, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


def cli(root, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(root, *args), env=quick_env(), capture_output=True, text=True, timeout=120
    )


def test_add_waits_and_names_the_model(root, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 4 * MIB)
    server.serve("m.safetensors", src)

    added = cli(root, "add", server.url("m.safetensors"), "--type", "loras", "--name", "style")

    assert added.returncode == 0, added.stderr
    assert added.stdout.strip().endswith(": loras/style.safetensors")
    shown = json.loads(cli(root, "show", "loras/style.safetensors", "--json").stdout)
    assert shown["hashes"]["sha256"] == f"sha256:{sha256_of(src)}"


def test_no_wait_then_tasks_pause_resume_cancel(root, server, tmp_path):
    server.serve("m.safetensors", write_model_file(tmp_path / "m.safetensors", 1 * MIB))

    queued = cli(root, "add", server.url("m.safetensors"), "--type", "loras", "--no-wait", "--json")
    assert queued.returncode == 0, queued.stderr
    task = json.loads(queued.stdout)
    assert task["state"] == "queued" and "lease_owner" not in task

    listed = json.loads(cli(root, "tasks", "--json").stdout)
    assert [t["id"] for t in listed] == [task["id"]]
    assert task["id"] in cli(root, "tasks").stdout

    paused = json.loads(cli(root, "pause", task["id"], "--json").stdout)
    assert paused[0]["state"] == "paused"
    resumed = json.loads(cli(root, "resume", "--all", "--json").stdout)
    assert resumed[0]["state"] == "queued"
    cancelled = json.loads(cli(root, "cancel", task["id"], "--json").stdout)
    assert cancelled[0]["state"] == "cancelled"


def test_errors_are_one_line_with_their_code(root, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 1 * MIB)
    server.serve("m.safetensors", src)

    wrong = cli(root, "add", server.url("m.safetensors"), "--type", "loras", "--sha256", "0" * 64)
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("error [HASH_MISMATCH]: ")
    assert len(wrong.stderr.strip().splitlines()) == 1

    bad = cli(root, "add", "not a source")
    assert bad.returncode == 2 and bad.stderr.startswith("error [INVALID_SOURCE]: ")
    missing = cli(root, "resume", "nope")
    assert missing.returncode == 2 and missing.stderr.startswith("error [TASK_NOT_FOUND]: ")
    insecure = cli(root, "add", "http://example.com/m.safetensors")
    assert insecure.returncode == 2 and insecure.stderr.startswith("error [INSECURE_URL]: ")


def test_ctrl_c_pauses_and_resume_wait_finishes(root, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 16 * MIB)
    served = server.serve("m.safetensors", src, hold_at_byte=8 * MIB)
    adding = subprocess.Popen(
        cli_command(root, "add", server.url("m.safetensors"), "--type", "checkpoints"),
        env=quick_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: served.bytes_sent >= 8 * MIB, what="the download to be under way")
        adding.send_signal(signal.SIGINT)
        _, err = adding.communicate(timeout=60)
    finally:
        adding.kill()
        served.behaviour.release.set()
    assert adding.returncode == 130, err
    assert "paused" in err and "resume" in err
    (task,) = json.loads(cli(root, "tasks", "--json").stdout)
    assert task["state"] == "paused"

    served.behaviour.hold_at_byte = None
    finished = cli(root, "resume", task["id"], "--wait")
    assert finished.returncode == 0, finished.stderr
    assert "checkpoints/m.safetensors" in finished.stdout


def test_queued_downloads_say_what_starts_them(root, server, tmp_path):
    """``add --no-wait`` and ``tasks`` say that a queued download waits for ComfyUI or ``serve``
    (and how to download now) when no process runs an engine on the library; not while one
    does; again once that process is killed."""
    held = server.serve(
        "big.safetensors", write_model_file(tmp_path / "big.safetensors", 8 * MIB), hold_at_byte=MIB
    )
    server.serve("m.safetensors", write_model_file(tmp_path / "m.safetensors", MIB))
    hint = "note: nothing downloads until ComfyUI or "
    first = cli(root, "add", server.url("big.safetensors"), "--type", "loras", "--no-wait")
    assert first.returncode == 0, first.stderr
    assert hint in first.stderr and " serve' runs on this library" in first.stderr
    assert f"resume --wait {first.stdout.split()[0]}" in first.stderr  # the one task
    queued = cli(root, "add", server.url("m.safetensors"), "--type", "vae", "--no-wait")
    assert queued.returncode == 0, queued.stderr
    assert f"resume --wait {queued.stdout.split()[0]}" in queued.stderr  # add: its own task
    listed = cli(root, "tasks")
    assert hint in listed.stderr and "resume --wait --all" in listed.stderr

    serving = subprocess.Popen(
        cli_command(root, "serve", "--port", "0", "--no-watch"),
        env=quick_env(MODEL_SHELF_DOWNLOAD_CONCURRENCY="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: held.bytes_sent >= MIB, what="serve to take the first download")
        # The second task stays queued (one download at a time), but an engine will start it.
        later = cli(root, "add", server.url("m.safetensors"), "--type", "vae", "--no-wait")
        assert later.returncode == 0 and "queued" in later.stdout, later.stderr
        assert hint not in later.stderr
        assert hint not in cli(root, "tasks").stderr
    finally:
        serving.kill()  # SIGKILL: it cannot say it stopped; its lease names a dead process
        serving.communicate(timeout=60)
        held.behaviour.release.set()
    assert hint in cli(root, "tasks").stderr
    held.behaviour.hold_at_byte = None
    done = cli(root, "resume", "--all", "--wait")  # what the note says: every queued task
    assert done.returncode == 0, done.stderr
    states = [t["state"] for t in json.loads(cli(root, "tasks", "--json").stdout)]
    assert states == ["done", "done"]  # the second add of m found the queued task
    assert hint not in cli(root, "tasks").stderr
