"""``/healthz`` while the task list is read by many at once (issue 15).

A server process (the standalone app, downloads off) holds N finished download tasks (as a long
history would). The client measures ``GET /model-shelf/healthz`` latency alone (the baseline),
then again while 100 concurrent ``GET /model-shelf/downloads`` keep arriving (the default page,
and the largest page a client may ask for). Printed: healthz median and p90 in each case and
the ratio to the idle baseline measured in the same run. Before the fix the list was the whole
history, serialised on the event loop: healthz took seconds.

Run: ``.venv/bin/python bench/bench_tasks.py [--tasks 2000] [--readers 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from model_shelf.library import Shelf  # noqa: E402
from model_shelf.library.downloads.tasks import DownloadTask, TaskState  # noqa: E402
from model_shelf.server_routes import standalone_app  # noqa: E402


def serve_child(root: str, tasks: int, ready: Any, stop: Any) -> None:
    """The server: a library with ``tasks`` finished tasks, served on a free loopback port."""
    shelf = Shelf.open(Path(root))
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for n in range(tasks):
        shelf.downloads.store.insert(
            DownloadTask(
                source=f"https://example.com/org/repo/model-{n:05d}.safetensors",
                source_key=f"url:https://example.com/org/repo/model-{n:05d}.safetensors",
                source_kind="url",
                model_type="loras",
                name=f"model-{n:05d}.safetensors",
                state=TaskState.DONE,
                bytes_done=123456789,
                expected_size=123456789,
                hashes={"sha256": "sha256:" + "ab" * 32},
                finished_at=start + timedelta(seconds=n),
            )
        )

    async def run() -> None:
        runner = web.AppRunner(standalone_app(shelf, run_downloads=False), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready.put(runner.addresses[0][1])
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await runner.cleanup()

    asyncio.run(run())
    shelf.close()


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def healthz_times(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        async with session.get(url + "/model-shelf/healthz") as response:
            await response.read()
            assert response.status == 200
        times.append(time.perf_counter() - started)
    return times


async def readers(session: aiohttp.ClientSession, url: str, n: int, path: str, done: Any) -> int:
    """``n`` clients reading ``path`` over and over until ``done`` is set; returns reads."""
    reads = 0

    async def one() -> None:
        nonlocal reads
        while not done.is_set():
            async with session.get(url + path) as response:
                await response.read()
                assert response.status == 200, await response.text()
            reads += 1

    await asyncio.gather(*(one() for _ in range(n)))
    return reads


async def measure(url: str, n_readers: int, probes: int) -> None:
    connector = aiohttp.TCPConnector(limit=n_readers + 10)
    async with aiohttp.ClientSession(connector=connector) as session:
        await healthz_times(session, url, 10)  # warm up
        idle = await healthz_times(session, url, probes)
        base = percentile(idle, 0.5)
        print(
            f"healthz idle:   median {base * 1000:8.2f} ms"
            f"  p90 {percentile(idle, 0.9) * 1000:8.2f} ms"
        )
        async with session.get(url + "/model-shelf/downloads") as response:
            body = await response.read()
        print(f"default page of the task list: {len(body) / 1024:.0f} KiB")
        for label, path in (
            ("default page", "/model-shelf/downloads"),
            ("largest page", "/model-shelf/downloads?limit=1000"),
        ):
            done = asyncio.Event()
            load = asyncio.create_task(readers(session, url, n_readers, path, done))
            await asyncio.sleep(0.5)  # the readers are all in flight
            busy = await healthz_times(session, url, probes)
            done.set()
            reads = await load
            median = percentile(busy, 0.5)
            print(
                f"healthz, {n_readers} readers of the {label}: median {median * 1000:8.2f} ms"
                f"  p90 {percentile(busy, 0.9) * 1000:8.2f} ms  ratio to idle {median / base:6.1f}x"
                f"  ({reads} list reads)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--probes", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        context = multiprocessing.get_context("spawn")
        ready, stop = context.Queue(), context.Event()
        child = context.Process(
            target=serve_child, args=(str(Path(tmp) / "library"), args.tasks, ready, stop)
        )
        child.start()
        try:
            port = ready.get(timeout=300)
            print(f"{args.tasks} finished tasks in the queue")
            asyncio.run(measure(f"http://127.0.0.1:{port}", args.readers, args.probes))
        finally:
            stop.set()
            child.join(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
