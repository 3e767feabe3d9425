"""The body of a download: one HTTP GET, read in a worker thread straight into our own buffers.

The rest of the engine talks to sources with aiohttp; the bytes of model files come through here.
aiohttp hands a body out as bytes objects of at most 256 KiB, allocated and copied per socket
read; at LAN and loopback speeds that costs more CPU than sha256 of the same bytes (measured on
2 GiB: 1.3 to 2.0 CPU-seconds, against 0.3 here). Python's own `http.client` reads with
``recv_into`` into a buffer we own: each byte is copied once, from the socket to the page that
is then hashed and written to disk, and no event-loop round trip is paid per chunk.

`BodyStream` follows redirects itself (HTTP's rules: at most `MAX_REDIRECTS`, credentials never
sent to another origin, every hop held to `check_secure`, and with a `FetchGuard` every hop
resolved once, checked, and connected to by the address checked) and raises only typed errors.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from ..errors import RemoteError, ShelfError
from .addresses import FetchGuard
from .http import (
    CREDENTIAL_HEADERS,
    check_secure,
    display_url,
    error_for_exception,
    error_for_status,
    origin_of,
    request_secrets,
)

MAX_REDIRECTS = 10
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ERROR_BODY_BYTES = 1200
"""How much of an error response is read, to quote the server's message."""
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"
"""Characters left as they are when a URL's path and query are made valid for a request line."""


class TransferInterrupted(Exception):
    """`BodyStream.interrupt` was called (from another thread): pause, cancel or stop."""


@dataclass(frozen=True)
class ResponseHead:
    """Status and headers of the final response, after redirects."""

    url: str
    status: int
    headers: Message
    """Case-insensitive, like every HTTP header lookup."""

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.strip().isdigit() else None

    @property
    def filename(self) -> str | None:
        """The file name the server suggests (``Content-Disposition``), else the last path part.

        Not yet safe to use: see `sources.safe_filename`.
        """
        params = self.headers.get_params(header="content-disposition") or []
        names = [value for key, value in params if key.lower() == "filename" and value]
        # ``filename*=UTF-8''...`` (RFC 2231, parsed as a tuple) is the real name; a plain
        # ``filename=`` beside it is the ASCII fallback for old clients.
        extended = [value for value in names if isinstance(value, tuple)]
        if extended:
            return collapse_rfc2231_value(extended[0]) or None
        if names:
            return _header_text(str(names[0]))
        return unquote(urlsplit(self.url).path.rsplit("/", 1)[-1]) or None


