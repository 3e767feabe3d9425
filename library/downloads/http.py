"""HTTP failures become Model Shelf errors here, and only here.

`error_for_status` maps a status to a typed error carrying the URL (query string masked: signed
URLs carry credentials), the status and the server's own message; `raise_for_response` applies it
to an aiohttp response; `error_for_exception` maps transport failures (aiohttp, http.client,
huggingface_hub's HTTP client, OS errors, timeouts). Everything that talks HTTP goes through
these, the way huggingface_hub routes every response through ``hf_raise_for_status``.

The line between `OfflineError` and `RemoteError`: a host we could not reach at all (DNS, refused,
unreachable, connect timeout) is "offline", and a task waits for the network without spending its
attempts; a host that answered and then failed (5xx, dropped mid-body, stalled) is "remote", and
each failure counts.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import re
import socket
import ssl
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlsplit

from ..errors import (
    AuthRequiredError,
    InsecureURLError,
    InvalidSourceError,
    OfflineError,
    RemoteError,
    ShelfError,
)

if TYPE_CHECKING:
    import aiohttp

USER_AGENT = "model-shelf (+https://github.com/model-shelf/model-shelf)"

_MESSAGE_CHARS = 300
"""How much of an error body is quoted in a message."""

_RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_AUTH_STATUSES = frozenset({401, 403})


def display_url(url: str) -> str:
    """``url`` without its query string and credentials: safe to log and show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")


_SECRET_PARAM = re.compile(
    r"token|key|auth|sig|secret|pass|credential|session|cookie|jwt|bearer|code", re.IGNORECASE
)
"""Credential-like query parameters: ``?token=`` (Civitai), ``X-Amz-Signature``/
``X-Amz-Credential`` (presigned S3), ``api_key``... Their values are masked in a URL shown to
people (`redact_url`) and taken out of a download source before it is stored
(`split_secret_query`)."""


def is_secret_param(name: str) -> bool:
    """True when a query parameter named ``name`` (as written in a URL) carries a credential."""
    return _SECRET_PARAM.search(unquote_plus(name)) is not None


