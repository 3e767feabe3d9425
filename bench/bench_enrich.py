"""Metadata lookups for 10,000 models against a loopback Civitai (issue #12): requests per model
with batching and the cache, against a one-request-per-lookup client measured in the same run.

    .venv/bin/python bench/bench_enrich.py [--models 10000] [--per-model 4] [--naive 200]

The library's records are written directly (sha256 digests, no model bytes: the lookup reads
only records). The loopback server plays Civitai's API (tests/enrich_server.py); 90 % of the
hashes are known to it, four versions to each model. Three runs of `Shelf.enrich`:

1. cold cache: by-hash batches of 100, then the models in batches of 100;
2. again at once: every answer is fresh (a week), so no request at all;
3. ``--refresh``: the same requests as the first.

The baseline is what a client without batching sends: ``GET /model-versions/by-hash/{hash}``
and ``GET /models/{id}`` per model, measured on ``--naive`` models (requests per model and time
per model). Previews are left out (``MODEL_SHELF_ENRICH_PREVIEWS=0``): an image is one request
per model with a preview whichever client asks. The rate limit is set to its maximum (20/s), as
the loopback server does not need protecting; the wall time is mostly that pacing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from enrich_server import EnrichServer  # noqa: E402

from model_shelf.library import Shelf  # noqa: E402
from model_shelf.library.records import FileEntry, HashState, ModelRecord  # noqa: E402
from model_shelf.library.settings import DownloadSettings, EnrichSettings  # noqa: E402


def sha(i: int) -> str:
    return hashlib.sha256(f"model {i}".encode()).hexdigest()


def build(shelf: Shelf, server: EnrichServer, models: int, per_model: int) -> None:
    records = []
    for i in range(models):
        name = f"bench/{i:05d}.safetensors"
        size = 1000 + i
        records.append(
            (
                ModelRecord(
                    type="loras",
                    name=name,
                    size=size,
                    files=[FileEntry(path=f"{i:05d}.safetensors", size=size)],
                    hashes={"sha256": f"sha256:{sha(i)}"},
                    hash_state=HashState.HASHED,
                ),
                0,
            )
        )
        if i % 10 != 9:  # 10 % unknown to Civitai
            server.add_version(
                100_000 + i, 1 + i // per_model, f"{i:05d}.safetensors", sha(i), size
            )
    (shelf.root / "loras" / "bench").mkdir(parents=True, exist_ok=True)
    shelf.index.upsert_many(records)


async def naive(server: EnrichServer, count: int) -> tuple[int, float]:
    """One GET per hash and one per model, as a client without batching does."""
    import aiohttp

    start = time.perf_counter()
    requests = 0
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            async with session.get(f"{server.civitai_base}/model-versions/by-hash/{sha(i)}") as r:
                requests += 1
                if r.status == 404:
                    continue
                version = await r.json()
            async with session.get(f"{server.civitai_base}/models/{version['modelId']}") as r:
                requests += 1
                await r.read()
    return requests, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--per-model", type=int, default=4, help="versions per Civitai model")
    parser.add_argument("--naive", type=int, default=200, help="models for the baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EnrichServer() as server:
        downloads = DownloadSettings(civitai_api_base=server.civitai_base)
        settings = EnrichSettings(previews=False, requests_per_second=20, background=False)
        shelf = Shelf(Path(tmp) / "library", downloads, enrich_settings=settings)
        try:
            build(shelf, server, args.models, args.per_model)
            naive_requests, naive_seconds = asyncio.run(naive(server, args.naive))
            server.requests.clear()
            rows = []
            for label, refresh in (("cold", False), ("fresh", False), ("refresh", True)):
                start = time.perf_counter()
                report = shelf.enrich(refresh=refresh)
                seconds = time.perf_counter() - start
                rows.append((label, report, seconds, server.total_requests))
                server.requests.clear()
        finally:
            shelf.close()
    n = args.models
    base_rpm = naive_requests / args.naive
    print(f"{n:,} models, {args.per_model} versions per Civitai model, 90 % known")
    print(
        f"baseline (one GET per hash + per model, {args.naive} models): "
        f"{base_rpm:.3f} requests/model, {naive_seconds / args.naive * 1000:.2f} ms/model unpaced"
    )
    for label, report, seconds, seen in rows:
        rpm = report.requests / n
        ratio = f"{rpm / base_rpm:.4f}x the baseline" if rpm else "0 requests"
        badges = dict(report.trust)
        print(
            f"{label:8} {report.requests:6d} requests ({seen} seen by the server), "
            f"{rpm:.4f} requests/model ({ratio}), {seconds:.1f} s, "
            f"{badges}, {report.unknown} unknown, {len(report.failures)} failures"
        )


if __name__ == "__main__":
    main()
