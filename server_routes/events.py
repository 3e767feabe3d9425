"""Pushing task progress and library changes to open pages.

One `EventHub` per server. Download progress (the engine's `ProgressBus`), library changes
(the watcher or change feed, and the API's own changes) and import progress are published to
it from any thread; it hands each event to its sinks:

- inside ComfyUI, ``PromptServer.instance.send_sync``: the page's websocket, heard with
  ``api.addEventListener("model-shelf.task", e => e.detail)``;
- for each open ``GET /model-shelf/events`` (Server-Sent Events, the standalone page's
  stand-in for that websocket), a queue drained by its handler.

Event names: ``model-shelf.task`` (a `ProgressEvent` as a dict), ``model-shelf.library-changed``
(``{"types": [...]}``), ``model-shelf.root`` (``{"available": bool}``), ``model-shelf.import``
(``{"name", "bytes_done", "total_bytes"}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from ..library.downloads import ProgressEvent
from ..library.downloads.tasks import TERMINAL_STATES
from .paths import PREFIX

if TYPE_CHECKING:
    from .context import RouteContext

log = logging.getLogger("model_shelf.api")

TASK = "model-shelf.task"
LIBRARY_CHANGED = "model-shelf.library-changed"
ROOT = "model-shelf.root"
IMPORT = "model-shelf.import"

SSE_QUEUE_EVENTS = 1000
"""Events one slow page may have waiting; older ones are dropped (it refreshes on reconnect)."""
SSE_KEEPALIVE_SECONDS = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""


class Sink(Protocol):
    def __call__(self, event: str, data: dict[str, Any]) -> None: ...


class EventHub:
    """Fan-out of events to sinks. `publish` may be called from any thread and never raises.

    Also a download `ProgressListener` (`on_progress`) and a library listener
    (`library_changed`, `root_changed`), so it can subscribe to each source directly.
    """

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._lock = threading.Lock()
        self._live: dict[str, dict[str, Any]] = {}
        self._sequence = 0
        self.closed = False

    def add_sink(self, sink: Sink) -> Callable[[], None]:
        """Send every event from now on to ``sink``; returns the function that removes it."""
        with self._lock:
            self._sinks.append(sink)

        def remove() -> None:
            with self._lock:
                if sink in self._sinks:
                    self._sinks.remove(sink)

        return remove

    def publish(self, event: str, data: dict[str, Any]) -> None:
        with self._lock:
            sinks = list(self._sinks)
        for sink in sinks:
            try:
                sink(event, data)
            except Exception:  # a sink's failure (a closed websocket) must not stop the others
                log.exception("Model Shelf: event sink %r failed on %s", sink, event)

    def close(self) -> None:
        """Tell every sink that can end (open event streams) to end."""
        self.closed = True
        with self._lock:
            sinks = list(self._sinks)
        for sink in sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()

    # -- sources -------------------------------------------------------------------------------

    def sequence(self) -> int:
        """The number of the latest task event. A task read from the store after this call is
        at least as new as every event up to it: the page keeps, of an answer and an event about
        one task, the one with the higher number (an answer may arrive after a newer event)."""
        with self._lock:
            return self._sequence

    def on_progress(self, event: ProgressEvent) -> None:
        """A download `ProgressListener`: publishes ``model-shelf.task`` with its ``seq``."""
        data = event.to_dict()
        with self._lock:
            self._sequence += 1
            data["seq"] = self._sequence
            if event.state in TERMINAL_STATES:
                self._live.pop(event.task_id, None)
            else:
                self._live[event.task_id] = data
        self.publish(TASK, data)
        if event.state.value == "done":
            self.publish(LIBRARY_CHANGED, {"types": [], "reason": "download"})

    def live(self, task_id: str) -> dict[str, Any] | None:
        """The latest progress of a running task (speed, ETA), if one was published."""
        with self._lock:
            return self._live.get(task_id)

    def library_changed(self, types: Iterable[str]) -> None:
        self.publish(LIBRARY_CHANGED, {"types": sorted(types)})

    def root_changed(self, available: bool) -> None:
        self.publish(ROOT, {"available": available})


class EventStream:
    """One open Server-Sent Events response: a sink whose events wait in a bounded queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        self._threadsafe(self._put, (event, data))

    def close(self) -> None:
        self._threadsafe(self._put, None)

    def _threadsafe(self, fn: Callable[..., None], *args: object) -> None:
        if not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing: nobody listens
                self.loop.call_soon_threadsafe(fn, *args)

    def _put(self, item: tuple[str, dict[str, Any]] | None) -> None:
        if item is not None and self.queue.qsize() >= SSE_QUEUE_EVENTS:
            self.queue.get_nowait()  # a page that cannot keep up loses the oldest
        self.queue.put_nowait(item)


def encode(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event (JSON has no raw newlines, so ``data`` is one line)."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def serve_events(request: web.Request, hub: EventHub) -> web.StreamResponse:
    """``GET /model-shelf/events``: every hub event as Server-Sent Events, until the client
    leaves or the server stops."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # reverse proxies: do not hold events back
        }
    )
    await response.prepare(request)
    stream = EventStream(asyncio.get_running_loop())
    remove = hub.add_sink(stream)
    try:
        await response.write(b"retry: 2000\n: connected\n\n")
        while not hub.closed:
            try:
                item = await asyncio.wait_for(stream.queue.get(), SSE_KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            await response.write(encode(*item))
    except ConnectionError:
        pass  # the page went away (closed, reloaded): nothing to answer
    finally:
        remove()
    return response


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """``GET /model-shelf/events``, bound to ``ctx``."""

    async def stream(request: web.Request) -> web.StreamResponse:
        return await serve_events(request, ctx.events)

    return [web.get(f"{PREFIX}/events", stream)]
