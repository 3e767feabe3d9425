"""The test host: our routes mounted the way ComfyUI mounts them, on a real library, beside a
stand-in of the ComfyUI page that loads our ``web/`` as ComfyUI does.

- ``comfy_stubs``' ``server.PromptServer`` (ComfyUI 0.3.64's surface) gets our routes through
  `server_routes.comfy.attach`, exactly as inside ComfyUI; its ``add_routes_to`` builds the app
  (each route also under ``/api``); the download engine runs in this app's loop.
- ``GET /ws`` is the page's websocket: ``send_sync`` messages go out as ``{type, data}``.
- ``GET /extensions`` lists every ``.js`` under ``web/`` as ``/extensions/model-shelf/...`` and
  ``/extensions/model-shelf/`` serves ``web/``, as ComfyUI's server does for ``WEB_DIRECTORY``;
  ``/scripts/`` serves the stand-in ``app.js``/``api.js`` (ComfyUI_frontend module shapes).
- A search for ``text=sdx`` is answered 1.5 s late, so a test can check that a late answer to
  an old query never replaces the answer to a newer one.
- ComfyUI's own ``GET /api/models/{folder}`` (the file names its combos list) and
  ``GET /api/object_info`` (the loader nodes' definitions, with those names as combo choices)
  are answered from the library, as ComfyUI lists library folders through ``folder_paths``.
- ``POST /api/prompt`` keeps each body the page queues in ``app[PROMPTS]`` (nothing is run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from comfy_stubs import load_stand_in

from model_shelf.library import Shelf
from model_shelf.library.comfy_settings import ComfySettings
from model_shelf.server_routes.app import WEB_DIR
from model_shelf.server_routes.comfy import attach

HERE = Path(__file__).resolve().parent
SLOW_QUERY = "sdx"
SLOW_SECONDS = 1.5
PROMPTS = web.AppKey("prompts", list)
LOADER_INPUTS = {
    # node class -> (its model input, the type folder it lists): ComfyUI 0.3.64's nodes.py
    "CheckpointLoaderSimple": ("ckpt_name", "checkpoints"),
    "LoraLoader": ("lora_name", "loras"),
    "VAELoader": ("vae_name", "vae"),
    "CLIPLoader": ("clip_name", "text_encoders"),
    "UNETLoader": ("unet_name", "diffusion_models"),
    "ControlNetLoader": ("control_net_name", "controlnet"),
    "UpscaleModelLoader": ("model_name", "upscale_models"),
}


@web.middleware
async def late_answers(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.endswith("/model-shelf/models") and request.query.get("text") == SLOW_QUERY:
        await asyncio.sleep(SLOW_SECONDS)
    return await handler(request)


async def make_host_app(shelf: Shelf, comfy_base: Path) -> web.Application:
    """The host app (call in the loop that will serve it)."""
    server_module = load_stand_in("server", comfy_base)
    prompt_server = server_module.PromptServer(asyncio.get_running_loop())
    api = attach(prompt_server, lambda: shelf, comfy_base / "user", ComfySettings())
    api.library_opened(shelf)
    app = web.Application(middlewares=[late_answers])
    prompt_server.add_routes_to(app)
    sockets: set[web.WebSocketResponse] = set()

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets.add(ws)
        try:
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            sockets.discard(ws)
        return ws

    async def pump() -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                event, data, _sid = await loop.run_in_executor(
                    None, prompt_server.messages.get, True, 0.2
                )
            except queue.Empty:
                continue
            text = json.dumps({"type": event, "data": data})
            for ws in list(sockets):
                with contextlib.suppress(ConnectionError):
                    await ws.send_str(text)

    async def extensions(request: web.Request) -> web.Response:
        files = sorted(p.relative_to(WEB_DIR).as_posix() for p in WEB_DIR.rglob("*.js"))
        return web.json_response([f"/extensions/model-shelf/{f}" for f in files])

    def listed(folder: str) -> list[str]:
        return sorted(r.name for r in shelf.list_models(folder))

    async def models(request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in {f for _, f in LOADER_INPUTS.values()}:
            return web.Response(status=404)
        return web.json_response(await asyncio.to_thread(listed, folder))

    async def object_info(request: web.Request) -> web.Response:
        def build() -> dict[str, Any]:
            return {
                node: {"input": {"required": {name: [listed(folder)]}}}
                for node, (name, folder) in LOADER_INPUTS.items()
            }

        return web.json_response(await asyncio.to_thread(build))

    async def prompt(request: web.Request) -> web.Response:
        app[PROMPTS].append(await request.json())
        return web.json_response({"prompt_id": str(len(app[PROMPTS])), "number": 0})

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(HERE / "index.html")

    async def running(app: web.Application) -> Any:
        task = asyncio.create_task(pump())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for ws in list(sockets):
            await ws.close()
        await asyncio.to_thread(api.stop)

    app[PROMPTS] = []
    app.router.add_get("/ws", websocket)
    app.router.add_get("/api/models/{folder}", models)
    app.router.add_get("/api/object_info", object_info)
    app.router.add_post("/api/prompt", prompt)
    app.router.add_get("/api/extensions", extensions)
    app.router.add_get("/", page)
    app.router.add_static("/scripts", HERE / "scripts")
    app.router.add_static("/extensions/model-shelf", WEB_DIR)
    app.cleanup_ctx.append(running)
    return app
