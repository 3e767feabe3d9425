"""Per-client rate limits on the routes that change something (issue #11).

One token bucket per client address: a request takes a token; tokens come back at
`ApiSettings.rate_limit_per_second` up to `ApiSettings.rate_limit_burst`. An empty bucket
answers ``RATE_LIMITED`` (429) with ``Retry-After``. The defaults are far above what the page
or a script doing real work sends, so only a runaway loop meets them. Reads are not counted (the
page polls), and neither are the LAN peer routes (other machines, with their own checks).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from ..library.errors import RateLimitedError

MAX_CLIENTS = 4096
"""Buckets kept; beyond this, full ones (clients idle long enough) are forgotten first."""


class RateLimiter:
    """Token buckets by client address.

    Args:
        per_second (`float`): tokens given back per second.
        burst (`int`): a bucket's size (and a new client's tokens).
        clock (`Callable[[], float]`, *optional*): monotonic seconds (tests give their own).
    """

    def __init__(
        self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, as of when)
        self._lock = threading.Lock()  # two apps' loops may share one context (tests)

    def take(self, client: str) -> None:
        """Spend one of ``client``'s tokens.

        Raises:
            `RateLimitedError`: none left; ``retry_after_seconds`` says when one is back.
        """
        with self._lock:
            now = self.clock()
            tokens, since = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - since) * self.per_second)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / self.per_second
                raise RateLimitedError(
                    f"too many requests that change the library from {client}: at most "
                    f"{self.burst} at once, then {self.per_second:g} a second "
                    "(MODEL_SHELF_API_RATE_LIMIT_PER_SECOND, _BURST); try again shortly",
                    retry_after_seconds=max(1.0, math.ceil(wait)),
                )
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_CLIENTS:
                self._forget_idle(now)

    def _forget_idle(self, now: float) -> None:
        for client, (tokens, since) in list(self._buckets.items()):
            if tokens + (now - since) * self.per_second >= self.burst:
                del self._buckets[client]
        while len(self._buckets) > MAX_CLIENTS:  # all busy: the oldest entries go
            del self._buckets[next(iter(self._buckets))]


__all__ = ["RateLimiter"]
