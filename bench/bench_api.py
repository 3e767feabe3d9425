"""The HTTP API under load: search latency over 100,000 models, and 100 concurrent requests
answered while a download runs, with the event loop's lag.

1. Search. An index of N synthetic models (index rows only, no files: inserted with
   `IndexStore.upsert_many`) is searched with the prefixes a person types ("s", "sd", "sdxl",
   "sdxl an"...). Latency p50/p99 of `Shelf.search` (the index's own search: the baseline),
   of `Shelf.query_models` (what the route calls: filters, sort, total count) and of
   ``GET /model-shelf/models`` over loopback HTTP (everything: parsing, the thread hop, JSON).
   Target: p99 < 5 ms.
2. Health report (issue #11). ``GET /model-shelf/health`` reads the counts the index keeps and
   the last sweep's figures; its latency p50 (the median)/p99 over loopback HTTP, as a ratio to
   ``GET /model-shelf/healthz`` on the same server in the same run (the baseline: a route that
   reads nothing), and the direct `Shelf.health` call; the full report with a sweep first
   (what ``doctor`` and ``POST /health/sweep`` cost, and what every request cost before) for
   contrast.
   Target: p99 < 50 ms.
3. Load. The standalone app runs in a process of its own, downloading a large file from a
   loopback server (hashing as it goes) while 100 requests (list, search, detail, tasks, stats,
   health) arrive at once, repeatedly. A probe in the app's loop measures how late a 5 ms sleep
   wakes up (the loop's lag). Printed: request latency and loop lag p50/p99, with and without
   the download, and their ratios.

Run: ``.venv/bin/python bench/bench_api.py [--models 100000] [--download-mib 512]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from remote_server import RemoteServer, write_model_file  # noqa: E402

from model_shelf.library import Shelf  # noqa: E402
from model_shelf.library.query import ModelQuery  # noqa: E402
from model_shelf.library.records import FileEntry, HashState, Health, ModelRecord  # noqa: E402
from model_shelf.library.settings import DownloadSettings  # noqa: E402
from model_shelf.server_routes import standalone_app  # noqa: E402

TARGET_P99_MS = 5.0
HEALTH_TARGET_P99_MS = 50.0
WORDS = [
    "sdxl", "sd15", "flux", "pony", "anime", "realistic", "photo", "style", "detail", "tweaker",
    "portrait", "landscape", "lightning", "turbo", "inpaint", "depth", "canny", "openpose",
    "juggernaut", "dreamshaper", "epic", "cinematic", "pixel", "watercolor", "ink", "noir",
]  # fmt: skip
TYPES = ["checkpoints", "loras", "loras", "loras", "vae", "controlnet", "embeddings"]
ARCHS = ["sdxl", "sd1", "flux", "sd3", None]
QUERIES = [
    "s", "sd", "sdx", "sdxl", "sdxl a", "sdxl an", "sdxl anime", "f", "fl", "flux", "flux det",
    "anime st", "realis", "juggernaut", "model 01234", "pony ", "zzz-nothing", "depth can",
]  # fmt: skip


def synthetic_records(count: int, seed: int = 1) -> list[ModelRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        words = rng.sample(WORDS, 3)
        model_type = rng.choice(TYPES)
        name = f"{words[0]}/{'-'.join(words)}-model-{i:06d}.safetensors"
        records.append(
            ModelRecord(
                type=model_type,
                name=name,
                size=rng.randrange(10**6, 10**10),
                hashes={"sha256": f"sha256:{rng.getrandbits(256):064x}"},
                hash_state=HashState.HASHED,
                tags=rng.sample(WORDS, 2),
                probe={"architecture": rng.choice(ARCHS), "format": "safetensors"},
            )
        )
    return records


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(label: str, seconds: Sequence[float]) -> tuple[float, float]:
    p50, p99 = percentile(seconds, 0.5) * 1000, percentile(seconds, 0.99) * 1000
    print(f"  {label:42} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   ({len(seconds)} samples)")
    return p50, p99


def time_calls(fn: Callable[[str], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        for query in QUERIES:
            start = time.perf_counter()
            fn(query)
            samples.append(time.perf_counter() - start)
    return samples


def serve_child(root: str, ready: Any, probing: Any, stop: Any, results: Any) -> None:
    """The server process: the standalone app (download engine included) on ``root``, and a
    probe in its loop that measures, while ``probing`` is set, how late a 5 ms sleep wakes.

    A process of its own, so that the benchmark's client does not share its interpreter lock.
    """

    async def main() -> None:
        settings = DownloadSettings(free_space_margin_bytes=0, poll_interval_seconds=0.05)
        with Shelf(Path(root), settings) as shelf:  # no start-up sync: rows without files
            runner = web.AppRunner(standalone_app(shelf), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ready.put(f"http://127.0.0.1:{runner.addresses[0][1]}")
            lags: list[float] = []
            while not stop.is_set():
                start = time.perf_counter()
                await asyncio.sleep(0.005)
                late = time.perf_counter() - start - 0.005
                if probing.is_set():
                    lags.append(late)
                elif lags:
                    results.put(lags)
                    lags = []
            await runner.cleanup()

    asyncio.run(main())


class ServerProcess:
    """`serve_child` in a spawned process; `lags_while` measures the loop lag around a call."""

    def __init__(self, root: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready = context.Queue()
        self.results = context.Queue()
        self.probing = context.Event()
        self.stop = context.Event()
        self.process = context.Process(
            target=serve_child,
            args=(str(root), self.ready, self.probing, self.stop, self.results),
            name="bench-api-server",
        )
        self.url = ""

    def __enter__(self) -> ServerProcess:
        self.process.start()
        self.url = self.ready.get(timeout=120)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.process.join(60)

    def lags_while(self, run: Callable[[], Any]) -> tuple[Any, list[float]]:
        """``run()``'s result and the loop lags measured meanwhile."""
        self.probing.set()
        try:
            result = run()
        finally:
            self.probing.clear()
        return result, self.results.get(timeout=30)


