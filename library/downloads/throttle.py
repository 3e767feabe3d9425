"""One bandwidth limit shared by every download of a process.

A pacing clock rather than a bucket refilled by a timer: each read books its bytes on the clock
and sleeps until its slot. Concurrent downloads interleave their bookings, so they share the
limit fairly without coordinating. Up to `BURST_SECONDS` of unused time is forgiven, so a short
pause does not turn into a burst above the limit.
"""

from __future__ import annotations

import asyncio
import time

BURST_SECONDS = 0.25


class BandwidthLimiter:
    """Paces byte counts to ``bytes_per_second``; 0 means no limit. Event-loop use only."""

    def __init__(self, bytes_per_second: int) -> None:
        self.bytes_per_second = bytes_per_second
        self._next_free = 0.0

    @property
    def limited(self) -> bool:
        return self.bytes_per_second > 0

    async def consume(self, nbytes: int) -> None:
        """Wait until ``nbytes`` more bytes fit under the limit."""
        if not self.limited or nbytes <= 0:
            return
        now = time.monotonic()
        start = max(self._next_free, now - BURST_SECONDS)
        self._next_free = start + nbytes / self.bytes_per_second
        delay = self._next_free - now - BURST_SECONDS
        if delay > 0:
            await asyncio.sleep(delay)
