"""Small helpers every route module uses to answer."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel


def json_model(model: BaseModel, status: int = 200) -> web.Response:
    """A pydantic model as the JSON answer (serialised by pydantic, in one pass)."""
    return web.Response(
        body=model.model_dump_json(), status=status, content_type="application/json"
    )


def json_text(text: str | bytes, status: int = 200) -> web.Response:
    """JSON already serialised (off the event loop, by the thread that built it: a page of
    100 models takes a millisecond to serialise, which the loop should not spend)."""
    return web.Response(body=text, status=status, content_type="application/json")


def json_data(data: Any, status: int = 200) -> web.Response:
    """Plain data (dicts, lists) as the JSON answer."""
    return web.json_response(data, status=status)


def query_params(request: web.Request) -> dict[str, str]:
    """The query string as a plain dict (a repeated key: its last value)."""
    return dict(request.query.items())
