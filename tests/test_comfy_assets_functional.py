"""Issue #16: the library in ComfyUI 0.33's core asset database (``--enable-assets``).

A stand-in ComfyUI (`comfy_stubs.comfy_main`: its start order, serving on 127.0.0.1) starts
Model Shelf as a node pack, then its core asset scan (`comfy_stubs.assets`), as 0.33's
``main.py`` does. Everything is asked over real HTTP.

Opening the library is held (``library_opens``) until core's start-up scan is over: a big
library's start-up sync takes longer than that scan, which is how the bug was seen in a real
0.33 (and what makes these tests fail on the code before the fix, every time).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from comfy_stubs import Comfy, cli_args, load_stand_in, write_model
from comfy_stubs.assets import Catalog
from comfy_stubs.comfy_main import RunningComfy, start_comfyui

import model_shelf.comfy_entry as comfy_entry
from model_shelf.comfy_entry import ComfyRuntime, start
from model_shelf.library import ImportMode, Shelf
from model_shelf.library.settings import ROOT_ENV

pytest_plugins = ["comfy_stubs.fixtures"]

WAIT = 30.0
MODELS = {
    ("checkpoints", "sub/base.safetensors"): "base",
    ("loras", "style.safetensors"): "style",
    ("vae", "decoder.safetensors"): "decoder",
}


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """A request to the stand-in ComfyUI; returns (status, its JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        response = opener.open(request, timeout=WAIT)
    except urllib.error.HTTPError as exc:
        response = exc
    with response:
        raw = response.read()
        is_json = response.headers.get_content_type() == "application/json"
        return response.status, json.loads(raw) if is_json and raw else None


def listed_models(core: RunningComfy) -> dict[str, dict[str, Any]]:
    """Core's ``/api/assets`` listing of model assets, by loader path."""
    status, body = http("GET", f"{core.url}/api/assets?include_tags=models&limit=500")
    assert status == 200, body
    return {a["loader_path"]: a for a in body["assets"]}


def library_blake3(root: Path) -> dict[str, str]:
    """Our blake3 of each library model, by loader path (the name ComfyUI lists)."""
    with Shelf(root) as shelf:
        return {r.name: r.hashes["blake3"] for r in shelf.list_models()}


@pytest.fixture
def library(comfy: Comfy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A library with three models (one in a subfolder), the root of every start here (after
    ``comfy``, which clears the root's environment variable)."""
    root = tmp_path / "library"
    with Shelf.open(root) as shelf:
        for (model_type, name), tag in MODELS.items():
            source = write_model(tmp_path / "incoming" / Path(name).name, tag)
            shelf.import_model(source, model_type, ImportMode.COPY, name=name)
    monkeypatch.setenv(ROOT_ENV, str(root))
    return root


class Starts:
    """Starts stand-in ComfyUIs in ``base``; stops them (and Model Shelf in them) afterwards."""

    def __init__(self, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.base = base
        self.monkeypatch = monkeypatch
        self.running: list[tuple[RunningComfy, ComfyRuntime]] = []

    def __call__(
        self,
        argv: list[str],
        *,
        version: cli_args.Version = "0.33",
        catalog: Catalog | None = None,
        hold_scans: threading.Event | None = None,
    ) -> tuple[RunningComfy, ComfyRuntime]:
        """A fresh ComfyUI process: new ``folder_paths``, ``server`` and ``comfy.cli_args``."""
        folder_paths = load_stand_in("folder_paths", self.base)
        server = load_stand_in("server", self.base)
        args_module = load_stand_in("cli_args", self.base)
        args_module.args = cli_args.parse(argv, version)
        for name, module in (
            ("folder_paths", folder_paths),
            ("server", server),
            ("comfy.cli_args", args_module),
        ):
            self.monkeypatch.setitem(sys.modules, name, module)
        loaded: list[ComfyRuntime] = []

        def custom_node() -> None:  # as the package's __init__ does, from sys.modules
            loaded.append(start())

        core = start_comfyui(
            folder_paths, server, args_module.args, [custom_node], catalog or Catalog(), hold_scans
        )
        self.running.append((core, loaded[0]))
        return core, loaded[0]

    def stop(self, core: RunningComfy) -> None:
        for i, (running, runtime) in enumerate(self.running):
            if running is core:
                runtime.stop()
                core.stop()
                del self.running[i]
                return

    def stop_all(self) -> None:
        while self.running:
            self.stop(self.running[-1][0])


@pytest.fixture
def starts(comfy: Comfy, monkeypatch: pytest.MonkeyPatch) -> Iterator[Starts]:
    made = Starts(comfy.base, monkeypatch)
    yield made
    made.stop_all()


@pytest.fixture
def library_opens(starts: Starts, monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Holds `Shelf.open` inside ComfyUI until set (set at the end of the test, before the
    ComfyUIs stop)."""
    gate = threading.Event()
    original = Shelf.open

    def held_open(root: Path, *args: Any, **kwargs: Any) -> Shelf:
        assert gate.wait(WAIT), "the test never let the library open"
        return original(root, *args, **kwargs)

    monkeypatch.setattr(comfy_entry.Shelf, "open", held_open)
    yield gate
    gate.set()


# -- (1) in core's first scan, with no seed asked by anyone -------------------------------


def test_the_library_is_in_cores_first_scan(
    library: Path, library_opens: threading.Event, starts: Starts
) -> None:
    core, runtime = starts(["--enable-assets"])
    assert core.seeder is not None and core.seeder.wait(WAIT)
    assert core.seeder.started == [  # only core's start-up scan ran
        {"roots": ("models", "input", "output"), "prune_first": True, "compute_hashes": False}
    ]
    listed = listed_models(core)
    assert {name for _, name in MODELS} <= set(listed)
    assert all("missing" not in a["tags"] for a in listed.values())
    assert "checkpoints" in listed["sub/base.safetensors"]["tags"]

    library_opens.set()
    assert runtime.ready.wait(WAIT) and runtime.bridge is not None
    assert runtime.assets is not None and runtime.assets.done.wait(WAIT)
    assert runtime.assets.seeded == 0  # nothing to catch up on
    assert core.seeder.started[1:] == []


# -- (2) blake3: core's hashes equal ours; a library file is never hashed twice ------------


def test_without_hashing_core_never_reads_a_library_file(
    library: Path, library_opens: threading.Event, starts: Starts
) -> None:
    catalog = Catalog()
    core, runtime = starts(["--enable-assets"], catalog=catalog)
    assert core.seeder is not None and core.seeder.wait(WAIT)
    listed = listed_models(core)
    assert {name for _, name in MODELS} <= set(listed)
    assert all(listed[name]["hash"] is None for _, name in MODELS)
    library_opens.set()
    assert runtime.ready.wait(WAIT) and runtime.assets is not None
    assert runtime.assets.done.wait(WAIT) and core.seeder.wait(WAIT)
    assert catalog.hash_reads == []


def test_with_hashing_each_library_file_is_hashed_once_ever_and_matches_ours(
    library: Path, library_opens: threading.Event, starts: Starts
) -> None:
    """Core takes no hash from outside (see `comfy_assets`): with ``--enable-asset-hashing`` it
    reads each file once. The library's folders being in every start-up scan keeps it so: a
    folder missing from one would have its files marked missing, then hashed again."""
    ours = library_blake3(library)
    catalog = Catalog()
    argv = ["--enable-assets", "--enable-asset-hashing"]
    for _ in ("first start", "restart", "another restart"):
        library_opens.clear()
        core, runtime = starts(argv, catalog=catalog)
        assert core.seeder is not None and core.seeder.wait(WAIT)  # the start-up scan
        listed = listed_models(core)
        for name, blake3 in ours.items():
            assert listed[name]["hash"] == blake3
            assert "missing" not in listed[name]["tags"]
            status, _ = http("HEAD", f"{core.url}/api/assets/hash/{blake3}")
            assert status == 200
        library_opens.set()
        assert runtime.ready.wait(WAIT) and runtime.assets is not None
        assert runtime.assets.done.wait(WAIT) and runtime.assets.seeded == 0
        starts.stop(core)
    in_library = [p for p in catalog.hash_reads if p.startswith(str(library))]
    assert sorted(in_library) == sorted(str(library / t / n) for t, n in MODELS)


def test_from_hash_adds_no_hash_core_lacks(library: Path, starts: Starts) -> None:
    """Why our blake3 cannot be handed over: from-hash only knows content core hashed."""
    core, _ = starts(["--enable-assets"])
    assert core.seeder is not None and core.seeder.wait(WAIT)
    ours = library_blake3(library)["style.safetensors"]
    status, body = http(
        "POST",
        f"{core.url}/api/assets/from-hash",
        {"hash": ours, "name": "style.safetensors", "tags": ["models", "loras"]},
    )
    assert (status, body["error"]["code"]) == (404, "ASSET_NOT_FOUND")


# -- a root that comes after the start: core is asked to scan ------------------------------


class Drive:
    """The library on a drive that is not mounted yet: `mount` brings it, all at once."""

    def __init__(self, tmp_path: Path, library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = tmp_path / "drive"
        self.root = self.path / "library"
        self._unmounted = tmp_path / "unmounted"
        self._unmounted.mkdir()
        library.rename(self._unmounted / "library")
        monkeypatch.setenv(ROOT_ENV, str(self.root))
        monkeypatch.setattr(comfy_entry, "ROOT_RETRY_SECONDS", 0.05)

    def mount(self) -> None:
        self._unmounted.rename(self.path)


@pytest.fixture
def drive(tmp_path: Path, library: Path, monkeypatch: pytest.MonkeyPatch) -> Drive:
    return Drive(tmp_path, library, monkeypatch)


def test_a_root_mounted_after_the_start_is_seeded_into_core(drive: Drive, starts: Starts) -> None:
    catalog = Catalog()
    core, runtime = starts(["--enable-assets", "--enable-asset-hashing"], catalog=catalog)
    assert core.seeder is not None and core.seeder.wait(WAIT)
    assert not listed_models(core)
    drive.mount()
    assert runtime.ready.wait(WAIT) and runtime.assets is not None
    assert runtime.assets.done.wait(WAIT) and core.seeder.wait(WAIT)
    assert runtime.assets.seeded == 1
    assert core.seeder.started[-1] == {
        "roots": ("models",),
        "prune_first": False,
        "compute_hashes": False,
    }
    assert {name for _, name in MODELS} <= set(listed_models(core))
    assert not [p for p in catalog.hash_reads if p.startswith(str(drive.root))]


def test_a_seed_refused_while_core_scans_is_asked_again(
    drive: Drive, monkeypatch: pytest.MonkeyPatch, starts: Starts
) -> None:
    """The root arrives while core's start-up scan is still walking (a slow disk): that scan may
    have listed the folders before ours, so we ask again once it is over."""
    monkeypatch.setattr("model_shelf.comfy_assets.SEED_RETRY_SECONDS", 0.05)
    walking = threading.Event()
    core, runtime = starts(["--enable-assets"], hold_scans=walking)
    assert core.seeder is not None
    drive.mount()
    assert core.seeder.refused.wait(WAIT)  # our seed met the start-up scan
    walking.set()
    assert runtime.ready.wait(WAIT) and runtime.assets is not None
    assert runtime.assets.done.wait(WAIT) and core.seeder.wait(WAIT)
    assert runtime.assets.seeded == 1
    assert [s["roots"] for s in core.seeder.started] == [("models", "input", "output"), ("models",)]
    assert {name for _, name in MODELS} <= set(listed_models(core))


# -- (3) nothing without --enable-assets, nothing on 0.3.64 --------------------------------


def test_nothing_happens_without_enable_assets(library: Path, starts: Starts) -> None:
    core, runtime = starts([])
    assert runtime.ready.wait(WAIT) and runtime.shelf is not None
    assert runtime.assets is None
    assert core.seeder is not None and core.seeder.started == []
    status, body = http("GET", f"{core.url}/api/assets")
    assert (status, body["error"]["code"]) == (503, "SERVICE_DISABLED")


def test_nothing_happens_on_comfyui_0_3_64(library: Path, starts: Starts) -> None:
    core, runtime = starts([], version="0.3.64")
    assert runtime.ready.wait(WAIT) and runtime.shelf is not None
    assert runtime.assets is None and core.seeder is None
    assert http("GET", f"{core.url}/api/assets")[0] == 404
    fp = sys.modules["folder_paths"]
    assert fp.get_filename_list("checkpoints") == ["sub/base.safetensors"]


@pytest.mark.parametrize(
    "args, enabled",
    [
        (None, False),  # outside ComfyUI
        (cli_args.parse([], "0.3.64"), False),
        (cli_args.parse([], "0.33"), False),
        (cli_args.parse(["--enable-assets"], "0.33"), True),
        (argparse.Namespace(enable_assets=False, disable_assets=False), True),  # later: opt-out
        (argparse.Namespace(enable_assets=True, disable_assets=True), False),
    ],
)
def test_assets_enabled_reads_each_versions_flags(
    args: argparse.Namespace | None, enabled: bool
) -> None:
    # Imported here: the module is new, and this file must also run on the code before it.
    from model_shelf.comfy_assets import assets_enabled

    assert assets_enabled(None if args is None else SimpleNamespace(args=args)) is enabled
