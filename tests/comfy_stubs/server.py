"""Stand-in for ComfyUI's ``server`` module: just the `PromptServer` surface custom nodes use.

Mirrors ComfyUI 0.3.64 (commit 637221995f7424a561bd825de3e61ea117dfe1e3, ``server.py``):
``PromptServer.instance`` is set by the constructor; ``routes`` is an aiohttp ``RouteTableDef``
that custom nodes decorate at import time (ComfyUI later mounts each route twice, as is and
under ``/api``); ``send_sync(event, data, sid=None)`` may be called from any thread and hands
the message to the event loop; ``add_on_prompt_handler(fn)`` handlers see each submitted prompt
(``trigger_on_prompt`` runs them in order; a failing handler is logged and skipped).

Difference, for tests: without a loop, ``send_sync`` puts messages on a thread-safe queue that
tests read with a timeout (the real one puts them on an asyncio queue drained by the loop).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import traceback
from collections.abc import Callable
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
