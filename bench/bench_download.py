"""Our download of a 2 GiB file over loopback (hashing on), as a ratio of ``curl -o``.

Both clients fetch the same file from the same loopback server (tests/remote_server.py, on a
thread of this process) into the same folder, alternately, several times. Each client runs as a
child process, so its CPU time is measured apart from the server's (``RUSAGE_CHILDREN``).

    python bench/bench_download.py [--size-mib 2048] [--rounds 3] [--dir DIR]

Prints wall time, throughput and CPU seconds (user+system) of each run, then the ratio
``curl time / our time`` of the medians: 1.0 means as fast as curl, above 1.0 faster.
Ours does more than curl: it computes sha256, blake3 and xxh3-128 of every byte, fsyncs, and
records the model in the library; curl only writes the file. For scale, a second baseline does
what a careful person does by hand: ``curl -o`` then ``sha256sum`` (one digest, read back).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from remote_server import RemoteServer, write_model_file  # noqa: E402

MIB = 1024 * 1024


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, CPU seconds of the child).

    Dirty pages left by the previous run are flushed first (untimed), so that no run pays for
    another's disk writes.
    """
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (on a real disk)")
    args = parser.parse_args()
    curl = shutil.which("curl")
    if curl is None:
        print("curl is not installed", file=sys.stderr)
        return 2
    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="bench-download-", dir=args.dir))
    env = {k: v for k, v in os.environ.items() if k != "MODEL_SHELF_ROOT"}
    env["MODEL_SHELF_DOWNLOAD_FREE_SPACE_MARGIN_BYTES"] = "0"
    sha256sum = shutil.which("sha256sum")
    results: dict[str, list[tuple[float, float]]] = {"curl": [], "model-shelf": []}
    if sha256sum:
        results["curl+sha256sum"] = []
    try:
        source = write_model_file(work / "source.safetensors", size, seed=7)
        with RemoteServer() as server:
            server.serve("big.safetensors", source)
            url = server.url("big.safetensors")
            for round_ in range(args.rounds):
                target = work / f"curl-{round_}.safetensors"
                results["curl"].append(timed([curl, "-sS", "-f", "-o", str(target), url]))
                target.unlink()
                if sha256sum:
                    script = f'"{curl}" -sS -f -o "{target}" "{url}" && "{sha256sum}" "{target}"'
                    results["curl+sha256sum"].append(timed(["sh", "-c", script]))
                    target.unlink()
                root = work / f"library-{round_}"
                results["model-shelf"].append(
                    timed(
                        [
                            sys.executable,
                            "-m",
                            "model_shelf",
                            "--root",
                            str(root),
                            "add",
                            url,
                            "--type",
                            "checkpoints",
                        ],
                        env,
                    )
                )
                shutil.rmtree(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"download of {args.size_mib} MiB over loopback, {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs"
    )
    for name, runs in results.items():
        for wall, cpu in runs:
            print(f"  {name:15} {wall:7.2f} s  {size / MIB / wall:8.0f} MiB/s  cpu {cpu:6.2f} s")
    curl_wall = statistics.median(w for w, _ in results["curl"])
    ours_wall = statistics.median(w for w, _ in results["model-shelf"])
    curl_cpu = statistics.median(c for _, c in results["curl"])
    ours_cpu = statistics.median(c for _, c in results["model-shelf"])
    print(f"median wall: curl {curl_wall:.2f} s, model-shelf {ours_wall:.2f} s")
    print(
        f"median cpu:  curl {curl_cpu:.2f} s, model-shelf {ours_cpu:.2f} s "
        "(ours includes sha256+blake3+xxh3 of every byte)"
    )
    print(f"ratio (curl time / our time, target >= 1.0): {curl_wall / ours_wall:.2f}")
    if sha256sum:
        manual = statistics.median(w for w, _ in results["curl+sha256sum"])
        print(f"ratio (curl+sha256sum time / our time): {manual / ours_wall:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
