"""Polite HTTP for metadata lookups: a rate limit and a circuit breaker per host, ``429`` waited
out (``Retry-After``), a timeout on every request, and a count of what was asked.

The pacing clock is the download engine's `BandwidthLimiter` booking one "byte" per request, and
the breaker is its `CircuitBreaker`; HTTP failures become our typed errors through
`downloads.http` like every other request. Credentials go in headers only, never in a URL, so
nothing logged or raised can hold one.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..downloads.breaker import CircuitBreaker
from ..downloads.http import (
    USER_AGENT,
    check_secure,
    display_url,
    error_for_exception,
    host_of,
    raise_for_response,
)
from ..downloads.throttle import BandwidthLimiter
from ..errors import RemoteError, ShelfError
from ..settings import EnrichSettings

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")


class PoliteClient:
    """One per enrichment run (one event loop). ``requests`` counts requests sent, per host."""

    def __init__(
        self,
        settings: EnrichSettings,
        breaker: CircuitBreaker,
        allow_insecure_http: bool = False,
    ) -> None:
        self.settings = settings
        self.breaker = breaker
        self.allow_insecure_http = allow_insecure_http
        self.requests: Counter[str] = Counter()
        self._pacers: dict[str, BandwidthLimiter] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PoliteClient:
        import aiohttp  # 0.2 s to import: only when something is looked up

        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    async def _paced(self, host: str) -> None:
        pacer = self._pacers.get(host)
        if pacer is None:
            # The download pacing clock, one unit per request: a rate in requests per second.
            pacer = BandwidthLimiter(self.settings.requests_per_second)  # type: ignore[arg-type]
            self._pacers[host] = pacer
        wait = pacer.book(1)
        if wait > 0:
            await asyncio.sleep(wait)

    async def call(self, url: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run one request to ``url``'s host under the limit and the breaker; wait out 429s.

        Raises:
            `HostUnavailableError`: the host's circuit is open.
            `RemoteError`, `AuthRequiredError`, `OfflineError`: the request failed.
        """
        host = host_of(url)
        check_secure(url, self.allow_insecure_http)
        for number in range(1, self.settings.max_attempts + 1):
            self.breaker.check(host)
            await self._paced(host)
            self.requests[host] += 1
            try:
                result = await attempt()
            except ShelfError as exc:
                wait = getattr(exc, "retry_after_seconds", None)
                status = getattr(exc, "status", None)
                if status == 429 and number < self.settings.max_attempts:
                    self.breaker.release(host)
                    await asyncio.sleep(min(wait or 1.0, self.settings.retry_after_max_seconds))
                    continue
                if status is not None and status < 500 and status != 429:
                    self.breaker.record_success(host)  # it answered: the host is fine
                else:
                    self.breaker.record_failure(host)
                raise
            self.breaker.record_success(host)
            return result
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def get_json(
        self,
        url: str,
        *,
        params: list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        body: object = None,
    ) -> Any | None:
        """GET (or POST ``body`` as JSON) and parse the answer; None for a 404.

        Raises:
            As `call`; `RemoteError` (not retryable) for a body that is not JSON.
        """
        session = self._require_session()

        async def attempt() -> Any | None:
            import aiohttp

            method = "GET" if body is None else "POST"
            try:
                async with session.request(
                    method, url, params=params, headers=dict(headers or {}), json=body
                ) as response:
                    if response.status == 404:
                        return None
                    await raise_for_response(response)
                    raw = await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise error_for_exception(exc, url) from exc
            try:
                return json.loads(raw)
            except ValueError:
                raise RemoteError(
                    f"{display_url(url)} answered with something that is not JSON",
                    url=url,
                    retryable=False,
                ) from None

        return await self.call(url, attempt)

    async def get_bytes(self, url: str, max_bytes: int) -> tuple[str, bytes]:
        """GET a small body (an image): ``(content type, bytes)``.

        Raises:
            As `call`; `RemoteError` when the body is over ``max_bytes`` or the URL is not
            http(s).
        """
        session = self._require_session()

        async def attempt() -> tuple[str, bytes]:
            import aiohttp

            try:
                async with session.get(url) as response:
                    await raise_for_response(response)
                    declared = response.content_length
                    if declared is not None and declared > max_bytes:
                        raise RemoteError(
                            f"{display_url(url)}: {declared} bytes, over the preview limit",
                            url=url,
                            retryable=False,
                        )
                    data = await response.content.read(max_bytes + 1)
                    if len(data) > max_bytes:
                        raise RemoteError(
                            f"{display_url(url)}: over the preview limit of {max_bytes} bytes",
                            url=url,
                            retryable=False,
                        )
                    return response.content_type or "", data
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise error_for_exception(exc, url) from exc

        return await self.call(url, attempt)

    async def in_thread(
        self, url: str, fn: Callable[[], T], errors: tuple[type[BaseException], ...] = ()
    ) -> T:
        """Run a blocking client call (huggingface_hub's) under the limit and the breaker;
        ``errors`` are that client's own error classes, mapped like ours."""

        async def attempt() -> T:
            try:
                return await asyncio.wait_for(
                    asyncio.to_thread(fn), timeout=self.settings.timeout_seconds
                )
            except ShelfError:
                raise
            except (OSError, asyncio.TimeoutError, *errors) as exc:
                raise error_for_exception(exc, url) from exc

        return await self.call(url, attempt)

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("PoliteClient used outside `async with`")
        return self._session
