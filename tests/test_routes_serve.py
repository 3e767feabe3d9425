"""``python -m model_shelf serve``: the standalone server as a user starts it, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from downloads_support import quick_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float = 30.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_serve_answers_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in quick_env().items() if k != "MODEL_SHELF_ROOT"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_shelf",
            "--root",
            str(tmp_path / "lib"),
            "serve",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        health = json.loads(wait_for(f"{base}/model-shelf/healthz"))
        assert health["status"] == "ok" and health["root"] == str(tmp_path / "lib")
        page = wait_for(f"{base}/").decode()
        assert "/extensions/model-shelf/model-shelf.js" in page
        assert b"registerSidebarTab" in wait_for(f"{base}/extensions/model-shelf/model-shelf.js")
        assert b"export const api" in wait_for(f"{base}/scripts/api.js")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}/" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "lib" / ".shelf" / "partial").exists() or not any(
        (tmp_path / "lib" / ".shelf" / "partial").iterdir()
    )
    assert os.path.isdir(tmp_path / "lib" / "loras")
    # issue #11: what it did is in its rotated log file under the library's state folder
    log_file = tmp_path / "lib" / ".shelf" / "logs" / "serve.log"
    assert str(log_file) in stderr
    logged = log_file.read_text()
    assert f"model_shelf.cli: serving http://127.0.0.1:{port}/" in logged
    assert "model_shelf.cli: stopped" in logged


async def test_an_app_closed_before_its_engine_started_closes(shelf) -> None:
    """The app's cleanup runs before the download engine's task had a turn (a server stopped
    during start-up): closing must not wait forever for an engine that then starts and runs."""
    import asyncio

    from model_shelf.server_routes import standalone_app

    app = standalone_app(shelf, run_downloads=True)
    running = app.cleanup_ctx[0](app)

    async def start_and_close_at_once() -> None:
        await running.__anext__()  # creates the engine's task (no turn yet: nothing awaited)
        await anext(running, None)  # cleanup in the same step, before the engine's first one

    closing = asyncio.ensure_future(start_and_close_at_once())
    done, _ = await asyncio.wait({closing}, timeout=30)
    assert closing in done, "the app's cleanup still waits for its download engine"
    assert not shelf.downloads.engine.is_running
