"""``/model-shelf/health``: the health report, disk usage, and the one-click fixes (verify,
repair, dedupe, purge ghosts, clean)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from aiohttp import web

from ..library import Shelf
from .context import RouteContext
from .guard import read_json
from .paths import PREFIX
from .responses import json_data, json_model, json_text
from .schemas import (
    DedupeRequest,
    EmptyBody,
    PurgeRequest,
    RepairRequest,
    SweepRequest,
    VerifyRequest,
)

VERIFY_ALL = "verification of the whole library"


def _verify(shelf: Shelf, ids: list[str]) -> list[dict[str, Any]]:
    names = [shelf.get(model_id).display() for model_id in ids]
    return [{**asdict(r), "health": r.health.value} for r in shelf.verify(names)]


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The health routes, bound to ``ctx``."""

    async def report(request: web.Request) -> web.Response:
        """Every section with its count, items and fix (`HealthReport`), from the counts the
        index keeps and the last sweep's figures: a few rows read, at any library size."""
        shelf = ctx.shelf()
        return json_text(await ctx.run(lambda: shelf.health().model_dump_json()))

    sweeping: list[asyncio.Future[str]] = []

    async def sweep(request: web.Request) -> web.Response:
        """``{}``: stat every file and look for left-overs, then the report (seconds on a large
        library; the sidebar's "Check files"). A write, not a GET: another site cannot start
        it, and the rate limit bounds it. Requests while one runs share its answer."""
        await read_json(request, SweepRequest)
        if not sweeping:
            shelf = ctx.shelf()
            running = asyncio.ensure_future(
                ctx.run_long(lambda: shelf.health(sweep=True).model_dump_json())
            )
            sweeping.append(running)
            running.add_done_callback(lambda _: sweeping.clear())
        return json_text(await asyncio.shield(sweeping[0]))

    async def disk(request: web.Request) -> web.Response:
        return json_model(await ctx.run(ctx.shelf().disk_usage))

    async def duplicates(request: web.Request) -> web.Response:
        groups = await ctx.run(ctx.shelf().duplicates)
        return json_data([g.model_dump(mode="json") for g in groups])

    async def verify(request: web.Request) -> web.Response:
        """``{"ids": [...]}``: re-hash those models now and answer the verdicts. No ids: verify
        the whole library in the background (202); changes are announced as events."""
        body = await read_json(request, VerifyRequest)
        shelf = ctx.shelf()
        if body.ids:
            results = await ctx.run_long(_verify, shelf, body.ids)
            ctx.events.library_changed({r["model"].split("/", 1)[0] for r in results})
            return json_data(results)
        if shelf.hasher is not None and shelf.hasher.running:
            requested = await ctx.run(shelf.hasher.request_pass)
            return json_data({"started": True, "requested_at": requested.isoformat()}, 202)
        ctx.jobs.start(
            VERIFY_ALL,
            lambda: shelf.verify(),
            ctx.run_later,
            done=lambda: ctx.events.library_changed([]),
        )
        return json_data({"started": True}, 202)

    async def repair(request: web.Request) -> web.Response:
        """``{"ids": [...]}`` or ``{"all": true}``: queue downloads of broken models again."""
        body = await read_json(request, RepairRequest)
        results = await ctx.run_long(ctx.shelf().start_repairs, body.ids, all_broken=body.all)
        return json_data([asdict(r) for r in results])

    async def dedupe(request: web.Request) -> web.Response:
        """Without ``apply``: the groups that would be merged. With it: merge them."""
        body = await read_json(request, DedupeRequest)
        shelf = ctx.shelf()
        if not body.apply:
            groups = await ctx.run(shelf.duplicates)
            return json_data([g.model_dump(mode="json") for g in groups])
        result = await ctx.run_long(shelf.dedupe, set(body.keep) or None)
        ctx.events.library_changed([])
        return json_data(asdict(result))

    async def purge_ghosts(request: web.Request) -> web.Response:
        body = await read_json(request, PurgeRequest)
        names = set(body.names) if body.names is not None else None
        purged = await ctx.run_long(ctx.shelf().purge_ghosts, names)
        ctx.events.library_changed({n.split("/", 1)[0] for n in purged})
        return json_data({"purged": purged})

    async def clean(request: web.Request) -> web.Response:
        await read_json(request, EmptyBody)
        result = await ctx.run_long(ctx.shelf().clean)
        return json_data(asdict(result))

    return [
        web.get(f"{PREFIX}/health", report),
        web.post(f"{PREFIX}/health/sweep", sweep),
        web.get(f"{PREFIX}/health/disk", disk),
        web.get(f"{PREFIX}/health/duplicates", duplicates),
        web.post(f"{PREFIX}/health/verify", verify),
        web.post(f"{PREFIX}/health/repair", repair),
        web.post(f"{PREFIX}/health/dedupe", dedupe),
        web.post(f"{PREFIX}/health/purge-ghosts", purge_ghosts),
        web.post(f"{PREFIX}/health/clean", clean),
    ]
