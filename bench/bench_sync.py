"""Start-up sync of a library with 10,000 indexed models and no changes, against a bare
``os.scandir`` walk of the same tree measured in the same run.

    .venv/bin/python bench/bench_sync.py [--models 10000] [--runs 9]

The tree is built directly (tiny safetensors files, sidecars, one ``rebuild-index``) and then
dated an hour back, as a library untouched since the last start would be. Prints the median
of several runs of: the bare walk, `Shelf.sync` (what start-up waits for), `Shelf.open` as a
whole, and the background sweep that stats every file afterwards (not waited for).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from model_shelf.library import Shelf
from model_shelf.library.records import FileEntry, HashState, ModelRecord

TYPES = ("checkpoints", "loras", "vae", "text_encoders", "embeddings")
SUBFOLDERS = 20


def tiny_safetensors() -> bytes:
    header = json.dumps({"__metadata__": {"bench": "1"}}).encode().ljust(64, b" ")
    return struct.pack("<Q", len(header)) + header


def build(root: Path, models: int) -> None:
    """Write ``models`` models with sidecars (as if imported and hashed), then index them."""
    data = tiny_safetensors()
    for i in range(models):
        model_type = TYPES[i % len(TYPES)]
        name = f"sub{(i // len(TYPES)) % SUBFOLDERS:02d}/model-{i:05d}.safetensors"
        path = root / model_type / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stat = path.stat()
        digest = f"{i:064x}"
        hashes = {"xxh3_128": f"xxh3_128:{digest[:32]}", "sha256": f"sha256:{digest}"}
        record = ModelRecord(
            type=model_type,
            name=name,
            size=stat.st_size,
            files=[FileEntry(path=path.name, size=stat.st_size, mtime_ns=stat.st_mtime_ns)],
            hashes=hashes,
            hash_state=HashState.HASHED,
        )
        record.files[0].hashes = hashes
        path.with_name(path.name + ".shelf.json").write_text(record.model_dump_json(indent=2))
    with Shelf(root) as shelf:
        shelf.rebuild_index()
    # Date everything an hour back (mtimes and records together): untouched since last start.
    past = time.time() - 3600
    for folder, _dirs, files in os.walk(root):
        if ".shelf" in Path(folder).parts:
            continue
        for name in files:
            os.utime(os.path.join(folder, name), (past, past))
        os.utime(folder, (past, past))
    with Shelf(root) as shelf:
        shelf.reconciler.sync(full=True)  # records the backdated mtimes (stat only: no hashing)
        shelf.reconciler.sweep()


def bare_walk(root: Path) -> int:
    """The baseline: every folder listed once, nothing else."""
    count = 0
    stack = [str(root / t) for t in TYPES]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                count += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return count


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="model-shelf-bench-sync-") as tmp:
        root = Path(tmp) / "library"
        start = time.perf_counter()
        build(root, args.models)
        print(f"built {args.models:,} models in {time.perf_counter() - start:.1f} s")
        entries = bare_walk(root)
        walk = median_seconds(lambda: bare_walk(root), args.runs)
        with Shelf(root) as shelf:
            assert shelf.index.count() == args.models
            reports = []
            sync = median_seconds(lambda: reports.append(shelf.sync()), args.runs)
            last = reports[-1]
            assert not (last.registered or last.reread or last.ghosts or last.changed), last
            sweep = median_seconds(shelf.reconciler.sweep, max(3, args.runs // 3))
        opened = median_seconds(lambda: Shelf.open(root).close(), args.runs)
        print(f"tree: {entries:,} entries, {last.folders_seen} folders")
        print(f"bare os.scandir walk     {walk * 1000:8.1f} ms")
        print(
            f"Shelf.sync (no changes)  {sync * 1000:8.1f} ms   ratio {sync / walk:.2f}"
            f"  (target <= 2, and < 1 s)   folders examined: {last.folders_examined}"
        )
        print(f"Shelf.open (whole)       {opened * 1000:8.1f} ms")
        print(
            f"background sweep         {sweep * 1000:8.1f} ms   (stat of every file; after start)"
        )


if __name__ == "__main__":
    main()
