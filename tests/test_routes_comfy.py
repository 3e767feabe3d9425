"""The API inside (a stand-in) ComfyUI: routes on ``PromptServer.instance.routes``, served again
under ``/api`` as ComfyUI does; ``NOT_READY`` until the library has opened; events over
``send_sync``; downloads run in ComfyUI's loop; the root is saved to the install's settings."""

from __future__ import annotations

import asyncio
import json
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from comfy_stubs import Comfy, cli_args, load_stand_in
from downloads_support import quick_settings
from remote_server import RemoteServer, write_model_file
from routes_support import JSON, json_of

from model_shelf.comfy_entry import start
from model_shelf.library import Shelf
from model_shelf.library.comfy_settings import ComfySettings, settings_path
from model_shelf.server_routes.comfy import attach

pytest_plugins = ["comfy_stubs.fixtures", "routes_fixtures"]


def next_message(
    messages: queue.Queue[tuple[str, Any, str | None]],
    predicate: Callable[[str, Any], bool],
    timeout: float = 30.0,
) -> Any:
    """The data of the first ``send_sync`` message matching ``predicate``."""
    deadline = time.monotonic() + timeout
    while True:
        event, data, _sid = messages.get(timeout=max(0.01, deadline - time.monotonic()))
        if predicate(event, data):
            return data


async def comfy_app(prompt_server: Any, aiohttp_client: Any) -> TestClient:
    app = web.Application()
    prompt_server.add_routes_to(app)
    return await aiohttp_client(app)


async def test_not_ready_until_the_library_opens(
    comfy: Comfy, aiohttp_client: Any, tmp_path: Path
) -> None:
    holder: dict[str, Shelf] = {}
    prompt_server = comfy.server.PromptServer.instance
    api = attach(prompt_server, lambda: holder.get("shelf"), tmp_path / "user", ComfySettings())
    try:
        client = await comfy_app(prompt_server, aiohttp_client)
        for path in ("/model-shelf/healthz", "/api/model-shelf/models"):
            response = await client.get(path)
            assert response.status == 503
            assert (await json_of(response))["code"] == "NOT_READY"
        with Shelf.open(tmp_path / "library", quick_settings()) as shelf:
            holder["shelf"] = shelf
            response = await client.get("/api/model-shelf/healthz")
            assert response.status == 200
            assert (await json_of(response))["root"] == str(shelf.root)
    finally:
        await asyncio.to_thread(api.stop)


async def test_type_folders_answer_before_the_library_opens_less_the_hidden_ones(
    comfy: Comfy, aiohttp_client: Any, tmp_path: Path
) -> None:
    prompt_server = comfy.server.PromptServer.instance
    settings = ComfySettings(hide_types=["upscale_models", "hypernetworks"])
    api = attach(prompt_server, lambda: None, tmp_path / "user", settings)
    try:
        client = await comfy_app(prompt_server, aiohttp_client)
        response = await client.get("/api/model-shelf/types")
        assert response.status == 200  # the sidebar's type lists need no open library
        types = (await json_of(response))["types"]
        assert types[:2] == ["checkpoints", "loras"]
        assert "upscale_models" not in types and "hypernetworks" not in types
        assert "vae" in types
    finally:
        await asyncio.to_thread(api.stop)


async def test_started_by_comfy_entry(comfy: Comfy, aiohttp_client: Any) -> None:
    runtime = start(comfy.folder_paths, comfy.server)
    try:
        assert runtime.api is not None
        assert runtime.ready.wait(30) and runtime.shelf is not None
        prompt_server = comfy.server.PromptServer.instance
        paths = {route.path for route in prompt_server.routes}
        assert {"/model-shelf/models", "/model-shelf/downloads", "/model-shelf/events"} <= paths
        client = await comfy_app(prompt_server, aiohttp_client)
        page = await json_of(await client.get("/api/model-shelf/models"))
        assert page["total"] == 0
        # a change made through the API is announced on the websocket
        write_model_file(comfy.base / "incoming" / "x.safetensors", 4096)
        response = await client.post(
            "/api/model-shelf/import",
            json={"path": str(comfy.base / "incoming" / "x.safetensors"), "type": "loras"},
            headers=JSON,
        )
        assert response.status == 201, await response.text()
        data = await asyncio.to_thread(
            next_message, prompt_server.messages, lambda e, d: e == "model-shelf.library-changed"
        )
        assert "loras" in data["types"]
        # the root is this install's choice: saved to its settings file, used at the next start
        new_root = str(comfy.base / "elsewhere")
        response = await client.put(
            "/api/model-shelf/settings", json={"root": new_root}, headers=JSON
        )
        view = await json_of(response)
        assert view["root_editable"] is True and view["pending_root"] == new_root
        saved = json.loads(settings_path(Path(comfy.folder_paths.get_user_directory())).read_text())
        assert saved == {"root": new_root}
    finally:
        await asyncio.to_thread(runtime.stop)


