"""Stand-in for the start order of ComfyUI's ``main.py``, written for our tests (not ComfyUI's
code), with real HTTP on 127.0.0.1.

Mirrors ``start_comfyui`` and ``setup_database`` of ComfyUI 0.33 (comfyanonymous/ComfyUI
002f2bedd6e4f6a0f7436ab7ce2fb8021483904c, ``main.py``) and of 0.3.64 (commit
637221995f7424a561bd825de3e61ea117dfe1e3), in this order:

1. ``prompt_server = server.PromptServer(loop)``;
2. ``nodes.init_extra_nodes()``: the node packs are imported (here: the given callables, e.g.
   `comfy_stubs.load_custom_node` on a ``custom_nodes`` folder);
3. ``setup_database()``: on 0.33 with ``--enable-assets``, ``asset_seeder.start(("models",
   "input", "output"), prune_first=True, compute_hashes=...)`` on the seeder's own thread; the
   hashing flag is ``--enable-asset-hashing``. 0.3.64 has no asset system;
4. ``prompt_server.add_routes()``: node packs' routes, each also under ``/api``, and on 0.33
   core's asset routes (answering 503 without ``--enable-assets``);
5. ``start_multi_address``: the server listens, then ``prompt_server.address`` and ``port`` are
   set (here the port is a free one the OS picked, not ``--port``).

`stop` is what a shutdown does: the seeder's scan is waited for, the server closed.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from aiohttp import web
from loop_thread import LoopThread

from comfy_stubs.assets import ROOTS, AssetSeeder, Catalog, add_routes


@dataclass
class RunningComfy:
    """A stand-in ComfyUI serving on 127.0.0.1."""

    prompt_server: object
    seeder: AssetSeeder | None
    url: str
    _loop: LoopThread
    _runner: web.AppRunner

    def stop(self) -> None:
        if self.seeder is not None:
            self.seeder.shutdown()
        self._loop.stop()


def start_comfyui(
    folder_paths: ModuleType,
    server: ModuleType,
    args: argparse.Namespace,
    custom_nodes: list[Callable[[], object]],
    catalog: Catalog | None = None,
    hold_scans: threading.Event | None = None,
) -> RunningComfy:
    """Start a stand-in ComfyUI whose version is told by ``args`` (0.33 has asset flags).

    ``catalog`` plays core's database file: hand the same one to a second start to restart.
    ``hold_scans`` (`AssetSeeder.hold`) keeps core's scans from walking until it is set.
    """
    holder: dict[str, web.AppRunner] = {}

    async def teardown() -> None:
        if "runner" in holder:
            await holder["runner"].cleanup()

    async def nothing() -> None:
        return None

    loop_thread = LoopThread("comfy-stand-in", nothing, teardown)
    loop_thread.start()
    assert loop_thread.loop is not None
    prompt_server = server.PromptServer(loop_thread.loop)
    for load in custom_nodes:  # nodes.init_extra_nodes
        load()
    has_assets = hasattr(args, "enable_assets")
    seeder = AssetSeeder(folder_paths, catalog or Catalog()) if has_assets else None
    if seeder is not None:
        seeder.hold = hold_scans
    if seeder is not None and args.enable_assets:  # setup_database
        seeder.start(roots=ROOTS, prune_first=True, compute_hashes=args.enable_asset_hashing)

    async def serve() -> str:
        app = web.Application()
        prompt_server.add_routes_to(app)  # prompt_server.add_routes
        if seeder is not None:
            add_routes(app, seeder, enabled=args.enable_assets)
        runner = web.AppRunner(app)
        holder["runner"] = runner
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        prompt_server.address, prompt_server.port = "127.0.0.1", port  # start_multi_address
        return f"http://127.0.0.1:{port}"

    url = loop_thread.call(serve())
    return RunningComfy(prompt_server, seeder, url, loop_thread, holder["runner"])
