"""A 1 GiB model fetched from a team store and from a LAN peer, as a ratio of ``curl`` of the
same object, in the same run; and the bytes a second machine did not take from the internet.

- store: SeaweedFS (``weed server -s3``, as in the tests) on loopback; ours asks it by sha256
  and downloads the presigned URL; curl downloads the same presigned URL.
- peer: library A runs ``serve`` (a child process) and shares the model; ours (library B, a
  fresh root each round) finds it by sha256 and downloads the blob; curl downloads the same
  blob URL with the team token.

Ours runs in this process (the engine, as inside ``serve`` or ComfyUI): wall time from ``add``
to ``done`` in the library, CPU seconds of this process (``RUSAGE_SELF``; the servers are other
processes). curl runs as a child (``RUSAGE_CHILDREN``). Ours also hashes every byte three ways
(sha256, blake3, xxh3), fsyncs and records the model; curl only writes the file.

    python bench/bench_team.py [--size-mib 1024] [--rounds 3] [--dir DIR]

Prints each run, then medians and ``curl time / our time`` (1.0: as fast as curl).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from downloads_support import quick_settings  # noqa: E402
from remote_server import RemoteServer, sha256_of, write_model_file  # noqa: E402
from seaweed import ACCESS_KEY, SECRET_KEY, make_bucket, start_seaweed  # noqa: E402

from model_shelf.library import Shelf  # noqa: E402
from model_shelf.library.downloads import TaskState  # noqa: E402
from model_shelf.library.imports import ImportMode  # noqa: E402

MIB = 1024 * 1024
TOKEN = "bench-team-token-0123456789"


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def curl(url: str, out: Path, headers: dict[str, str]) -> tuple[float, float]:
    os.sync()
    command = ["curl", "-sf", "-o", str(out), url]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    before = _cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    out.unlink()
    return wall, _cpu(resource.RUSAGE_CHILDREN) - before


def ours(root: Path, setup, origin_url: str, sha256: str) -> tuple[float, float, dict[str, int]]:
    with Shelf.open(root, quick_settings()) as shelf:
        setup(shelf)
        os.sync()
        before = _cpu(resource.RUSAGE_SELF)
        start = time.perf_counter()
        task = shelf.downloads.add(origin_url, sha256=sha256)
        (done,) = shelf.downloads.run_foreground([task.id])
        wall = time.perf_counter() - start
        cpu = _cpu(resource.RUSAGE_SELF) - before
        assert done.state is TaskState.DONE, done.error_message
    shutil.rmtree(root)
    return wall, cpu, done.byte_sources


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-team-", dir=args.dir))
    weed = start_seaweed(work / "seaweed")
    serve = None
    try:
        make_bucket(weed.endpoint, "team")
        size = args.size_mib * MIB
        src = write_model_file(work / "src" / "big.safetensors", size, 1)
        sha256 = sha256_of(src)
        store_args = {
            "endpoint": weed.endpoint,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }
        with Shelf.open(work / "a", quick_settings()) as a:
            a.import_model(src, "checkpoints", mode=ImportMode.MOVE)
            src = a.model_path(a.find("big.safetensors"))  # the origin serves A's copy
            a.team.add_store("team", "s3://team/bench", **store_args)
            start = time.perf_counter()
            a.team.push(["big.safetensors"])
            print(f"push: {size / MIB / (time.perf_counter() - start):.0f} MiB/s")
            a.team.set_token(TOKEN)
            a.team.share(["big.safetensors"])
            presigned = a.team.store().presigned_get(f"sha256:{sha256}")
        port = _free_port()
        serve = subprocess.Popen(
            [
                *(sys.executable, "-m", "model_shelf", "--root", str(work / "a"), "serve"),
                *("--port", str(port), "--no-watch"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        peer = f"http://127.0.0.1:{port}"
        _wait_http(f"{peer}/model-shelf/healthz")
        blob = f"{peer}/model-shelf/blobs/{sha256}"

        def via_store(shelf: Shelf) -> None:
            shelf.team.add_store("team", "s3://team/bench", check=False, **store_args)

        def via_peer(shelf: Shelf) -> None:
            shelf.team.set_token(TOKEN)
            shelf.team.add_peer(peer)

        results: dict[str, list[tuple[float, float]]] = {}
        saved: dict[str, dict[str, int]] = {}
        with RemoteServer() as internet:
            served = internet.serve("big.safetensors", src)
            origin = internet.url("big.safetensors")
            for n in range(args.rounds):
                runs = {
                    "curl store": lambda: curl(presigned, work / "curl.bin", {}),
                    "ours store": lambda: ours(work / "b", via_store, origin, sha256),
                    "curl peer": lambda: curl(
                        blob, work / "curl.bin", {"Authorization": f"Bearer {TOKEN}"}
                    ),
                    "ours peer": lambda: ours(work / "b", via_peer, origin, sha256),
                }
                for name, run in runs.items():
                    wall, cpu, *rest = run()
                    if rest:
                        saved[name] = rest[0]
                    results.setdefault(name, []).append((wall, cpu))
                    print(
                        f"round {n + 1} {name:10}: {wall:6.2f} s  {size / MIB / wall:7.0f} MiB/s  "
                        f"cpu {cpu:5.2f} s"
                    )
            internet_bytes = served.bytes_sent
        print("\nmedians (machine shared with other work: compare within this run only)")
        median = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
        for name in results:
            print(f"  {name:10}: {median[name]:6.2f} s  cpu {cpu[name]:5.2f} s")
        for where in ("store", "peer"):
            ratio = median[f"curl {where}"] / median[f"ours {where}"]
            print(f"  {where}: curl time / our time = {ratio:.2f} (target >= 0.9)")
        for name, sources in saved.items():
            print(f"  second machine, {name}: bytes by source {sources}")
        print(f"  bytes the origin (the internet) sent in all rounds: {internet_bytes}")
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(30)
        weed.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
