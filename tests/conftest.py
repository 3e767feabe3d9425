"""Shared fixtures: real folders, real SQLite, real model files, real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import no_internet  # first: before huggingface_hub is imported
import numpy as np
import pytest
from hypothesis import settings
from model_files import write_sparse_safetensors as write_big_safetensors  # noqa: F401
from safetensors.numpy import save_file
from seaweed import Seaweed, start_seaweed

from model_shelf.library import Shelf
from model_shelf.library.settings import HealthSettings

if TYPE_CHECKING:
    from aiohttp import web
    from routes_support import ThreadedApp

REPO = Path(__file__).resolve().parent.parent
# No background metadata lookups against the real Civitai in tests (issue #12); the tests of
# the worker turn it on for their own loopback server.
os.environ.setdefault("MODEL_SHELF_ENRICH_BACKGROUND", "0")

# Hypothesis: in CI (``CI`` set) every run draws the same examples (no flaky red build from a
# new random draw); elsewhere runs are random. A failure always prints the blob that replays it
# (``@reproduce_failure``).
settings.register_profile("ci", derandomize=True, print_blob=True, database=None)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


QUICK_WATCH = HealthSettings(
    debounce_seconds=0.05,
    settle_seconds=0.3,
    placed_grace_seconds=0.2,
    polling_interval_seconds=0.2,
    verify_interval_days=0,
)
"""Watcher settings for tests: short debounce, settle and grace times, no verify pass."""


def flip_a_byte(path: Path) -> None:
    """Corrupt a model file the way a bad disk does: one byte differs, the size stays."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(autouse=True)
def stays_on_this_machine() -> Iterator[None]:
    """Fail a test that tried to reach past this machine (`no_internet`), even if the code
    under test caught the refusal."""
    no_internet.ATTEMPTS.clear()
    yield
    tried, no_internet.ATTEMPTS[:] = list(no_internet.ATTEMPTS), []
    assert not tried, f"the test tried to leave this machine: {tried}"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread of ours running (watchdog's habit, see STYLE.md)."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and t.name.startswith(("shelf-", "model-shelf"))
    ]
    for thread in leaked:
        thread.join(timeout=5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads left running: {still}"


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """A real S3 server (SeaweedFS on loopback): one per test module, killed at its end."""
    running = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield running
    finally:
        running.stop()


PEER_TOKEN = "team-token-for-the-tests-0123"
"""The team token of the LAN-peer tests (both machines set it)."""


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[Shelf, ThreadedApp]]:
    """Machine A of the LAN-peer tests: a library serving its API (and so the models it
    shares) on a loopback port, with the team token set. Its downloads do not run."""
    from downloads_support import quick_settings
    from routes_support import ThreadedApp

    from model_shelf.server_routes import standalone_app

    shelf = Shelf.open(tmp_path / "peer-a", quick_settings())
    shelf.team.set_token(PEER_TOKEN)

    async def make() -> web.Application:
        return standalone_app(shelf, run_downloads=False)

    try:
        with ThreadedApp(make, "test-peer-a") as app:
            yield shelf, app
    finally:
        shelf.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "library"


@pytest.fixture
def shelf(root: Path) -> Iterator[Shelf]:
    with Shelf.open(root) as opened:
        yield opened


ModelFactory = Callable[..., Path]


@pytest.fixture
def make_model(tmp_path: Path) -> ModelFactory:
    """Write a real safetensors file; keys and shapes say what architecture it looks like."""
    counter = iter(range(1_000_000))

    def make(
        name: str | None = None,
        folder: Path | None = None,
        tensors: dict[str, np.ndarray] | None = None,
        seed: int | None = None,
    ) -> Path:
        n = next(counter)
        target = (folder or tmp_path / "incoming") / (name or f"model-{n}.safetensors")
        target.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed if seed is not None else n)
        save_file(
            tensors
            or {
                "lora_unet_down_blocks_0.lora_up.weight": rng.standard_normal((8, 4)).astype(
                    np.float16
                ),
                "lora_unet_down_blocks_0.lora_down.weight": rng.standard_normal((4, 8)).astype(
                    np.float16
                ),
            },
            str(target),
        )
        return target

    return make


def run_cli(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python -m model_shelf --root ROOT ARGS`` as a user would, output piped."""
    env = {k: v for k, v in os.environ.items() if k != "MODEL_SHELF_ROOT"}
    result = subprocess.run(
        [sys.executable, "-m", "model_shelf", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"CLI {args} failed: {result.stderr}")
    return result


def tree_snapshot(top: Path, skip: frozenset[str] = frozenset()) -> dict[str, tuple[int, int]]:
    """Every file under ``top`` with (size, mtime_ns), minus the state folder (SQLite touches
    its WAL on every read) and the top-level entries named in ``skip``: compare before/after
    to prove an operation changed nothing.

    A file that vanishes while it is listed (a temporary renamed into place) is left out: it
    was not there before and is not there after, so it changed nothing.
    """
    snapshot: dict[str, tuple[int, int]] = {}
    if not top.exists():
        return snapshot
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue  # the folder went away while we looked
        for entry in entries:
            rel = Path(entry.path).relative_to(top)
            if rel.parts[0] in skip or ".shelf" in rel.parts:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):  # as rglob: links not followed
                    pending.append(Path(entry.path))
                elif entry.is_file():
                    stat = entry.stat()
                    snapshot[str(rel)] = (stat.st_size, stat.st_mtime_ns)
            except FileNotFoundError:
                continue
    return dict(sorted(snapshot.items()))
