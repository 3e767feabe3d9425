"""Helpers shared by the download tests: quick settings, waiting with a deadline, and an engine
running on a thread of its own (the way ComfyUI runs it beside its own work)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_shelf.library import Shelf
from model_shelf.library.downloads import DownloadTask, ProgressEvent
from model_shelf.library.settings import DownloadSettings

MIB = 1024 * 1024


def quick_settings(**overrides: Any) -> DownloadSettings:
    """Settings with the waits of a test, not of a real network."""
    values: dict[str, Any] = {
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "poll_interval_seconds": 0.05,
        "free_space_margin_bytes": 0,
        "stall_timeout_seconds": 10.0,
        "connect_timeout_seconds": 5.0,
        # Never the real Hub or Civitai: no_internet's closed ports, unless a test serves its own.
        "hf_endpoint": os.environ["HF_ENDPOINT"],
        "civitai_api_base": os.environ["MODEL_SHELF_DOWNLOAD_CIVITAI_API_BASE"],
    }
    values.update(overrides)
    return DownloadSettings(**values)


LOOPBACK_FETCHES = ("127.0.0.1",)
"""`DownloadSettings.allowed_fetch_hosts` for tests whose workflows fetch from `RemoteServer`:
loopback is refused to a workflow's downloads unless allowed (issue #11), and these tests allow
it the way a user would (the setting, or ``MODEL_SHELF_ALLOWED_FETCH_HOSTS``)."""
LOOPBACK_FETCHES_ENV = {"MODEL_SHELF_ALLOWED_FETCH_HOSTS": ",".join(LOOPBACK_FETCHES)}


def quick_env(**overrides: str) -> dict[str, str]:
    """The environment of a CLI subprocess with `quick_settings`-like values."""
    env = {k: v for k, v in os.environ.items() if k != "MODEL_SHELF_ROOT"}
    env.update(
        {
            "MODEL_SHELF_DOWNLOAD_BACKOFF_BASE_SECONDS": "0.01",
            "MODEL_SHELF_DOWNLOAD_BACKOFF_MAX_SECONDS": "0.05",
            "MODEL_SHELF_DOWNLOAD_POLL_INTERVAL_SECONDS": "0.05",
            "MODEL_SHELF_DOWNLOAD_FREE_SPACE_MARGIN_BYTES": "0",
            "MODEL_SHELF_DOWNLOAD_LEASE_SECONDS": "5",
        }
    )
    env.update(overrides)
    return env


def cli_command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "model_shelf", "--root", str(root), *args]


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def partial_size(root: Path) -> int:
    """Bytes of the (one) partial download under ``root``, 0 when there is none."""
    parts = list((root / ".shelf" / "partial").glob("*.part"))
    return parts[0].stat().st_size if parts else 0


def sigkill_when(
    process: subprocess.Popen[Any], predicate: Callable[[], Any], what: str, timeout: float = 120
) -> Any:
    """SIGKILL ``process`` once ``predicate`` holds while it still runs; its last value."""
    try:
        seen = wait_until(lambda: process.poll() is None and predicate(), timeout, what)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return seen


class EngineThread:
    """``shelf.downloads.run()`` on a thread with its own event loop, with its events recorded.

    Use as a context manager; leaving it stops the engine (running tasks go back to the queue).
    """

    def __init__(self, shelf: Shelf) -> None:
        self.shelf = shelf
        self.events: list[ProgressEvent] = []
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="test-engine")
        self._unsubscribe = shelf.downloads.subscribe(self.events.append)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._started.set()
            await self.shelf.downloads.run()

        try:
            asyncio.run(run())
        except BaseException as exc:  # reported by stop()
            self.error = exc
            self._started.set()

    def __enter__(self) -> EngineThread:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            stopping = self.shelf.downloads.stop()
            try:
                future = asyncio.run_coroutine_threadsafe(stopping, self._loop)
            except RuntimeError:  # the loop closed meanwhile: run() has ended
                stopping.close()
            else:
                # run() ends after our stop, or has ended already (a test stopped the engine):
                # then asyncio.run may close its loop without running our stop, whose future
                # would never be done. Waiting for the thread covers both.
                self._thread.join(60)
                if future.done():
                    with contextlib.suppress(concurrent.futures.CancelledError):
                        future.result()
                else:
                    future.cancel()
                    stopping.close()
        self._thread.join(60)
        self._unsubscribe()
        if self.error is not None:
            raise self.error

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the engine's event loop (to keep it busy, say)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn)

    def wait_for(self, task_id: str, *states: str, timeout: float = 60.0) -> DownloadTask:
        """Wait until the task (as stored) is in one of ``states``."""
        return wait_until(
            lambda: (t := self.shelf.downloads.get(task_id)).state.value in states and t,
            timeout,
            f"task {task_id} to be {'/'.join(states)}",
        )


def pause_while_silent(
    shelf: Shelf, engine: EngineThread, task_id: str, held_at: int
) -> DownloadTask:
    """Pause a download whose server went silent after ``held_at`` bytes; return it paused.

    Waits until those bytes are on disk, so that the next read waits for bytes that do not come
    and only the pause's interrupt can end it (tests give it a long stall timeout).
    """
    partial = shelf.layout.partial_dir / f"{task_id}.part"
    wait_until(lambda: partial.exists() and partial.stat().st_size == held_at)
    shelf.downloads.pause(task_id)
    return engine.wait_for(task_id, "paused", timeout=10)
