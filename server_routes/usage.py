"""``/model-shelf/usage``: model usage from ComfyUI's runs, and the advice built on it: what to
remove to free space (a dry run, then one confirmed action), what to preload, and the closest
library models for a missing one (issue #14)."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from ..library.errors import ConfirmationRequiredError, ModelNotFoundError
from ..library.units import parse_size
from .context import RouteContext
from .guard import read_json
from .paths import PREFIX
from .responses import json_data, json_model, json_text
from .schemas import Body


class CleanupBody(Body):
    """``POST /model-shelf/usage/cleanup``."""

    free: int | str
    """Bytes, or a size such as ``"50GiB"``."""
    confirm: bool = False
    ids: list[str] | None = Field(default=None, max_length=10000)
    """Only these items of the plan (default: all of it)."""


class PreloadBody(Body):
    """``POST /model-shelf/usage/preload``: ``{"name": "type/name"}`` of one suggestion."""

    name: str


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The usage routes, bound to ``ctx``."""

    async def usage(request: web.Request) -> web.Response:
        shelf = ctx.shelf()
        return json_text(await ctx.run(lambda: shelf.usage().model_dump_json()))

    async def cleanup_plan(request: web.Request) -> web.Response:
        target = parse_size(request.query.get("free", "0"))
        return json_model(await ctx.run(ctx.shelf().cleanup_plan, target))

    async def cleanup(request: web.Request) -> web.Response:
        body = await read_json(request, CleanupBody)
        if not body.confirm:
            raise ConfirmationRequiredError(
                "cleanup removes model files (their records stay, to fetch them again); send "
                '{"confirm": true} to do it'
            )
        result = await ctx.run_long(ctx.shelf().cleanup, parse_size(body.free), body.ids)
        ctx.events.library_changed([name.split("/", 1)[0] for name in result.archived])
        return json_model(result)

    async def preload_list(request: web.Request) -> web.Response:
        found = await ctx.run(ctx.shelf().preload_suggestions)
        return json_data([s.model_dump(mode="json") for s in found])

    async def preload(request: web.Request) -> web.Response:
        body = await read_json(request, PreloadBody)
        shelf = ctx.shelf()

        def fetch() -> str:
            for suggestion in shelf.preload_suggestions():
                if suggestion.name == body.name:
                    return shelf.preload(suggestion).id
            raise ModelNotFoundError(f"{body.name!r} is not a preload suggestion")

        return json_data({"task_id": await ctx.run(fetch)}, 202)

    async def alternatives(request: web.Request) -> web.Response:
        model_type = request.query.get("type", "")
        name = request.query.get("name", "")
        context = request.query.getall("context", [])
        found = await ctx.run(ctx.shelf().alternatives, model_type, name, context)
        return json_data([a.model_dump(mode="json") for a in found])

    return [
        web.get(f"{PREFIX}/usage", usage),
        web.get(f"{PREFIX}/usage/cleanup", cleanup_plan),
        web.post(f"{PREFIX}/usage/cleanup", cleanup),
        web.get(f"{PREFIX}/usage/preload", preload_list),
        web.post(f"{PREFIX}/usage/preload", preload),
        web.get(f"{PREFIX}/alternatives", alternatives),
    ]
