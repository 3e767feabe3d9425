"""``/model-shelf/models``: list and search, facets, detail, previews, edit, delete; and
``/model-shelf/types``, the type folders a model can go in."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..library import Shelf
from ..library.enrich.previews import existing_previews
from ..library.errors import ConfirmationRequiredError, ModelNotFoundError
from ..library.layout import MODEL_TYPES
from ..library.query import ModelQuery
from ..library.records import HashState, Health, ModelRecord
from .context import RouteContext
from .guard import read_json
from .paths import PREFIX
from .responses import json_data, json_model, json_text, query_params
from .schemas import ModelDelete, ModelDetail, ModelEdit


def preview_paths(shelf: Shelf, record: ModelRecord) -> list[Path]:
    """Preview images beside the model, in `PREVIEW_SUFFIXES` order (paths from the record
    only: nothing from a request is joined into them)."""
    return existing_previews(shelf.layout, record)


def status_of(record: ModelRecord) -> str:
    if record.health is not Health.OK:
        return record.health.value
    return "unverified" if record.hash_state is HashState.PENDING else "verified"


def detail(shelf: Shelf, record: ModelRecord) -> ModelDetail:
    """The detail answer for ``record`` (stats the preview files: call off the loop).

    Preview URLs are API routes (``/model-shelf/...``); the page turns them into addresses
    with ``api.apiURL``, as for any route.
    """
    previews = preview_paths(shelf, record)
    return ModelDetail(
        record=record.model_dump(mode="json"),
        path=str(shelf.model_path(record)),
        status=status_of(record),
        previews=[f"{PREFIX}/models/{record.id}/previews/{i}" for i in range(len(previews))],
    )


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The model routes, bound to ``ctx``."""

    async def list_models(request: web.Request) -> web.Response:
        """Search and list: ``?text=&type=&architecture=&tag=&status=&sort=&offset=&limit=``."""
        query = ModelQuery.model_validate(query_params(request))
        shelf = ctx.shelf()
        return json_text(await ctx.run(lambda: shelf.query_models(query).model_dump_json()))

    async def list_types(request: web.Request) -> web.Response:
        """``{"types": [...]}``: the library's type folders, less those this install hides.
        Answers before the library has opened (the list is the same for every library)."""
        return json_data({"types": [t for t in MODEL_TYPES if t not in ctx.hidden_types]})

    async def model_facets(request: web.Request) -> web.Response:
        """The values the filters can take, with counts."""
        shelf = ctx.shelf()
        return json_text(await ctx.run(lambda: shelf.facets().model_dump_json()))

    async def get_model(request: web.Request) -> web.Response:
        shelf = ctx.shelf()

        def work() -> str:
            return detail(shelf, shelf.get(request.match_info["id"])).model_dump_json()

        return json_text(await ctx.run(work))

    async def get_preview(request: web.Request) -> web.StreamResponse:
        shelf = ctx.shelf()
        number = request.match_info["number"]

        def work() -> Path:
            previews = preview_paths(shelf, shelf.get(request.match_info["id"]))
            if not number.isdigit() or int(number) >= len(previews):
                raise ModelNotFoundError(f"no preview {number[:20]!r} for this model")
            return previews[int(number)]

        return web.FileResponse(await ctx.run(work))

    async def edit_model(request: web.Request) -> web.Response:
        """Rename, set aliases, set tags: ``{"name"?, "aliases"?, "tags"?}``."""
        body = await read_json(request, ModelEdit)
        shelf = ctx.shelf()

        def work() -> ModelDetail:
            record = shelf.edit_model(
                request.match_info["id"], name=body.name, aliases=body.aliases, tags=body.tags
            )
            return detail(shelf, record)

        answer = await ctx.run_long(work)
        ctx.events.library_changed([answer.record["type"]])
        return json_model(answer)

    async def delete_model(request: web.Request) -> web.Response:
        """Delete a model's files and record together: ``{"confirm": true}``."""
        body = await read_json(request, ModelDelete)
        if not body.confirm:
            raise ConfirmationRequiredError(
                'deleting removes the model\'s files; send {"confirm": true} to do it'
            )
        record = await ctx.run_long(ctx.shelf().remove_model, request.match_info["id"])
        ctx.events.library_changed([record.type])
        return json_data({"removed": record.display(), "id": record.id})

    return [
        web.get(f"{PREFIX}/models", list_models),
        web.get(f"{PREFIX}/models/facets", model_facets),
        web.get(f"{PREFIX}/types", list_types),
        web.get(f"{PREFIX}/models/{{id}}", get_model),
        web.get(f"{PREFIX}/models/{{id}}/previews/{{number}}", get_preview),
        web.patch(f"{PREFIX}/models/{{id}}", edit_model),
        web.delete(f"{PREFIX}/models/{{id}}", delete_model),
    ]
