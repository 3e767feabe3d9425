"""How much slower is a library model than a model in ComfyUI's own ``models/`` folder?

Builds, in a temporary folder, two stand-in ComfyUIs (``tests/comfy_stubs/folder_paths.py``,
the 0.3.64 algorithm): one with N models in ``models/checkpoints`` (the baseline), one with an
empty ``models/checkpoints`` and a Model Shelf library of N models registered through the
bridge. Then, in one run, prints medians over repeats and the ratios:

- ``get_full_path`` of a library model vs of a ``models/`` model (target <= 1.5);
- ``get_filename_list`` over N library models vs N ``models/`` models (target <= 1.2), both
  warm (ComfyUI's mtime-checked cache valid) and cold (cache dropped, as after a change).

Run: ``.venv/bin/python bench/bench_resolution.py [--models 10000] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from comfy_stubs import load_stand_in, make_comfy_tree, safetensors_bytes  # noqa: E402

from model_shelf.library import Shelf  # noqa: E402
from model_shelf.library.comfy_paths import FolderPathsBridge  # noqa: E402
from model_shelf.library.comfy_settings import ComfySettings  # noqa: E402
from model_shelf.library.records import FileEntry, HashState, ModelRecord  # noqa: E402
from model_shelf.library.usage import UsageRecorder  # noqa: E402

TARGET_FULL_PATH = 1.5
TARGET_FILENAME_LIST = 1.2


def model_names(count: int, subfolders: int) -> list[str]:
    """``count`` names, spread over ``subfolders`` subfolders (0: all at the top)."""
    if subfolders <= 0:
        return [f"model-{i:05d}.safetensors" for i in range(count)]
    return [f"family-{i % subfolders:03d}/model-{i:05d}.safetensors" for i in range(count)]


def build_models_dir(folder: Path, names: list[str]) -> None:
    """ComfyUI's own way: plain files in ``models/checkpoints``."""
    data = safetensors_bytes("baseline")
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def build_library(root: Path, names: list[str]) -> Shelf:
    """A library of ``names`` in ``checkpoints``: files, sidecars and index rows.

    Records are written directly (no fsync per file) to keep the set-up quick; they are the
    same records an import with deferred hashing writes.
    """
    shelf = Shelf(root)
    data = safetensors_bytes("library")
    rows = []
    for i, name in enumerate(names):
        path = shelf.layout.model_path("checkpoints", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stat = path.stat()
        record = ModelRecord(
            type="checkpoints",
            name=name,
            size=stat.st_size,
            files=[FileEntry(path=path.name, size=stat.st_size, mtime_ns=stat.st_mtime_ns)],
            hash_state=HashState.PENDING,
            aliases=[f"alias-{i:05d}.safetensors"],
        )
        sidecar = shelf.layout.sidecar_for(path)
        sidecar.write_text(record.model_dump_json(indent=2) + "\n")
        rows.append((record, sidecar.stat().st_mtime_ns))
    shelf.index.upsert_many(rows)
    return shelf


def paired_medians(
    baseline: Callable[[], int], ours: Callable[[], int], repeats: int
) -> tuple[float, float]:
    """Median seconds per call of each side; the two alternate so load drifts hit both alike."""
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for side, fn in enumerate((baseline, ours)):
            start = time.perf_counter()
            calls = fn()
            samples[side].append((time.perf_counter() - start) / calls)
    return statistics.median(samples[0]), statistics.median(samples[1])


def median_per_call(fn: Callable[[], int], repeats: int) -> float:
    """Median seconds per call of ``fn`` (which returns how many calls it made)."""
    return paired_medians(fn, fn, repeats)[1]


def lookups(fp: ModuleType, names: list[str]) -> Callable[[], int]:
    def run() -> int:
        get = fp.get_full_path
        for name in names:
            if get("checkpoints", name) is None:
                raise AssertionError(f"{name} did not resolve")
        return len(names)

    return run


def listing(fp: ModuleType | SimpleNamespace, cold: bool, rounds: int) -> Callable[[], int]:
    def run() -> int:
        for _ in range(rounds):
            if cold:
                fp.filename_list_cache.pop("checkpoints", None)
            fp.get_filename_list("checkpoints")
        return rounds

    return run


def report(label: str, baseline: float, ours: float, target: float | None) -> bool:
    ratio = ours / baseline
    verdict = "" if target is None else ("  ok" if ratio <= target else f"  MISSES {target}")
    bound = "" if target is None else f" (target <= {target})"
    print(
        f"{label:44} models/ {baseline * 1e6:9.2f} us   library {ours * 1e6:9.2f} us   "
        f"ratio {ratio:5.2f}{bound}{verdict}"
    )
    return target is None or ratio <= target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--sample", type=int, default=2_000, help="names looked up per repeat")
    parser.add_argument("--subfolders", type=int, default=0, help="spread models over N folders")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="model-shelf-bench-") as tmp:
        tmp_path = Path(tmp)
        names = model_names(args.models, args.subfolders)
        started = time.perf_counter()

        base_a = tmp_path / "comfy-baseline"
        fp_a = load_stand_in("folder_paths", base_a)
        make_comfy_tree(base_a, fp_a)
        build_models_dir(base_a / "models" / "checkpoints", names)

        base_b = tmp_path / "comfy-library"
        fp_b = load_stand_in("folder_paths", base_b)
        make_comfy_tree(base_b, fp_b)
        shelf = build_library(tmp_path / "library", names)
        usage = UsageRecorder(shelf)  # noted uses pile up in memory; not saved during timing
        bridge = FolderPathsBridge(shelf, fp_b, ComfySettings(), usage)
        bridge.install()
        print(f"set-up: {args.models} models each side in {time.perf_counter() - started:.1f} s")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {args.repeats}")

        # Same names on both sides; the library side must answer through its own folder.
        sample = random.Random(4).sample(names, min(args.sample, len(names)))
        assert fp_b.get_full_path("checkpoints", sample[0]).startswith(str(shelf.root))
        assert len(fp_b.get_filename_list("checkpoints")) == len(names)
        assert fp_a.get_filename_list("checkpoints") == fp_b.get_filename_list("checkpoints")

        ok = True
        base, ours = paired_medians(lookups(fp_a, sample), lookups(fp_b, sample), args.repeats)
        ok &= report("get_full_path, by name", base, ours, TARGET_FULL_PATH)
        for label, rounds, cold in (("warm", 200, False), ("cold", 3, True)):
            base, ours = paired_medians(
                listing(fp_a, cold, rounds), listing(fp_b, cold, rounds), args.repeats
            )
            ok &= report(f"get_filename_list, {label}", base, ours, TARGET_FILENAME_LIST)
        # How much of that is ComfyUI's own price for one more folder (a stat and an isdir per
        # call, as for any extra_model_paths.yaml folder), with none of our code running?
        comfy_alone = SimpleNamespace(
            get_filename_list=fp_b.get_filename_list.__wrapped__,
            filename_list_cache=fp_b.filename_list_cache,
        )
        base, ours = paired_medians(
            listing(fp_a, False, 200), listing(comfy_alone, False, 200), args.repeats
        )
        report("  of which ComfyUI's own, for a 2nd folder", base, ours, None)

        # What ComfyUI alone cannot resolve at all (no baseline: it returns None).
        index = {name: i for i, name in enumerate(names)}
        fallbacks = {
            "bare name, model in a subfolder": [n.rpartition("/")[2] for n in sample],
            "alias": [f"alias-{index[n]:05d}.safetensors" for n in sample],
        }
        if args.subfolders <= 0:
            fallbacks.pop("bare name, model in a subfolder")
        for label, queries in fallbacks.items():
            ours = median_per_call(lookups(fp_b, queries), args.repeats)
            print(f"{'get_full_path, ' + label:44} library {ours * 1e6:9.2f} us (ComfyUI: None)")
        usage.flush = lambda: 0  # type: ignore[method-assign]  # nothing to save in a bench
        bridge.close()
        shelf.close()
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
