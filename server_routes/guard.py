"""Refusing cross-site requests and foreign host names, and reading request bodies within limits.

A browser lets any web page send a "simple" request to ``127.0.0.1``: a form post (content type
``application/x-www-form-urlencoded``, ``multipart/form-data`` or ``text/plain``) or a bodiless
``fetch`` in ``no-cors`` mode, without asking the server first. ComfyUI refuses some of them
(only when ``Origin`` and ``Host`` differ on a loopback host; ``server.py``,
``create_origin_only_middleware``); a state-changing Model Shelf route refuses all of them
itself, whatever server it is mounted on:

- an ``Origin`` that is not this server's own origin (``Host``), or ``Sec-Fetch-Site`` saying
  ``cross-site`` or ``same-site`` (another port or subdomain is another application);
- any body type but ``application/json``, which no form can send and which makes a cross-site
  ``fetch`` ask first (a CORS preflight we never grant). The upload route takes
  ``application/octet-stream`` and then requires the ``X-Model-Shelf: 1`` header, which no
  form can set and a cross-site ``fetch`` cannot send without a preflight either.

Reads need a defence too: DNS rebinding. A page at ``http://evil.example:8188/`` can make its
own name resolve to 127.0.0.1 after it has loaded; its requests then reach this server as
same-origin, and it can read every answer. Such a request still carries the page's name in
``Host``, so every route (GET too; the LAN peer routes excepted) answers only to loopback
names, IP addresses, the name the server listens on and names the user allowed
(`AllowedHosts`): anything else is ``HOST_NOT_ALLOWED``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel

from ..library.downloads.addresses import is_ip_address
from ..library.errors import (
    CrossSiteRequestError,
    HostNotAllowedError,
    RequestTooLargeError,
    UnsupportedMediaTypeError,
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_TYPE = "application/json"
UPLOAD_TYPE = "application/octet-stream"
UPLOAD_HEADER = "X-Model-Shelf"
MAX_JSON_BYTES = 256 * 1024
"""Largest JSON body any route takes: enough for a list of thousands of ids, no more."""
_ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})
"""``none``: the user's own action (typed address, bookmark); never sent by another site."""

M = TypeVar("M", bound=BaseModel)
H = TypeVar("H", bound=Callable[..., Any])


def _default_port(scheme: str) -> int | None:
    return {"http": 80, "https": 443}.get(scheme)


def same_origin(request: web.Request) -> bool:
    """True unless the request says it comes from another site.

    A request without ``Origin`` and ``Sec-Fetch-Site`` (curl, scripts, old browsers on a
    same-origin GET) passes: a browser always sends ``Origin`` on a cross-origin POST.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() not in _ALLOWED_FETCH_SITES:
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == "null":  # sandboxed frames, file:// pages, some redirects: never ours
        return False
    parsed = urlsplit(origin)
    host = urlsplit("//" + request.host)
    try:
        origin_port = parsed.port or _default_port(parsed.scheme)
        host_port = host.port or _default_port(request.scheme)
    except ValueError:  # a port that is not a number
        return False
    return (
        parsed.scheme in ("http", "https")
        and (parsed.hostname or "").lower() == (host.hostname or "").lower()
        and origin_port == host_port
    )


UPLOAD_MARK = "_model_shelf_upload"


def accepts_upload(handler: H) -> H:
    """Mark ``handler`` as the upload route: `check_state_change` then wants a raw body."""
    setattr(handler, UPLOAD_MARK, True)
    return handler


def is_upload(handler: object) -> bool:
    return bool(getattr(handler, UPLOAD_MARK, False))


PEER_MARK = "_model_shelf_peer"


def serves_peers(handler: H) -> H:
    """Mark ``handler`` as a route for LAN peers (issue #13): the one exemption from the
    browser-facing checks.

    Other machines reach these routes by this machine's LAN address, so a ``Host`` check (the
    DNS-rebinding defence, which wants ``localhost``) and per-client rate limits for the page
    must skip them. They are GET-only, read-only, and guarded instead by their own checks
    (`Team.check_peer`): a local-network client address and the team token.
    """
    setattr(handler, PEER_MARK, True)
    return handler


def is_peer_route(handler: object) -> bool:
    return bool(getattr(handler, PEER_MARK, False))


def _host_name(entry: str) -> str:
    """``Shelf.LAN:8188`` -> ``shelf.lan``, ``[::1]:80`` -> ``::1``: the name of a host entry."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        return entry[1:].partition("]")[0]
    if entry.count(":") == 1:  # host:port (an IPv6 address has more colons)
        entry = entry.partition(":")[0]
    return entry.rstrip(".")


