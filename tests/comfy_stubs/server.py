"""Stand-in for ComfyUI's ``server`` module: just the `PromptServer` surface custom nodes use.

Mirrors ComfyUI 0.3.64 (commit 637221995f7424a561bd825de3e61ea117dfe1e3, ``server.py``):
``PromptServer.instance`` is set by the constructor; ``routes`` is an aiohttp ``RouteTableDef``
that custom nodes decorate at import time (ComfyUI later mounts each route twice, as is and
under ``/api``); ``send_sync(event, data, sid=None)`` may be called from any thread and hands
the message to the event loop; ``add_on_prompt_handler(fn)`` handlers see each submitted prompt
(``trigger_on_prompt`` runs them in order; a failing handler is logged and skipped).
The constructor also makes ``prompt_queue`` (``execution.PromptQueue(self)``, so it exists when
node packs are imported), ``client_id`` and ``last_node_id`` (set by the executor while it
runs a prompt); ``queue_updated`` sends ``status`` (here without the queue counts).
``post_prompt`` is the ``/prompt`` handler's body without HTTP: on-prompt handlers, validation,
then ``prompt_queue.put((number, prompt_id, prompt, extra_data, outputs_to_execute))`` (the
newest ComfyUI adds a sixth element, the sensitive extra data: ``sensitive=True``).

Difference, for tests: without a loop, ``send_sync`` puts messages on a thread-safe queue that
tests read with a timeout (the real one puts them on an asyncio queue drained by the loop).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import queue
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web


class PromptServer:
    instance: PromptServer

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        PromptServer.instance = self
        self.loop = loop
        self.routes = web.RouteTableDef()
        self.on_prompt_handlers: list[Callable[[dict[str, Any]], dict[str, Any]]] = []
        self.messages: queue.Queue[tuple[str, Any, str | None]] = queue.Queue()
        self.prompt_queue = _execution().PromptQueue(self)
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.number = 0

    def queue_updated(self) -> None:
        self.send_sync("status", {"status": {}})

    def post_prompt(
        self, json_data: dict[str, Any], mappings: Any, sensitive: bool = False
    ) -> dict[str, Any]:
        """What ``POST /prompt`` does with a body (its JSON answer, or the error's)."""
        execution = _execution()
        json_data = self.trigger_on_prompt(json_data)
        number = self.number
        self.number += 1
        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        valid = execution.validate_prompt(prompt, mappings)
        extra_data = json_data.get("extra_data", {})
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if not valid.valid:
            return {"error": valid.error, "node_errors": valid.node_errors}
        item: tuple[Any, ...] = (number, prompt_id, prompt, extra_data, valid.outputs)
        if sensitive:
            item = (*item, {})
        self.prompt_queue.put(item)
        return {"prompt_id": prompt_id, "number": number, "node_errors": valid.node_errors}

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.messages.put_nowait, (event, data, sid))
        else:
            self.messages.put_nowait((event, data, sid))

    def add_on_prompt_handler(self, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data: dict[str, Any]) -> dict[str, Any]:
        for handler in self.on_prompt_handlers:
            try:
                json_data = handler(json_data)
            except Exception:
                logging.warning("[ERROR] An error occurred during the on_prompt_handler processing")
                logging.warning(traceback.format_exc())
        return json_data

    def add_routes_to(self, app: web.Application) -> None:
        """Mount ``routes`` as ComfyUI does: each non-static route also under ``/api``."""
        api_routes = web.RouteTableDef()
        for route in self.routes:
            if isinstance(route, web.RouteDef):
                api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
        app.add_routes(api_routes)
        app.add_routes(self.routes)


def _execution() -> Any:
    """The ``execution`` stand-in beside this file (ComfyUI's server imports its own)."""
    import sys

    module = sys.modules.get("comfy_stubs.execution")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "comfy_stubs.execution", Path(__file__).with_name("execution.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["comfy_stubs.execution"] = module
        spec.loader.exec_module(module)
    return module
