"""``/model-shelf/metadata`` and ``/model-shelf/models/{id}/metadata|thumbnail|update``: what
Civitai and Hugging Face say about each model (issue #12), the grid's summaries, lookups on
request, the user's own values, and "download the newer version"."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import Field

from ..library.enrich.previews import thumbnail_path
from ..library.errors import ModelNotFoundError
from ..library.metadata import ModelMetadata, UserMetadata
from .context import RouteContext
from .guard import read_json
from .paths import PREFIX
from .responses import json_data, json_model, json_text
from .schemas import Body, Id, Label, TaskView


class EnrichRequest(Body):
    """``{"ids"?: [...], "refresh"?: false}``: no ids means every model."""

    ids: list[Id] = Field(default_factory=list, max_length=10_000)
    refresh: bool = False


class MetadataEdit(Body):
    """The user's own values; null clears one (the source's value shows again)."""

    base_model: Label | None = None
    trained_words: list[Label] | None = Field(None, max_length=100)
    page_url: Label | None = None
    source_url: Label | None = None


def summary(model_id: str, model_type: str, name: str, raw: str | None) -> dict[str, Any]:
    """One grid card: what the sidebar shows without opening the model."""
    metadata = ModelMetadata.model_validate(json.loads(raw)) if raw else ModelMetadata()
    view = metadata.view()
    return {
        "id": model_id,
        "type": model_type,
        "name": name,
        "status": view.status,
        "message": view.message,
        "trust": view.trust.value if view.trust else None,
        "title": view.model_name,
        "version": view.version_name,
        "base_model": view.base_model,
        "trained_words": view.trained_words,
        "page_url": view.page_url,
        "update": view.newer_version.name or view.newer_version.source
        if view.newer_version
        else None,
        "thumbnail": f"{PREFIX}/models/{model_id}/thumbnail"
        if metadata.preview and metadata.preview.thumbnail
        else None,
    }


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The metadata routes, bound to ``ctx``."""

    async def grid(request: web.Request) -> web.Response:
        """Every model's card, and the base models with counts (the grid's filter)."""
        shelf = ctx.shelf()

        def work() -> str:
            cards = [summary(*row) for row in shelf.index.metadata_summaries()]
            bases = Counter(c["base_model"] for c in cards if c["base_model"])
            return json.dumps({"models": cards, "base_models": dict(sorted(bases.items()))})

        return json_text(await ctx.run(work))

    async def get_metadata(request: web.Request) -> web.Response:
        shelf = ctx.shelf()
        return json_model(await ctx.run(shelf.metadata, request.match_info["id"]))

    async def put_metadata(request: web.Request) -> web.Response:
        body = await read_json(request, MetadataEdit)
        shelf = ctx.shelf()
        user = UserMetadata.model_validate(body.model_dump())
        view = await ctx.run(shelf.edit_metadata, request.match_info["id"], user)
        return json_model(view)

    async def enrich(request: web.Request) -> web.Response:
        """Look the models up now (cached answers first): the run's report."""
        body = await read_json(request, EnrichRequest)
        shelf = ctx.shelf()
        report = await ctx.run_long(shelf.enrich_ids, body.ids, body.refresh)
        ctx.events.library_changed([])
        return json_data(report.to_dict())

    async def thumbnail(request: web.Request) -> web.StreamResponse:
        shelf = ctx.shelf()

        def work() -> Path:
            path = thumbnail_path(shelf.layout, shelf.get(request.match_info["id"]))
            if not path.is_file():
                raise ModelNotFoundError("no thumbnail for this model yet")
            return path

        return web.FileResponse(
            await ctx.run(work),
            headers={"Cache-Control": "max-age=3600", "Content-Type": "image/webp"},
        )

    async def update(request: web.Request) -> web.Response:
        """Queue the newer Civitai version of the model (the download queue's task)."""
        shelf = ctx.shelf()
        seq = ctx.events.sequence()
        task = await ctx.run(shelf.queue_update, request.match_info["id"])
        return json_model(TaskView.of(task, ctx.events.live(task.id), seq), status=201)

    return [
        web.get(f"{PREFIX}/metadata", grid),
        web.post(f"{PREFIX}/metadata/enrich", enrich),
        web.get(f"{PREFIX}/models/{{id}}/metadata", get_metadata),
        web.put(f"{PREFIX}/models/{{id}}/metadata", put_metadata),
        web.get(f"{PREFIX}/models/{{id}}/thumbnail", thumbnail),
        web.post(f"{PREFIX}/models/{{id}}/update", update),
    ]