class AllowedHosts:
    """The host names the API answers to (see the module docstring).

    Always: ``localhost`` and ``*.localhost`` (browsers resolve those to loopback themselves),
    and any IP address (a rebinding page's requests carry its name, never an address). Besides:
    the names given here (the address the server listens on; ``MODEL_SHELF_API_ALLOWED_HOSTS``)
    and those stored in the library's settings (`stored`, set when it opens or changes).

    Args:
        names (`Iterable[str]`): ``host`` or ``host:port`` entries (the port is not compared).
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names = frozenset(_host_name(n) for n in names if n.strip())
        self.stored: frozenset[str] = frozenset()

    def set_stored(self, names: Iterable[str]) -> None:
        """The names the library's settings allow (replacing the previous ones)."""
        self.stored = frozenset(_host_name(n) for n in names if n.strip())

    def allows(self, host: str) -> bool:
        """True if a request whose ``Host`` header is ``host`` may be answered."""
        name = _host_name(host)
        if not name:
            return False
        if name == "localhost" or name.endswith(".localhost") or is_ip_address(name):
            return True
        return name in self.names or name in self.stored

    def check(self, request: web.Request) -> None:
        """Refuse a request for a host name this server does not answer to.

        A request without ``Host`` passes: HTTP/1.0 tools omit it, browsers never do.

        Raises:
            `HostNotAllowedError`: the name is not allowed.
        """
        host = request.headers.get("Host")
        if host is None or self.allows(host):
            return
        shown = host[:100].encode("ascii", "replace").decode()
        raise HostNotAllowedError(
            f"refused: this server does not answer to the host name {shown!r} (a web page can "
            "point any name at this machine); open it by address (http://127.0.0.1:PORT/) or "
            "localhost, or allow the name with MODEL_SHELF_API_ALLOWED_HOSTS or the "
            "allowed_hosts setting"
        )


def check_state_change(request: web.Request, *, upload: bool = False) -> None:
    """Refuse a state-changing request that another site could have sent.

    Raises:
        `CrossSiteRequestError`: the request comes from another site.
        `UnsupportedMediaTypeError`: a body type a form could send, or no upload header.
    """
    if not same_origin(request):
        raise CrossSiteRequestError(
            "refused: a request from another site may not change the library"
        )
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if upload:
        if content_type != UPLOAD_TYPE or request.headers.get(UPLOAD_HEADER) != "1":
            raise UnsupportedMediaTypeError(
                f"uploads must be sent as {UPLOAD_TYPE} with the header {UPLOAD_HEADER}: 1"
            )
        return
    if content_type != JSON_TYPE:
        raise UnsupportedMediaTypeError(
            f"this route takes {JSON_TYPE} (got {content_type or 'no content type'})"
        )


async def read_body(request: web.Request, limit: int = MAX_JSON_BYTES) -> bytes:
    """The whole body, refusing more than ``limit`` bytes before reading them all.

    Independent of the server's ``client_max_size`` (ComfyUI sets it to its upload size).

    Raises:
        `RequestTooLargeError`: the body is larger than ``limit``.
    """
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLargeError(f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, model: type[M]) -> M:
    """Parse the body as ``model`` (an empty body counts as ``{}``).

    Raises:
        `pydantic.ValidationError`: not JSON, or not valid for ``model`` (answered 422).
        `RequestTooLargeError`: the body is over `MAX_JSON_BYTES`.
    """
    body = await read_body(request)
    return model.model_validate_json(body or b"{}")
