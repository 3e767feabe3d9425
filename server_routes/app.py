"""Putting the route tables together: on ComfyUI's ``PromptServer`` routes (`mount`), or on an
aiohttp app of our own that also serves the sidebar as a page (`standalone_app`, for ``serve``).

Every handler is wrapped the same way, wherever it is mounted (ComfyUI's app takes no
middleware from a node pack): every request's ``Host`` must be one the API answers to
(`guard.AllowedHosts`), state-changing methods then take a token from the client's rate
limit (`ratelimit.RateLimiter`) and pass `guard.check_state_change`, and every failure becomes
a JSON answer (`errors.json_errors`). The LAN peer routes (`guard.serves_peers`) skip the
first two: other machines reach them by this machine's LAN name, with their own checks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from ..library import Shelf
from ..library.errors import SettingsError
from . import (
    downloads,
    events,
    health,
    imports,
    metadata,
    models,
    service,
    settings,
    team,
    usage,
    workflows,
)
from .context import RouteContext, provide
from .errors import Handler, error_response, json_errors
from .guard import SAFE_METHODS, check_state_change, is_peer_route, is_upload, serves_peers
from .paths import API_PREFIX, PREFIX

log = logging.getLogger("model_shelf.api")

RESOURCES = (
    models,
    imports,
    downloads,
    health,
    settings,
    service,
    events,
    workflows,
    team,
    usage,
    metadata,  # issue #12
)
"""One module per resource, each with ``routes(ctx) -> list[web.RouteDef]``."""

PACKAGE_DIR = Path(__file__).resolve().parent.parent
WEB_DIR = PACKAGE_DIR / "web"
"""The sidebar (``WEB_DIRECTORY``): served by ComfyUI at ``/extensions/<folder>/``."""
STANDALONE_DIR = Path(__file__).resolve().parent / "standalone"
"""The page that hosts the sidebar without ComfyUI, and its ``scripts/app.js``/``api.js``."""
EXTENSION_PATH = "/extensions/model-shelf"

SHELF_KEY = web.AppKey("model_shelf.shelf", Shelf)
CONTEXT_KEY = web.AppKey("model_shelf.context", RouteContext)


def _guarded(handler: Handler, method: str, ctx: RouteContext) -> Handler:
    if is_peer_route(handler):
        return handler  # GET-only, checked by `Team.check_peer` (address and team token)
    writes = method not in SAFE_METHODS
    upload = is_upload(handler)

    async def guarded(request: web.Request) -> web.StreamResponse:
        ctx.hosts.check(request)
        if writes:
            # Another site's requests are refused before they can spend this client's tokens:
            # every local page shares 127.0.0.1's bucket, so they would lock the user out.
            check_state_change(request, upload=upload)
            ctx.limiter.take(request.remote or "unknown")
        return await handler(request)

    guarded.__name__ = getattr(handler, "__name__", "handler")
    return guarded


def route_table(ctx: RouteContext) -> list[web.RouteDef]:
    """Every route of the API, guarded and error-wrapped, bound to ``ctx``."""
    table = []
    for resource in RESOURCES:
        for route in resource.routes(ctx):
            handler = json_errors(
                _guarded(route.handler, route.method, ctx), ctx.metrics.count_error
            )
            if is_peer_route(route.handler):
                serves_peers(handler)  # the mark survives the wrapping (see `guard.serves_peers`)
            table.append(web.RouteDef(route.method, route.path, handler, route.kwargs))
    return table


def mount(routes: web.RouteTableDef, ctx: RouteContext) -> None:
    """Register the API on ComfyUI's ``PromptServer.instance.routes`` (ComfyUI serves each
    route again under ``/api`` when it builds its app).

    Without keyword arguments: ComfyUI copies each route with
    ``api_routes.route(method, "/api" + path)(handler, **kwargs)``, which fails on any.
    """
    for route in route_table(ctx):
        routes.route(route.method, route.path)(route.handler)


class Wiring:
    """While a library is open under the API: its download progress goes to the event hub and
    the metrics, repairs finish when their downloads end, and its watcher's changes (if it is
    watched) are announced."""

    def __init__(self, ctx: RouteContext, shelf: Shelf) -> None:
        self.ctx = ctx
        self.shelf = shelf
        self._undo: list[Callable[[], object]] = []

    def start(self) -> None:
        try:  # issue #11: the host names the library's settings allow
            allowed = self.shelf.stored_settings.limits().allowed_hosts or ()
        except SettingsError as exc:
            log.warning("Model Shelf: ignoring the stored allowed hosts: %s", exc)
            allowed = ()
        self.ctx.hosts.set_stored(allowed)
        subscribe = self.shelf.downloads.subscribe
        self._undo.append(subscribe(self.ctx.events.on_progress))
        self._undo.append(subscribe(self.ctx.metrics.on_progress))
        if not self.shelf.health_settings.auto_repair:  # else start_watching subscribed it
            self._undo.append(subscribe(self.shelf.repairer.on_progress))
        self.watch_changes()

    def watch_changes(self) -> None:
        """Announce the watcher's changes (call again after `Shelf.start_watching`)."""
        watcher = self.shelf.watcher
        if watcher is not None:
            self._undo.append(watcher.subscribe(self.ctx.events))

    def stop(self) -> None:
        while self._undo:
            self._undo.pop()()