async def test_downloads_run_in_comfys_loop_and_report_over_the_websocket(
    comfy: Comfy, aiohttp_client: Any, tmp_path: Path, remote: RemoteServer
) -> None:
    loop = asyncio.get_running_loop()
    prompt_server = comfy.server.PromptServer(loop)  # as ComfyUI's main() makes it
    with Shelf.open(tmp_path / "library", quick_settings()) as shelf:
        api = attach(prompt_server, lambda: shelf, tmp_path / "user", ComfySettings())
        try:
            api.library_opened(shelf)
            client = await comfy_app(prompt_server, aiohttp_client)
            remote.serve("m.safetensors", write_model_file(tmp_path / "m.safetensors", 3 << 20))
            response = await client.post(
                "/api/model-shelf/downloads",
                json={"source": remote.url("m.safetensors"), "type": "vae"},
                headers=JSON,
            )
            task = await json_of(response)
            done = await asyncio.to_thread(
                next_message,
                prompt_server.messages,
                lambda e, d: (
                    e == "model-shelf.task" and d["task_id"] == task["id"] and d["state"] == "done"
                ),
            )
            assert done["model_name"] == "vae/m.safetensors"
            assert shelf.find("vae/m.safetensors").size == 3 << 20
        finally:
            await asyncio.to_thread(api.stop)


# -- issue #11 (and #15's last item): the browser-facing checks behind ComfyUI's server -----------


async def test_behind_comfyui_foreign_host_names_cross_site_and_form_posts_are_refused(
    comfy: Comfy, aiohttp_client: Any
) -> None:
    """ComfyUI mounts our routes on its own app (no middleware of ours): the checks travel
    with each handler, under ``/model-shelf`` and ``/api/model-shelf`` alike. The name in
    ComfyUI's ``--listen`` is answered."""
    args = load_stand_in("cli_args", comfy.base)
    args.args = cli_args.parse(["--listen", "127.0.0.1,comfy-box.lan"], "0.3.64")
    runtime = start(comfy.folder_paths, comfy.server, args)
    try:
        assert runtime.ready.wait(30) and runtime.shelf is not None
        client = await comfy_app(comfy.server.PromptServer.instance, aiohttp_client)
        for prefix in ("", "/api"):
            models = f"{prefix}/model-shelf/models"
            for host, status in (
                ("evil.example:8188", 403),  # a rebinding page's own name
                ("comfy-box.lan:8188", 200),  # --listen
                ("localhost:8188", 200),
                ("192.168.1.20:8188", 200),
            ):
                response = await client.get(models, headers={"Host": host})
                assert response.status == status, (prefix, host, await response.text())
                if status == 403:
                    assert (await json_of(response))["code"] == "HOST_NOT_ALLOWED"
            downloads = f"{prefix}/model-shelf/downloads"
            body = b'{"source": "https://example.com/m.safetensors"}'
            for headers, code in (
                ({**JSON, "Origin": "http://evil.example"}, "CROSS_SITE"),
                ({**JSON, "Origin": "null"}, "CROSS_SITE"),
                ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, "CROSS_SITE"),
                ({"Content-Type": "text/plain"}, "UNSUPPORTED_MEDIA_TYPE"),
                ({"Content-Type": "multipart/form-data; boundary=x"}, "UNSUPPORTED_MEDIA_TYPE"),
                ({**JSON, "Host": "evil.example"}, "HOST_NOT_ALLOWED"),
            ):
                response = await client.post(downloads, data=body, headers=headers)
                assert (await json_of(response))["code"] == code, (prefix, headers)
            peers = await client.get(
                f"{prefix}/model-shelf/peer/models", headers={"Host": "comfy-box.local"}
            )
            assert (await json_of(peers))["code"] == "PEER_REFUSED"  # exempt from Host
        assert runtime.shelf.downloads.list() == []
    finally:
        await asyncio.to_thread(runtime.stop)


async def test_the_pages_missing_models_fetch_is_held_to_public_addresses(
    comfy: Comfy, aiohttp_client: Any, tmp_path: Path, remote: RemoteServer
) -> None:
    """The page sends a workflow's model URL with ``origin: workflow``: on 127.0.0.1 it is
    refused unless allowed; the same URL added by the user (the add box) is fetched."""
    loop = asyncio.get_running_loop()
    prompt_server = comfy.server.PromptServer(loop)
    with Shelf.open(tmp_path / "library", quick_settings()) as shelf:
        api = attach(prompt_server, lambda: shelf, tmp_path / "user", ComfySettings())
        try:
            api.library_opened(shelf)
            client = await comfy_app(prompt_server, aiohttp_client)
            served = remote.serve(
                "m.safetensors", write_model_file(tmp_path / "m.safetensors", 4096)
            )

            async def add(origin: str) -> dict[str, Any]:
                response = await client.post(
                    "/api/model-shelf/downloads",
                    json={"source": remote.url("m.safetensors"), "type": "vae", "origin": origin},
                    headers=JSON,
                )
                assert response.status == 201, await response.text()
                return await json_of(response)

            def ended(task_id: str, state: str) -> Any:
                return next_message(
                    prompt_server.messages,
                    lambda e, d: (
                        e == "model-shelf.task" and d["task_id"] == task_id and d["state"] == state
                    ),
                )

            task = await add("workflow")
            assert task["origin"] == "workflow"
            failed = await asyncio.to_thread(ended, task["id"], "failed")
            assert failed["error_code"] == "FETCH_REFUSED"
            assert "MODEL_SHELF_ALLOWED_FETCH_HOSTS" in failed["message"]
            assert served.requests == []
            again = await add("user")
            assert again["id"] == task["id"] and again["origin"] == "user"
            await asyncio.to_thread(ended, task["id"], "done")
            assert shelf.find("vae/m.safetensors").size == 4096
        finally:
            await asyncio.to_thread(api.stop)
