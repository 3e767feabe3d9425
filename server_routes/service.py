"""``/model-shelf/healthz``, ``/model-shelf/metrics`` (Prometheus text) and
``/model-shelf/stats`` (the same numbers as JSON, for the sidebar)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ..library import Shelf
from . import metrics
from .context import RouteContext
from .paths import PREFIX
from .responses import json_data


def _numbers(shelf: Shelf) -> dict[str, Any]:
    """What both metrics and stats report, read in one go (SQLite: call off the loop)."""
    tasks = shelf.downloads.counts()
    by_type = shelf.index.bytes_by_type()
    hasher = shelf.hasher
    return {
        "models": shelf.index.count(),
        "models_by_health": shelf.index.count_by("health"),
        "types": {t: {"models": n, "bytes": b or 0} for t, (n, b) in sorted(by_type.items())},
        "bytes": sum(b or 0 for _, b in by_type.values()),
        "tasks": dict(sorted(tasks.items())),
        "bytes_hashed": hasher.status().bytes_hashed if hasher is not None else 0,
    }


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The service routes, bound to ``ctx``."""

    async def healthz(request: web.Request) -> web.Response:
        """200 once the library is open and its index answers; 503 (``NOT_READY``) before."""
        shelf = ctx.shelf()
        models = await ctx.run(shelf.index.count)
        return json_data({"status": "ok", "models": models, "root": str(shelf.root)})

    async def prometheus(request: web.Request) -> web.Response:
        numbers = await ctx.run(_numbers, ctx.shelf())
        text = metrics.render(
            ctx.metrics,
            numbers["tasks"],
            numbers["models"],
            numbers["models_by_health"],
            numbers["bytes_hashed"],
        )
        return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def stats(request: web.Request) -> web.Response:
        shelf = ctx.shelf()
        numbers = await ctx.run(_numbers, shelf)
        downloaded, api_errors, failures = ctx.metrics.snapshot()
        return json_data(
            {
                **numbers,
                "root": str(shelf.root),
                "bytes_downloaded": downloaded,
                "api_errors": api_errors,
                "download_failures": failures,
                "uptime_seconds": round(time.time() - ctx.metrics.started_at, 3),
            }
        )

    return [
        web.get(f"{PREFIX}/healthz", healthz),
        web.get(f"{PREFIX}/metrics", prometheus),
        web.get(f"{PREFIX}/stats", stats),
    ]
