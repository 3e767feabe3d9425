"""Errors -> HTTP answers, in one place: every handler is wrapped by `json_errors`.

Library errors keep their stable ``code``; this module only chooses the status for it. Bodies
are always JSON ``{"code": ..., "message": ...}``. Anything unexpected is a 500 with code
``INTERNAL``, logged with its traceback (bad input must never get there: the route tests and
the fuzz run check that).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from ..library.errors import RateLimitedError, ShelfError

log = logging.getLogger("model_shelf.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorCounter = Callable[[str], None]

STATUS_BY_CODE: dict[str, int] = {
    # the request itself
    "INVALID_REQUEST": 422,
    "UNSAFE_NAME": 400,
    "UNKNOWN_TYPE": 400,
    "INVALID_SOURCE": 400,
    "INSECURE_URL": 400,
    "UNSUPPORTED_MODE": 400,
    "UNSUPPORTED": 400,
    "CONFIRMATION_REQUIRED": 400,
    "INVALID_SIZE": 400,
    "BAD_SETTINGS": 400,
    "CROSS_SITE": 403,
    "HOST_NOT_ALLOWED": 403,
    "RATE_LIMITED": 429,
    "FETCH_REFUSED": 403,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "TOO_LARGE": 413,
    # what it names
    "MODEL_NOT_FOUND": 404,
    "TASK_NOT_FOUND": 404,
    "SOURCE_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "AMBIGUOUS_MODEL": 409,
    "NAME_EXISTS": 409,
    "BUSY": 409,
    # content
    "NOT_A_MODEL": 422,
    "CORRUPT_FILE": 422,
    "HASH_MISMATCH": 422,
    "BAD_RECORD": 422,
    "UNSAFE_RECORD": 422,
    # credentials and remotes
    "AUTH_REQUIRED": 403,
    "REMOTE_ERROR": 502,
    "OFFLINE": 502,
    "HOST_UNAVAILABLE": 503,
    "CANCELLED": 409,
    # the team (issue #13)
    "STORE_NOT_FOUND": 404,
    "STORE_AUTH": 403,
    "STORE_ERROR": 502,
    "PEER_REFUSED": 403,
    # the server side
    "STORAGE_FULL": 507,
    "ROOT_UNAVAILABLE": 503,
    "NOT_READY": 503,
    "INDEX_ERROR": 500,
    "STATE_ERROR": 500,
    "INTERNAL": 500,
}
"""A library error's stable code -> the HTTP status it is answered with (else 400)."""

# aiohttp's own refusals (a route it has not, a method it does not serve, a body over
# client_max_size) -> our codes, so that every answer under /model-shelf/ has the same shape.
_HTTP_CODES = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def error_response(
    code: str, message: str, status: int | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """The JSON answer for one error."""
    return web.json_response(
        {"code": code, "message": message},
        status=status or STATUS_BY_CODE.get(code, 400),
        headers=headers,
    )


def validation_message(exc: ValidationError) -> str:
    """Where and what, without echoing the input back (it may be a secret or megabytes)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts) or "invalid request"


def json_errors(handler: Handler, count_error: ErrorCounter | None = None) -> Handler:
    """Wrap ``handler`` so that every failure is answered as JSON with the right status."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        headers: dict[str, str] | None = None
        try:
            return await handler(request)
        except RateLimitedError as exc:
            code, message = exc.code, exc.message
            headers = {"Retry-After": str(math.ceil(exc.retry_after_seconds))}
        except ShelfError as exc:
            code, message = exc.code, exc.message
        except ValidationError as exc:
            code, message = "INVALID_REQUEST", validation_message(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and the like are answers, not errors
            code = _HTTP_CODES.get(exc.status, "INVALID_REQUEST")
            if count_error is not None:
                count_error(code)
            return error_response(code, exc.reason, exc.status)
        except Exception:  # the one catch-all: log the traceback, answer 500, keep serving
            log.exception("Model Shelf API: %s %s failed", request.method, request.path)
            code, message = "INTERNAL", "internal error; the server log has the details"
        if count_error is not None:
            count_error(code)
        return error_response(code, message, headers=headers)

    wrapped.__name__ = getattr(handler, "__name__", "handler")
    wrapped.__doc__ = handler.__doc__
    return wrapped