@web.middleware
async def _json_refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's own 404/405 under the API's paths answered as JSON, like every error."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        api_path = request.path.startswith((PREFIX + "/", API_PREFIX + PREFIX + "/"))
        if exc.status < 400 or not api_path:
            raise
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "INVALID_REQUEST")
        return error_response(code, exc.reason, exc.status)


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STANDALONE_DIR / "index.html")


def standalone_app(
    shelf: Shelf,
    *,
    run_downloads: bool = True,
    watch: bool = False,
    ctx: RouteContext | None = None,
    host: str | None = None,
) -> web.Application:
    """The API on an app of its own, plus the sidebar as a page at ``/``, for ``serve``.

    Routes are served under ``/model-shelf/`` and, as ComfyUI does, under ``/api/model-shelf/``
    (where the page calls them). While the app runs, the download engine works in its loop
    (``run_downloads``) and the library is watched (``watch``); both stop at cleanup. The
    caller opens and closes ``shelf``.

    Args:
        shelf (`Shelf`): the open library.
        run_downloads (`bool`, *optional*): run the download engine in the app's loop.
        watch (`bool`, *optional*): keep the index current from file events meanwhile.
        ctx (`RouteContext`, *optional*): built here unless given (tests pass their own).
        host (`str`, *optional*): the address or name ``serve`` listens on (``--host``):
            requests naming it are answered (see `guard.AllowedHosts`).
    """
    ctx = ctx or RouteContext(provide(shelf), listen_hosts=(host,) if host else ())
    app = web.Application(middlewares=[_json_refusals])
    app[SHELF_KEY] = shelf
    app[CONTEXT_KEY] = ctx
    table = route_table(ctx)
    app.router.add_routes(table)
    app.router.add_routes(
        [web.RouteDef(r.method, API_PREFIX + r.path, r.handler, r.kwargs) for r in table]
    )
    app.router.add_get("/", _page)
    app.router.add_static("/scripts", STANDALONE_DIR / "scripts")
    app.router.add_static(EXTENSION_PATH, WEB_DIR)

    async def running(app: web.Application) -> AsyncIterator[None]:
        wiring = Wiring(ctx, shelf)
        wiring.start()
        engine: asyncio.Task[None] | None = None
        if run_downloads:
            engine = asyncio.create_task(shelf.downloads.run(), name="model-shelf-downloads")
        if watch:
            await ctx.run(shelf.start_watching)
            wiring.watch_changes()
            await ctx.run(shelf.start_enriching)  # issue #12: metadata in the background
        try:
            yield
        finally:
            ctx.events.close()
            if engine is not None:
                if shelf.downloads.engine.is_running:
                    await shelf.downloads.stop()
                else:  # not started yet (an app closed at once): `run` would forget a stop
                    engine.cancel()
                await asyncio.gather(engine, return_exceptions=True)
            await ctx.jobs.wait()
            wiring.stop()
            if watch:
                await ctx.run(shelf.stop_enriching)
                await ctx.run(shelf.stop_watching)
            await asyncio.get_running_loop().run_in_executor(None, ctx.close)

    async def end_streams(app: web.Application) -> None:
        ctx.events.close()  # open event streams end, so shutdown need not wait for them

    app.cleanup_ctx.append(running)
    app.on_shutdown.append(end_streams)
    return app