async def alternating(url: str, paths: Sequence[str], rounds: int) -> dict[str, list[float]]:
    """Latency of each path, one request at a time, the paths taking turns (so that a noisy
    moment on a shared machine falls on all of them alike)."""
    samples: dict[str, list[float]] = {path: [] for path in paths}
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            for path in paths:
                start = time.perf_counter()
                async with session.get(url + path) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)
                samples[path].append(time.perf_counter() - start)
    return samples


def health_part(shelf: Shelf, url: str, rounds: int) -> None:
    """Part 2: the health report from kept figures, against healthz and the full sweep."""
    print("\n2. health report")
    # Something for every section to list: corrupted, missing, pending models and duplicates.
    troubled = shelf.list_models(limit=1000)
    for i, record in enumerate(troubled):
        if i < 300:
            record.health = Health.CORRUPTED
        elif i < 600:  # a ghost: its recorded file is not there (the sweep keeps it so)
            record.health = Health.MISSING
            record.files = [FileEntry(path="gone.safetensors", size=record.size)]
        elif i < 800:
            record.hash_state = HashState.PENDING
        else:
            record.hashes = troubled[i - 100].hashes  # same sha256 as a corrupted model's
    shelf.index.upsert_many((r, 0) for r in troubled)
    swept = []
    for _ in range(3):
        start = time.perf_counter()
        shelf.health(sweep=True)  # also keeps the sweep's figures, as doctor does
        swept.append(time.perf_counter() - start)
    full = summary("Shelf.health(sweep=True) (doctor)", swept)
    direct = summary(
        "Shelf.health() (kept figures)", [timed(shelf.health) for _ in range(rounds * 10)]
    )
    health, healthz = "/api/model-shelf/health", "/api/model-shelf/healthz"
    asyncio.run(alternating(url, [healthz, health], 20))  # warm up connections and caches
    samples = asyncio.run(alternating(url, [healthz, health], rounds * 20))
    base = summary("GET /model-shelf/healthz (HTTP, baseline)", samples[healthz])
    http = summary("GET /model-shelf/health (HTTP)", samples[health])
    print(
        f"  ratios: health/healthz p50 {http[0] / base[0]:.2f}, p99 {http[1] / base[1]:.2f}; "
        f"sweep/kept (direct) p50 {full[0] / direct[0]:.0f}; target p99 < "
        f"{HEALTH_TARGET_P99_MS:.0f} ms: {'met' if http[1] < HEALTH_TARGET_P99_MS else 'MISSED'}"
    )


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def burst(url: str, paths: list[str], rounds: int) -> list[float]:
    """``rounds`` times: every path at once (``len(paths)`` concurrent requests)."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=len(paths))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(path: str) -> None:
            start = time.perf_counter()
            async with session.get(url + path) as response:
                await response.read()
                assert response.status == 200, (path, response.status)
            latencies.append(time.perf_counter() - start)

        for _ in range(rounds):
            await asyncio.gather(*(one(p) for p in paths))
    return latencies


def load_paths(shelf: Shelf, count: int) -> list[str]:
    ids = [r.id for r in shelf.list_models(limit=50)]
    kinds = [
        lambda i: "/api/model-shelf/models?limit=100&offset=" + str(i * 100),
        lambda i: "/api/model-shelf/models?text=" + QUERIES[i % len(QUERIES)].replace(" ", "+"),
        lambda i: "/api/model-shelf/models/" + ids[i % len(ids)],
        lambda i: "/api/model-shelf/downloads",
        lambda i: "/api/model-shelf/stats",
        lambda i: "/api/model-shelf/health",
        lambda i: "/api/model-shelf/models?type=loras&sort=size&limit=50",
    ]
    return [kinds[i % len(kinds)](i) for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20, help="search rounds over the queries")
    parser.add_argument("--download-mib", type=int, default=512)
    parser.add_argument(
        "--download-rate-mib",
        type=int,
        default=64,
        help="the file server's pace, MiB/s (so that the download outlasts the requests)",
    )
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--search-only", action="store_true", help="skip part 3 (the load)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        top = Path(tmp)
        settings = DownloadSettings(free_space_margin_bytes=0, poll_interval_seconds=0.05)
        with Shelf.open(top / "library", settings) as shelf:
            start = time.perf_counter()
            shelf.index.upsert_many((r, 0) for r in synthetic_records(args.models))
            print(f"index of {args.models:,} models built in {time.perf_counter() - start:.1f} s")

            print("\n1. search latency")
            shelf.search("warm up")
            base = summary("Shelf.search (index, limit 50)", time_calls(shelf.search, args.rounds))
            direct = summary(
                "Shelf.query_models (limit 100 + total)",
                time_calls(lambda q: shelf.query_models(ModelQuery(text=q)), args.rounds),
            )
            # the server runs in a process of its own, on the same library
            with ServerProcess(top / "library") as app:

                async def http_samples() -> list[float]:
                    samples = []
                    async with aiohttp.ClientSession() as session:
                        for _ in range(args.rounds):
                            for query in QUERIES:
                                start = time.perf_counter()
                                async with session.get(
                                    app.url + "/api/model-shelf/models", params={"text": query}
                                ) as response:
                                    await response.read()
                                samples.append(time.perf_counter() - start)
                    return samples

                asyncio.run(http_samples())  # warm up the server's connections and caches
                http = summary("GET /model-shelf/models?text= (HTTP)", asyncio.run(http_samples()))
                print(
                    f"  ratios p99: query_models/search {direct[1] / base[1]:.2f}, "
                    f"HTTP/query_models {http[1] / direct[1]:.2f}; target p99 < "
                    f"{TARGET_P99_MS} ms: direct {'met' if direct[1] < TARGET_P99_MS else 'MISSED'}"
                    f", HTTP {'met' if http[1] < TARGET_P99_MS else 'MISSED'}"
                )
                health_part(shelf, app.url, args.rounds)
                if args.search_only:
                    return 0

                print(f"\n3. {args.concurrency} concurrent requests, idle and during a download")
                paths = load_paths(shelf, args.concurrency)
                idle, idle_lag = app.lags_while(lambda: asyncio.run(burst(app.url, paths, 5)))
                with RemoteServer() as remote:
                    size = args.download_mib * 1024 * 1024
                    source = write_model_file(top / "remote" / "big.safetensors", size)
                    remote.serve(
                        "big.safetensors",
                        source,
                        throttle_bytes_per_second=args.download_rate_mib * 1024 * 1024,
                    )
                    task = shelf.downloads.add(remote.url("big.safetensors"), "checkpoints")
                    deadline = time.monotonic() + 60
                    while shelf.downloads.get(task.id).state.value == "queued":
                        if time.monotonic() > deadline:
                            raise SystemExit("the download did not start")
                        time.sleep(0.01)
                    started = time.perf_counter()
                    busy, busy_lag = app.lags_while(lambda: asyncio.run(burst(app.url, paths, 5)))
                    during = shelf.downloads.get(task.id)
                    while not shelf.downloads.get(task.id).in_terminal_state:
                        time.sleep(0.05)
                    finished = shelf.downloads.get(task.id)
                    elapsed = time.perf_counter() - started
                print(
                    f"  download: {finished.state.value}, {size / 2**20:.0f} MiB in "
                    f"{elapsed:.1f} s ({size / 2**20 / elapsed:.0f} MiB/s); {during.state.value} "
                    "while the requests were answered"
                )
                idle_req = summary("requests, idle", idle)
                busy_req = summary("requests, during the download", busy)
                idle_l = summary("loop lag, idle", idle_lag or [0.0])
                busy_l = summary("loop lag, during the download", busy_lag or [0.0])
                print(
                    f"  ratios during/idle: request p99 {busy_req[1] / idle_req[1]:.2f}, "
                    f"loop lag p99 {busy_l[1] / max(idle_l[1], 1e-6):.2f}"
                )
                print(f"  loop lag p99 during the download: {busy_l[1]:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
