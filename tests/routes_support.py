"""Helpers for the HTTP API tests (fixtures: ``pytest_plugins = ["routes_fixtures"]``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from loop_thread import LoopThread

JSON = {"Content-Type": "application/json"}
"""What the sidebar sends with every state-changing request."""


async def json_of(response: web.StreamResponse | Any) -> Any:
    """The JSON body, after checking it is JSON at all."""
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    return await response.json()


class EventReader:
    """Reads ``GET /model-shelf/events`` (Server-Sent Events) and waits for matching events."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def next(self) -> tuple[str, dict[str, Any]]:
        event, data = "message", ""
        while True:
            raw = await self.response.content.readline()
            if not raw:
                raise EOFError("the event stream ended")
            line = raw.decode().rstrip("\n")
            if line == "":
                if data:
                    item = (event, json.loads(data))
                    self.seen.append(item)
                    return item
                event = "message"
                continue
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]

    async def wait_for(
        self,
        predicate: Callable[[str, dict[str, Any]], bool],
        timeout: float = 30.0,
        *,
        seen: bool = False,
    ) -> dict[str, Any]:
        """The data of the first event from now on (with ``seen``: or already read) for which
        ``predicate`` is true."""
        if seen:
            for event, data in self.seen:
                if predicate(event, data):
                    return data

        async def scan() -> dict[str, Any]:
            while True:
                event, data = await self.next()
                if predicate(event, data):
                    return data

        return await asyncio.wait_for(scan(), timeout)

    def task(self, task_id: str, *states: str, timeout: float = 30.0, seen: bool = True) -> Any:
        """Wait for a ``model-shelf.task`` event of ``task_id`` in one of ``states`` (one read
        already counts, unless ``seen`` is false)."""
        return self.wait_for(
            lambda e, d: (
                e == "model-shelf.task" and d["task_id"] == task_id and d["state"] in states
            ),
            timeout,
            seen=seen,
        )


@contextlib.asynccontextmanager
async def open_events(client: Any) -> AsyncIterator[EventReader]:
    """An open event stream of ``client``'s server (closed on exit)."""
    response = await client.get("/api/model-shelf/events")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    try:
        yield EventReader(response)
    finally:
        response.close()


class ThreadedApp:
    """An aiohttp app served on 127.0.0.1 from a thread with its own loop, so that synchronous
    code (hypothesis, Playwright's sync API, urllib) can talk to it. ``with`` starts and stops
    it; stopping runs the app's cleanup (engine, API threads) in its loop."""

    def __init__(self, make_app: Callable[[], Awaitable[web.Application]], name: str) -> None:
        self.make_app = make_app
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._thread = LoopThread(name, self._start, self._cleanup)

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        return self

    async def _start(self) -> None:
        app = await self.make_app()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _cleanup(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def call(self, coro: Awaitable[Any], timeout: float = 30.0) -> Any:
        """Run ``coro`` in the app's loop and wait for its result."""
        return self._thread.call(coro, timeout)

    def __exit__(self, *exc_info: object) -> None:
        self._thread.stop(60)
