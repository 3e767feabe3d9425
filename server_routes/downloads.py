"""``/model-shelf/downloads``: add (any source form), list, pause/resume/cancel/retry, one or
all. Progress itself is pushed as ``model-shelf.task`` events (see `events`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from ..library import Shelf
from ..library.downloads import DownloadTask, TaskOrigin
from .context import RouteContext
from .guard import read_json
from .paths import PREFIX
from .responses import json_data, json_model, json_text, query_params
from .schemas import DownloadAdd, EmptyBody, TaskPage, TaskPageQuery, TaskView

ACTIONS = "pause|resume|cancel|retry"

_ONE: dict[str, Callable[[Shelf, str], DownloadTask]] = {
    "pause": lambda shelf, task_id: shelf.downloads.pause(task_id),
    "resume": lambda shelf, task_id: shelf.downloads.resume(task_id),
    "cancel": lambda shelf, task_id: shelf.downloads.cancel(task_id),
    "retry": lambda shelf, task_id: shelf.retry_download(task_id),
}
_ALL: dict[str, Callable[[Shelf], list[DownloadTask]]] = {
    "pause": lambda shelf: shelf.downloads.pause_all(),
    "resume": lambda shelf: shelf.downloads.resume_all(),
    "cancel": lambda shelf: shelf.downloads.cancel_all(),
    "retry": lambda shelf: shelf.downloads.resume_all(),  # paused and failed ones
}


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The download routes, bound to ``ctx``."""

    def view(task: DownloadTask, seq: int) -> TaskView:
        return TaskView.of(task, ctx.events.live(task.id), seq)

    in_flight: dict[tuple[int, int], asyncio.Future[str]] = {}

    async def list_tasks(request: web.Request) -> web.Response:
        """``?offset=&limit=``: a page of tasks, unfinished first (see `TaskPage`).

        Read and serialised off the loop. Requests for a page already being read share that
        read: a hundred open sidebars cost one read, not a hundred queued in front of every
        other request (the page's ``seq`` still tells each which events are newer).
        """
        query = TaskPageQuery.model_validate(query_params(request))
        shelf = ctx.shelf()
        key = (query.offset, query.limit)
        pending = in_flight.get(key)
        if pending is None:
            seq = ctx.events.sequence()

            def page() -> str:
                tasks, total = shelf.downloads.page(query.offset, query.limit)
                items = [view(t, seq) for t in tasks]
                return TaskPage(
                    total=total, offset=query.offset, limit=query.limit, items=items
                ).model_dump_json()

            pending = asyncio.ensure_future(ctx.run(page))
            in_flight[key] = pending
            pending.add_done_callback(lambda _: in_flight.pop(key, None))
        return json_text(await asyncio.shield(pending))

    async def add_task(request: web.Request) -> web.Response:
        """``{"source", "type"?, "name"?, "sha256"?, "priority"?, "origin"?}``. Answers the task (an
        existing one for the same source, or a ``done`` one if the library has the model)."""
        body = await read_json(request, DownloadAdd)
        seq = ctx.events.sequence()
        task = await ctx.run(
            ctx.shelf().downloads.add,
            body.source,
            body.type or None,
            body.name,
            body.sha256 or None,
            body.priority,
            TaskOrigin(body.origin),
        )
        return json_model(view(task, seq), status=201)

    async def get_task(request: web.Request) -> web.Response:
        seq = ctx.events.sequence()
        task = await ctx.run(ctx.shelf().downloads.get, request.match_info["id"])
        return json_model(view(task, seq))

    async def act_on_one(request: web.Request) -> web.Response:
        await read_json(request, EmptyBody)
        shelf = ctx.shelf()
        act = _ONE[request.match_info["action"]]
        seq = ctx.events.sequence()
        task = await ctx.run(act, shelf, request.match_info["id"])
        return json_model(view(task, seq))

    async def act_on_all(request: web.Request) -> web.Response:
        await read_json(request, EmptyBody)
        shelf = ctx.shelf()
        seq = ctx.events.sequence()
        tasks = await ctx.run(_ALL[request.match_info["action"]], shelf)
        return json_data([view(t, seq).model_dump(mode="json") for t in tasks])

    return [
        web.get(f"{PREFIX}/downloads", list_tasks),
        web.post(f"{PREFIX}/downloads", add_task),
        web.post(f"{PREFIX}/downloads/all/{{action:{ACTIONS}}}", act_on_all),
        web.get(f"{PREFIX}/downloads/{{id}}", get_task),
        web.post(f"{PREFIX}/downloads/{{id}}/{{action:{ACTIONS}}}", act_on_one),
    ]
