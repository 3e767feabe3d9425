"""Hashing and import speed, as ratios against baselines measured in the same run.

    python bench/bench_hashing.py [--size-mib 1024] [--repeats 5]

Prints:
- one-read multi-digest (xxh3-128 + sha256 + blake3) throughput / ``hashlib.sha256`` alone
  (target >= 0.85);
- xxh3-128 verify throughput / a raw read of the same file (target >= 0.7);
- import (move) of a 2 GiB file on the same filesystem, and the bytes it hashed on the way.

The file is read from the page cache after a warm-up read, so the numbers compare CPU work,
not the disk. Medians over ``--repeats`` runs; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
try:
    from model_files import write_sparse_safetensors

    from model_shelf.library import HashTiming, ImportMode, Shelf
    from model_shelf.library.hashing import hash_file
    from model_shelf.library.settings import HASH_CHUNK_BYTES
except ImportError:  # run from a checkout that is not pip-installed
    raise SystemExit("install first: pip install -e .") from None


def _read_all(path: Path, consume: Callable[[memoryview], object] | None = None) -> None:
    buf = bytearray(HASH_CHUNK_BYTES)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buf):
            if consume is not None:
                consume(view[:n])


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sha256_alone(path: Path) -> None:
    digest = hashlib.sha256()
    _read_all(path, digest.update)
    digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="shelf-bench-", dir=os.environ.get("BENCH_DIR")) as tmp:
        data = Path(tmp) / "data.bin"
        with open(data, "wb") as handle:
            block = os.urandom(16 * 1024 * 1024)
            for _ in range(size // len(block)):
                handle.write(block)
        _read_all(data)  # warm the page cache

        raw = _median_seconds(lambda: _read_all(data), args.repeats)
        sha = _median_seconds(lambda: _sha256_alone(data), args.repeats)
        multi = _median_seconds(lambda: hash_file(data), args.repeats)
        xxh = _median_seconds(lambda: hash_file(data, algorithms=["xxh3_128"]), args.repeats)
        mib = size / 2**20
        print(f"file: {mib:.0f} MiB from page cache, median of {args.repeats}")
        print(f"  raw read              {mib / raw:8.0f} MiB/s")
        print(f"  hashlib.sha256 alone  {mib / sha:8.0f} MiB/s")
        print(f"  xxh3+sha256+blake3    {mib / multi:8.0f} MiB/s")
        print(f"  xxh3-128 verify       {mib / xxh:8.0f} MiB/s")
        print(f"RATIO multi-digest / sha256 alone = {sha / multi:.2f}  (target >= 0.85)")
        print(f"RATIO xxh3 verify / raw read      = {raw / xxh:.2f}  (target >= 0.70)")

        # Import by move: a rename on the same filesystem, no bytes copied or hashed on the way.
        big = Path(tmp) / "incoming" / "big.safetensors"
        big.parent.mkdir()
        move_times, hashed = [], []
        for i in range(args.repeats):
            write_sparse_safetensors(big, 2 * 1024**3)
            with Shelf.open(Path(tmp) / "library") as shelf:
                start = time.perf_counter()
                record = shelf.import_model(
                    big,
                    "checkpoints",
                    ImportMode.MOVE,
                    name=f"big-{i}.safetensors",
                    hashing=HashTiming.DEFERRED,
                )
                move_times.append(time.perf_counter() - start)
                hashed.append(sum(r.bytes_read for r in shelf.hash_pending()))
                shelf.remove(f"checkpoints/{record.name}")
        move_ms = statistics.median(move_times) * 1000
        print(
            f"import --mode move of a 2 GiB file: median {move_ms:.1f} ms (target well under 1 s);"
            f" full digests then computed once, later ({statistics.median(hashed) / 2**30:.2f} GiB)"
        )


if __name__ == "__main__":
    main()