def split_secret_query(url: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``https://host/m?type=Model&token=abc`` -> ``https://host/m?type=Model`` and
    ``(("token", "abc"),)``: every credential-like query parameter with a value
    (`is_secret_param`), as written in the URL (still percent-encoded), in its order; the rest
    of the URL byte for byte. Not a URL (no ``://``), or none in its query: ``(url, ())``."""
    if "://" not in url:
        return url, ()
    base, hash_, fragment = url.partition("#")
    head, question, query = base.partition("?")
    if not question:
        return url, ()
    kept: list[str] = []
    taken: list[tuple[str, str]] = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if equals and value and is_secret_param(name):
            taken.append((name, value))
        else:
            kept.append(pair)
    if not taken:
        return url, ()
    rest = "&".join(kept)
    return f"{head}{'?' if rest else ''}{rest}{hash_}{fragment}", tuple(taken)


def with_query(url: str, params: Iterable[tuple[str, str]]) -> str:
    """``url`` with ``params`` (written as they go in a URL) added to the end of its query."""
    added = "&".join(f"{name}={value}" for name, value in params)
    if not added:
        return url
    base, hash_, fragment = url.partition("#")
    if "?" not in base:
        base += "?"
    elif not base.endswith(("?", "&")):
        base += "&"
    return f"{base}{added}{hash_}{fragment}"


def redact_url(text: str) -> str:
    """``text`` (a URL, or any source form) as it may be shown and logged: a ``user:password@``
    left out, and the value of every credential-like query parameter (`is_secret_param`) masked.
    Unlike `display_url`, the rest of the query stays (it often names the file)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]
    path, hash_, fragment = path.partition("#")
    path, question, query = path.partition("?")
    if question:
        parts = []
        for pair in query.split("&"):
            name, equals, value = pair.partition("=")
            masked = equals and value and is_secret_param(name)
            parts.append(f"{name}=…" if masked else pair)
        query = "&".join(parts)
    return f"{scheme}://{authority}{slash}{path}{question}{query}{hash_}{fragment}"


CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
"""Request headers that carry credentials: never logged, never sent on to another origin."""


def request_secrets(url: str, headers: Mapping[str, str] | None = None) -> list[str]:
    """The credentials a request to ``url`` with ``headers`` carries (its password, the values
    of its credential-like query parameters, its ``Authorization``...): what `scrub` removes
    from a server's error message, which may quote the request back."""
    found: list[str] = []
    parts = urlsplit(url)
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    for name, value in parse_qsl(parts.query):
        if value and is_secret_param(name):
            found += [value, quote(value, safe="")]
    for name, value in (headers or {}).items():
        if name.lower() in CREDENTIAL_HEADERS and value:
            found += [value, value.split(" ", 1)[-1]]  # "Bearer <token>": the token alone too
    return [s for s in found if len(s) >= 4]


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``…``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "…")
    return text


def origin_of(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url``: credentials given for one origin go to no other."""
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def host_of(url: str) -> str:
    """``host[:port]`` of ``url``: the key of the per-host circuit breaker."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_secure(url: str, allow_insecure_http: bool) -> None:
    """Refuse ``url`` unless it is HTTPS, loopback HTTP, or HTTP allowed by the user.

    Raises:
        `InsecureURLError`: plain HTTP to another machine, not allowed.
        `InvalidSourceError`: not an HTTP(S) URL at all.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https":
        return
    if scheme != "http":
        raise InvalidSourceError(f"not an http(s) URL: {display_url(url)}")
    if allow_insecure_http or is_loopback(url):
        return
    raise InsecureURLError(
        f"refusing plain HTTP to {display_url(url)}: the file could be altered on the way; "
        "use https, or allow insecure HTTP (MODEL_SHELF_DOWNLOAD_ALLOW_INSECURE_HTTP=1)"
    )


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (seconds, or an HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class ContentRange:
    start: int
    end: int  # inclusive
    total: int | None


_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes\s+\*/(\d+)$")


def parse_content_range(value: str | None) -> ContentRange | None:
    """``bytes 100-199/1000`` -> ContentRange(100, 199, 1000); None if absent or malformed."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None
    total = None if match[3] == "*" else int(match[3])
    return ContentRange(int(match[1]), int(match[2]), total)


def unsatisfied_range_total(value: str | None) -> int | None:
    """The size a 416 answer states (``bytes */1000``), if any."""
    match = _UNSATISFIED_RANGE.match((value or "").strip())
    return int(match[1]) if match else None


def _server_message(headers: Mapping[str, str], body: str) -> str:
    message = headers.get("X-Error-Message") or ""
    if not message and body:
        message = " ".join(body.split())[:_MESSAGE_CHARS]
    return message


def error_for_status(
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: str = "",
    request_id: str | None = None,
    secrets: list[str] | None = None,
) -> ShelfError:
    """The typed error for an HTTP error ``status`` from ``url``.

    Args:
        url (`str`): the URL that answered (its query string is never shown).
        status (`int`): 4xx or 5xx.
        headers (`Mapping[str, str]`): response headers (``Retry-After``, ``X-Error-Message``).
        body (`str`, *optional*): the start of the response body, quoted in the message.
        request_id (`str`, *optional*): the server's request id, for bug reports; else the one
            in ``headers`` (``X-Request-Id``, or CloudFront's ``X-Amz-Cf-Id``), if any.
        secrets (`list[str]`, *optional*): the request's credentials (`request_secrets`): a
            server may quote them back, and they are cut from its message.

    Returns:
        `AuthRequiredError` for 401/403; `RemoteError` otherwise, ``retryable`` for 408, 425,
        429 and 5xx, with ``retry_after_seconds`` from ``Retry-After``.
    """
    shown = display_url(url)
    message = _server_message(headers, body)
    detail = f": {message}" if message else ""
    request_id = request_id or headers.get("X-Request-Id") or headers.get("X-Amz-Cf-Id")
    if request_id:
        detail += f" (request id {request_id})"
    detail = scrub(detail, secrets or [])
    if status in _AUTH_STATUSES:
        return AuthRequiredError(
            f"HTTP {status} from {shown}: access denied{detail}. A gated or private model needs "
            "a token (HF_TOKEN for Hugging Face, CIVITAI_API_KEY for Civitai)",
            url=url,
            status=status,
        )
    retryable = status in _RETRYABLE_STATUSES or status >= 500
    return RemoteError(
        f"HTTP {status} from {shown}{detail}",
        url=url,
        status=status,
        retryable=retryable,
        retry_after_seconds=retry_after_seconds(headers.get("Retry-After")),
    )


async def raise_for_response(response: aiohttp.ClientResponse) -> None:
    """Raise the typed error for an aiohttp response with an error status; return otherwise.

    Raises:
        `AuthRequiredError`, `RemoteError`: see `error_for_status`.
    """
    import aiohttp  # the caller's response is aiohttp's: imported already

    if response.status < 400:
        return
    body = ""
    if (response.content_type or "").startswith(("text/", "application/json")):
        try:
            raw = await response.content.read(_MESSAGE_CHARS * 4)
            body = raw.decode("utf-8", "replace")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            body = ""  # the status says enough; the body was a courtesy
    sent = response.request_info
    secrets = request_secrets(str(sent.url), sent.headers) + request_secrets(str(response.url))
    raise error_for_status(
        str(response.url), response.status, response.headers, body, secrets=secrets
    )


# Transport errors of huggingface_hub's HTTP client: requests (<1.0), httpx (1.x), httpx2 (2.x).
# Matched by class name so that every supported version maps without importing the others.
_HF_CONNECT_ERRORS = frozenset(
    {"ConnectError", "ConnectTimeout", "ConnectionError", "ProxyError", "OfflineModeIsEnabled"}
)
_HF_TRANSPORT_ERRORS = frozenset(
    {"TransportError", "NetworkError", "TimeoutException", "ReadTimeout", "RemoteProtocolError"}
)


def error_for_exception(
    exc: BaseException, url: str, stall_seconds: float | None = None, *, connecting: bool = False
) -> ShelfError:
    """The typed error for a failed request to ``url`` that produced no usable HTTP status.

    Args:
        exc (`BaseException`): what the HTTP client raised.
        url (`str`): the URL being fetched.
        stall_seconds (`float`, *optional*): the stall timeout, named in stall messages.
        connecting (`bool`, *optional*): it happened while connecting, so the host was not
            reached at all (`OfflineError`) unless TLS itself failed.

    Returns:
        `OfflineError` when the host could not be reached; `RemoteError` (retryable) when the
        connection broke, stalled or ended early; the error itself if it is already ours.
    """
    if isinstance(exc, ShelfError):
        return exc
    shown = display_url(url)
    host = host_of(url)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 400:  # huggingface_hub's HfHubHTTPError
        headers = getattr(response, "headers", {}) or {}
        answered = str(getattr(response, "url", url))
        request = getattr(response, "request", None)
        sent = getattr(request, "headers", None)
        return error_for_status(
            answered,
            status,
            headers,
            str(getattr(exc, "server_message", "") or ""),
            getattr(exc, "request_id", None),
            secrets=request_secrets(answered, sent if isinstance(sent, Mapping) else None),
        )
    if isinstance(exc, (socket.gaierror, *_aiohttp("ClientConnectorDNSError"))):
        return OfflineError(f"cannot resolve {host}: no network or no such host", url=url)
    tls = (
        ssl.SSLCertVerificationError,
        *_aiohttp("ClientConnectorCertificateError", "ClientSSLError"),
    )
    if isinstance(exc, tls):
        return RemoteError(f"TLS problem with {host}: {exc}", url=url, retryable=False)
    if isinstance(exc, _aiohttp("ClientConnectorError")):
        reason = exc.os_error.strerror or str(exc.os_error)  # type: ignore[attr-defined]
        return OfflineError(f"cannot reach {host}: {reason.lower()}", url=url)
    if isinstance(exc, _aiohttp("ConnectionTimeoutError")):
        return OfflineError(f"cannot reach {host}: connection timed out", url=url)
    if connecting and isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
        return OfflineError(f"cannot reach {host}: {(exc.strerror or str(exc)).lower()}", url=url)
    if isinstance(exc, (http.client.IncompleteRead, *_aiohttp("ClientPayloadError"))):
        return RemoteError(f"{shown}: connection closed before the end of the file", url=url)
    closed = (http.client.RemoteDisconnected, http.client.BadStatusLine)
    if isinstance(exc, (*closed, *_aiohttp("ServerDisconnectedError"))):
        return RemoteError(f"{host} closed the connection", url=url)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # a read timeout: the stall
        after = f" for {stall_seconds:g} s" if stall_seconds else ""
        return RemoteError(f"{host} stopped sending{after}; reconnecting", url=url)
    # Builtins excluded: Python's own ConnectionError is not requests' ConnectionError.
    names = {cls.__name__ for cls in type(exc).__mro__ if cls.__module__ != "builtins"}
    if names & _HF_CONNECT_ERRORS or isinstance(exc, ConnectionRefusedError):
        return OfflineError(f"cannot reach {host}: {exc}", url=url)
    broken = (ConnectionError, http.client.HTTPException, *_aiohttp("ClientError"))
    if isinstance(exc, broken) or names & _HF_TRANSPORT_ERRORS:
        return RemoteError(f"connection to {host} failed: {exc}", url=url)
    if isinstance(exc, OSError):
        return RemoteError(f"connection to {host} failed: {exc.strerror or exc}", url=url)
    return RemoteError(f"request to {shown} failed: {type(exc).__name__}: {exc}", url=url)


def _aiohttp(*names: str) -> tuple[type[BaseException], ...]:
    """aiohttp's error classes of these names, to match against; none if aiohttp was never
    imported (it takes 0.2 s to import, and then nothing raised can be its)."""
    aiohttp = sys.modules.get("aiohttp")
    return tuple(getattr(aiohttp, name) for name in names) if aiohttp is not None else ()
