"""The watcher, end to end: files copied in by hand, and a rename of a big model.

    .venv/bin/python bench/bench_watch.py [--files 20] [--file-mib 4] [--big-gib 2]

Prints:
- for ``--files`` files copied into a type folder by hand (``shutil.copy``, one after the
  other, as ``cp *.safetensors`` would): the delay from the end of each copy to the model being
  in the index (median and worst; target: median under 1 s), the time until the background
  hasher has every digest, and bytes hashed / bytes copied (target: 1.00, each hashed once);
- for a ``--big-gib`` model renamed into a subfolder: identity kept, and the bytes hashed
  because of the rename (target: 0).

Default `HealthSettings` (what ComfyUI runs with), native events where available.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import contextlib

from model_files import write_model_file, write_sparse_safetensors

from model_shelf.library import HashTiming, ImportMode, Shelf
from model_shelf.library.settings import HealthSettings
from model_shelf.library.watch import WatchBatch

MIB = 1024 * 1024


def safetensors_file(path: Path, size: int, *, sparse: bool, seed: int = 0) -> Path:
    """A valid safetensors file of ``size`` bytes (sparse, or with random content)."""
    return write_sparse_safetensors(path, size) if sparse else write_model_file(path, size, seed)


def wait_for(batches: queue.Queue[WatchBatch], done, seen: list[WatchBatch], timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SystemExit("timed out waiting for the watcher")
        with contextlib.suppress(queue.Empty):
            seen.append(batches.get(timeout=min(1.0, remaining)))


def hand_copies(shelf: Shelf, tmp: Path, files: int, size: int) -> None:
    sources = [
        safetensors_file(tmp / f"hand-{i:02d}.safetensors", size, sparse=False, seed=i)
        for i in range(files)
    ]
    for src in sources:  # in the page cache, like files just downloaded elsewhere
        src.read_bytes()
    watcher = shelf.watcher
    assert watcher is not None and shelf.hasher is not None
    batches: queue.Queue[WatchBatch] = queue.Queue()
    watcher.on_batch(batches.put)
    seen: list[WatchBatch] = []
    hashed_before = shelf.verifier.bytes_hashed
    copied_at: dict[str, float] = {}
    started = time.monotonic()
    for src in sources:
        shutil.copy(src, shelf.root / "loras" / src.name)
        copied_at[f"loras/{src.name}"] = time.monotonic()
    wait_for(batches, lambda: all(shelf.index.location_row("loras", s.name) for s in sources), seen)
    indexed_at: dict[str, float] = {}
    for batch in seen:
        for name in batch.report.registered:
            indexed_at.setdefault(name, batch.finished_at)
    delays = [indexed_at[name] - copied_at[name] for name in copied_at]
    if not shelf.hasher.wait_idle(600):
        raise SystemExit("the background hasher did not finish")
    all_hashed = time.monotonic() - started
    hashed = shelf.verifier.bytes_hashed - hashed_before
    copied = sum(s.stat().st_size for s in sources)
    print(f"{files} files of {size // MIB} MiB copied by hand into loras/ ({watcher.mode} events)")
    print(
        f"  copy end -> in the index: median {statistics.median(delays) * 1000:.0f} ms, "
        f"worst {max(delays) * 1000:.0f} ms   (target: median < 1000 ms)"
    )
    print(f"  every digest computed {all_hashed:.2f} s after the first copy started")
    print(f"  bytes hashed / bytes copied: {hashed / copied:.2f}   (target 1.00: each hashed once)")


def big_rename(shelf: Shelf, tmp: Path, size: int) -> None:
    assert shelf.watcher is not None and shelf.hasher is not None
    src = safetensors_file(tmp / "big.safetensors", size, sparse=True)
    # The target folder exists beforehand, as it would for a person renaming into it. (Renamed
    # into a folder created the same instant, inotify may not watch it yet: the move then shows
    # as a deletion and a creation, and the record follows by matching the ghost's size and
    # mtime after the settle time: still nothing hashed, but slower.)
    (shelf.root / "checkpoints" / "sdxl").mkdir()
    start = time.monotonic()
    record = shelf.import_model(src, "checkpoints", ImportMode.MOVE, hashing=HashTiming.NOW)
    print(f"{size / 1024**3:.0f} GiB model imported and hashed in {time.monotonic() - start:.1f} s")
    shelf.watcher.wait_idle(60)
    shelf.hasher.wait_idle(600)
    batches: queue.Queue[WatchBatch] = queue.Queue()
    shelf.watcher.on_batch(batches.put)
    before = shelf.verifier.bytes_hashed
    start = time.monotonic()
    os.rename(
        shelf.root / "checkpoints" / "big.safetensors",
        shelf.root / "checkpoints" / "sdxl" / "renamed.safetensors",
    )
    renamed = "sdxl/renamed.safetensors"
    wait_for(batches, lambda: shelf.index.location_row("checkpoints", renamed), [])
    followed = time.monotonic() - start
    shelf.hasher.wait_idle(600)
    moved = shelf.find("checkpoints/sdxl/renamed.safetensors")
    print(
        f"  renamed to checkpoints/sdxl/renamed.safetensors: record followed in "
        f"{followed * 1000:.0f} ms, identity kept: {moved.id == record.id}, "
        f"bytes hashed because of the rename: {shelf.verifier.bytes_hashed - before}   (target 0)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--file-mib", type=int, default=4)
    parser.add_argument("--big-gib", type=int, default=2)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="model-shelf-bench-watch-") as tmp,
        Shelf.open(Path(tmp) / "library") as shelf,
    ):
        shelf.start_watching(HealthSettings(verify_interval_days=0))
        try:
            hand_copies(shelf, Path(tmp), args.files, args.file_mib * MIB)
            big_rename(shelf, Path(tmp), args.big_gib * 1024 * MIB)
        finally:
            shelf.stop_watching()


if __name__ == "__main__":
    main()
