"""``/model-shelf/workflows``: stamp a workflow with its models' metadata, or lock its exact
model set (issue #4).

Both take ``{"workflow": <JSON>}``: a workflow saved from the page (stamp, lock), an API
prompt or a ``/prompt`` body (lock). Nothing in the library changes: the answer carries the
stamped workflow or the lockfile, for the page (or a script) to save.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from .context import RouteContext
from .guard import read_body
from .paths import PREFIX
from .responses import json_model

MAX_WORKFLOW_BYTES = 32 * 1024 * 1024
"""Largest workflow taken: big graphs with embedded notes run to a few megabytes."""


class WorkflowBody(BaseModel):
    """``POST /model-shelf/workflows/{stamp,lock}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    workflow: dict[str, Any]


class StampView(BaseModel):
    workflow: dict[str, Any]
    """The stamped copy."""
    stamped: list[str]
    """``type/name`` of each model an entry was written for."""
    no_source: list[str]
    """Library models used but not stamped: no source to download them from."""
    not_in_library: list[str]


class LockView(BaseModel):
    lockfile: dict[str, Any]
    missing: list[str]
    """Models the workflow uses that the library does not have (not locked)."""


async def _read(request: web.Request) -> WorkflowBody:
    """Parse the body (a larger limit than other routes: workflows are big).

    Raises:
        `pydantic.ValidationError`: not ``{"workflow": {...}}`` (answered 422).
        `RequestTooLargeError`: over `MAX_WORKFLOW_BYTES`.
    """
    body = await read_body(request, MAX_WORKFLOW_BYTES)
    return WorkflowBody.model_validate_json(body or b"{}")


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The workflow routes, bound to ``ctx``."""

    async def stamp(request: web.Request) -> web.Response:
        body = await _read(request)
        report = await ctx.run(ctx.shelf().stamp_workflow, body.workflow)
        return json_model(
            StampView(
                workflow=report.workflow,
                stamped=report.stamped,
                no_source=report.no_source,
                not_in_library=report.not_in_library,
            )
        )

    async def lock(request: web.Request) -> web.Response:
        body = await _read(request)
        report = await ctx.run(ctx.shelf().lock_workflow, body.workflow)
        return json_model(
            LockView(lockfile=report.lockfile.model_dump(mode="json"), missing=report.missing)
        )

    return [
        web.post(f"{PREFIX}/workflows/stamp", stamp),
        web.post(f"{PREFIX}/workflows/lock", lock),
    ]
