"""A per-host circuit breaker: after repeated failures, stop sending requests to that host for a
while, and say until when.

Closed (normal) -> after ``threshold`` failures in a row -> open for ``cooldown`` seconds ->
half-open: one request may try; success closes the circuit, failure opens it again for twice as
long (capped at 16 cooldowns), so a host that is down for an hour is asked a handful of times,
not thousands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..errors import HostUnavailableError

_MAX_COOLDOWN_FACTOR = 16


@dataclass
class _HostState:
    failures: int = 0
    opened_until: float = 0.0
    cooldown_factor: int = 1
    probing: bool = False


class CircuitBreaker:
    """Failure counts per host, for one process. Used from the event loop thread only."""

    def __init__(
        self,
        threshold: int,
        cooldown_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.threshold = threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._hosts: dict[str, _HostState] = {}

    def check(self, host: str) -> None:
        """Allow a request to ``host``, or refuse while its circuit is open.

        Raises:
            `HostUnavailableError`: the circuit is open; ``until`` says when it half-opens.
        """
        state = self._hosts.get(host)
        if state is None or state.failures < self.threshold:
            return
        now = self._clock()
        if now < state.opened_until or state.probing:
            until = max(state.opened_until, now + 1.0)
            when = datetime.fromtimestamp(until).strftime("%H:%M:%S")
            raise HostUnavailableError(
                f"{host} failed {state.failures} times in a row; not asking it again until {when}",
                host=host,
                until=until,
            )
        state.probing = True  # half-open: this one request decides

    def record_success(self, host: str) -> None:
        self._hosts.pop(host, None)

    def record_failure(self, host: str) -> None:
        state = self._hosts.setdefault(host, _HostState())
        state.failures += 1
        if state.failures < self.threshold:
            return
        if state.probing:  # the half-open probe failed: wait longer this time
            state.cooldown_factor = min(state.cooldown_factor * 2, _MAX_COOLDOWN_FACTOR)
        state.probing = False
        state.opened_until = self._clock() + self.cooldown_seconds * state.cooldown_factor

    def release(self, host: str) -> None:
        """The half-open probe ended without an answer either way (paused, cancelled)."""
        state = self._hosts.get(host)
        if state is not None:
            state.probing = False