def _header_text(value: str) -> str:
    """A header value as its sender meant it: http.client decodes headers as Latin-1, but
    servers put raw UTF-8 in ``Location`` and ``Content-Disposition``."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not UTF-8 after all (or not Latin-1 text): as it came
        return value


def _request_target(url: str) -> str:
    """Path and query of ``url``, percent-encoded where it is not already (spaces, non-ASCII)."""
    parts = urlsplit(url)
    target = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_URL_SAFE)
    return target


class BodyStream:
    """One GET whose body is read with `readinto`. Blocking: for a worker thread.

    Args:
        url (`str`): what to fetch.
        headers (`Mapping[str, str]`): request headers (``Range``, ``If-Range``, credentials).
        connect_timeout (`float`): seconds to wait for a connection.
        stall_timeout (`float`): seconds a read may wait for the next byte.
        allow_insecure_http (`bool`): plain HTTP to another machine allowed by the user.
        guard (`FetchGuard`, *optional*): where each hop may connect (downloads a workflow
            asked for); None: anywhere.
    """

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        connect_timeout: float,
        stall_timeout: float,
        allow_insecure_http: bool,
        guard: FetchGuard | None = None,
    ) -> None:
        self.url = url
        self.guard = guard
        self.headers = dict(headers)
        self.connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self.allow_insecure_http = allow_insecure_http
        self._connection: http.client.HTTPConnection | None = None
        self._sock: socket.socket | None = None
        self._response: http.client.HTTPResponse | None = None
        self._remaining: int | None = None  # body bytes still to come, when the length is known
        self._failure: ShelfError | TransferInterrupted | None = None  # raised by the next read
        self._interrupted = threading.Event()
        self._lock = threading.Lock()  # `interrupt` (any thread) against connect/close
        self._sent: dict[str, str] = dict(headers)

    def open(self) -> ResponseHead:
        """Send the request, following redirects; return the final status and headers.

        Raises:
            `InsecureURLError`: a hop is plain HTTP to another machine, not allowed.
            `FetchRefusedError`: with a guard, a hop leads to an address it does not allow.
            `OfflineError`: the host could not be reached.
            `RemoteError`: the connection broke or stalled, or too many redirects.
            `TransferInterrupted`: `interrupt` was called.
        """
        url, headers = self.url, dict(self.headers)
        parts = urlsplit(url)
        if parts.username is not None and not any(k.lower() == "authorization" for k in headers):
            # ``https://user:token@mirror/...``: Basic auth, as browsers and aiohttp send it.
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
        self._sent = dict(headers)  # the credentials of every hop, for `raise_for_status`
        for _ in range(MAX_REDIRECTS + 1):
            check_secure(url, self.allow_insecure_http)
            connection = self._connect(url, self._addresses(url))
            try:
                connection.request("GET", _request_target(url), headers=headers)
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise self._error(exc, url) from exc
            location = _header_text(response.getheader("Location") or "")
            if response.status not in _REDIRECT_STATUSES or not location:
                self._response = response
                self._remaining = response.length  # None when chunked or until the close
                return ResponseHead(url, response.status, response.headers)
            self.close()
            next_url = urljoin(url, location)
            if origin_of(next_url) != origin_of(url):
                # Tokens are for the host they were given to, never for a CDN it points at.
                headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
            url = next_url
        raise RemoteError(
            f"{display_url(self.url)} redirected more than {MAX_REDIRECTS} times",
            url=self.url,
            retryable=False,
        )

    def readinto(self, view: memoryview, deadline: float | None = None) -> int:
        """Read body bytes into ``view`` until it is full, the body ends, or the monotonic clock
        passes ``deadline`` (checked between socket reads).

        Returns:
            `int`: the bytes read; 0 only at the end of the body (or when the connection closed
            early: the caller compares with the expected size). Bytes read before a failure or
            an interrupt are returned first; the next call raises.

        Raises:
            `RemoteError`: the connection broke or stalled.
            `TransferInterrupted`: `interrupt` was called.
        """
        if self._interrupted.is_set():
            raise TransferInterrupted()
        if self._failure is not None:
            raise self._failure
        filled = 0
        try:
            while filled < len(view):
                n = self._read_some(view[filled:])
                if not n:
                    break
                filled += n
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: closed
            self._failure = self._error(exc, self.url)
            self._failure.__cause__ = exc
        if filled:
            return filled
        if self._interrupted.is_set():
            raise TransferInterrupted()
        if self._failure is not None:
            raise self._failure
        return 0

    def _read_some(self, view: memoryview) -> int:
        """One socket read's worth of body into ``view`` (0 at the end of the body)."""
        response = self._response
        if response is None:  # closed under us: only an interrupted transfer is closed early
            return 0
        if response.chunked:  # rare for files: http.client undoes the chunking, with a copy
            data = response.read1(len(view))
            view[: len(data)] = data
            return len(data)
        if self._remaining is not None:
            view = view[: self._remaining]
            if not view:
                return 0
        # Straight from the socket into ``view``: `readinto1` does at most one ``recv_into``,
        # so what arrived is counted even if the next read fails. (``fp`` is the response's
        # socket file; `HTTPResponse.readinto` would block until ``view`` is full.)
        n = response.fp.readinto1(view)
        if self._remaining is not None:
            self._remaining -= n
        return n

    def error_text(self) -> str:
        """The start of an error response's body, for the message (never raises)."""
        response = self._response
        if response is None:
            return ""
        kind = response.getheader("Content-Type") or ""
        if not kind.startswith(("text/", "application/json")):
            return ""
        try:
            return response.read(_ERROR_BODY_BYTES).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            return ""  # the status says enough; the body was a courtesy

    def raise_for_status(self, head: ResponseHead) -> None:
        """Raise the typed error for an error status (4xx, 5xx); return otherwise. What the
        server says is quoted, less any of our credentials it quotes back.

        Raises:
            `AuthRequiredError`, `RemoteError`: see `error_for_status`.
        """
        if head.status < 400:
            return
        secrets = request_secrets(self.url, self._sent) + request_secrets(head.url)
        raise error_for_status(
            head.url, head.status, head.headers, self.error_text(), secrets=secrets
        )

    def interrupt(self) -> None:
        """Make a blocked `open` or `readinto` return now (thread-safe). A connection still
        being made (DNS, TCP, TLS) is given up when it is made, or at the connect timeout."""
        with self._lock:
            self._interrupted.set()
            sock = self._sock
            if sock is not None:
                # The base-class call: a TLS socket's own shutdown would tear down its TLS
                # state under the reading thread's feet. Already closed: nothing to wake.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            response, connection = self._response, self._connection
            self._response = self._connection = self._sock = None
        if response is not None:
            response.close()
        if connection is not None:
            connection.close()

    def _addresses(self, url: str) -> list[str] | None:
        """The guard's checked addresses for ``url`` (None without a guard: any)."""
        if self.guard is None:
            return None
        try:
            return self.guard.addresses(url)
        except OSError as exc:  # socket.gaierror: no such host, no network
            raise self._error(exc, url, connecting=True) from exc

    def _connect(self, url: str, addresses: list[str] | None = None) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme.lower() == "https"
        # Always a port: without one, http.client looks for it after the last ":" of the host,
        # which for an IPv6 address (``http://[::1]/...``) is inside the address.
        port = parts.port or (443 if https else 80)
        connection: http.client.HTTPConnection
        if https:
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.connect_timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        if addresses is not None:
            # Connect to the checked addresses, not to a second lookup of the name (which a
            # rebinding DNS server could answer differently); ``Host`` and TLS still use the
            # name, so certificates are checked against it as usual.
            connection._create_connection = _pinned(addresses)  # type: ignore[attr-defined]
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise self._error(exc, url, connecting=True) from exc
        connection.sock.settimeout(self.stall_timeout)
        with self._lock:
            self._connection = connection
            # Our own reference: http.client drops ``connection.sock`` as soon as a response
            # says the connection will close (HTTP/1.0, ``Connection: close``, no length), and
            # `interrupt` must still reach the socket the body is read from.
            self._sock = connection.sock
            interrupted = self._interrupted.is_set()
        if interrupted:
            self.close()
            raise TransferInterrupted()
        return connection

    def _error(
        self, exc: BaseException, url: str, *, connecting: bool = False
    ) -> ShelfError | TransferInterrupted:
        if self._interrupted.is_set():
            return TransferInterrupted()
        return error_for_exception(exc, url, self.stall_timeout, connecting=connecting)


def _pinned(addresses: list[str]) -> Callable[..., socket.socket]:
    """A ``socket.create_connection`` that tries ``addresses`` in turn, whatever it is given."""

    def create_connection(
        address: tuple[str, int], timeout: float | None = None, source_address: Any = None
    ) -> socket.socket:
        last: OSError | None = None
        for ip in addresses:
            try:
                return socket.create_connection((ip, address[1]), timeout, source_address)
            except OSError as exc:
                last = exc
        raise last or OSError(f"no address to connect to for {address[0]}")

    return create_connection


__all__ = ["BodyStream", "ResponseHead", "TransferInterrupted"]
