"""One bandwidth limit shared by every download of a process.

A pacing clock rather than a bucket refilled by a timer: each read books its bytes on the clock
and learns how long to wait for its slot. Concurrent downloads interleave their bookings, so
they share the limit fairly without coordinating. Up to `BURST_SECONDS` of unused time is
forgiven, so a short pause does not turn into a burst above the limit. Bodies are read in worker
threads, so booking is thread-safe, and the wait is the caller's (on an event it can interrupt).
"""

from __future__ import annotations

import threading
import time

BURST_SECONDS = 0.25


class BandwidthLimiter:
    """Paces byte counts to ``bytes_per_second``; 0 means no limit. Thread-safe."""

    def __init__(self, bytes_per_second: int) -> None:
        self.bytes_per_second = bytes_per_second
        self._next_free = float("-inf")  # nothing booked yet: a full burst is available
        self._lock = threading.Lock()

    @property
    def limited(self) -> bool:
        return self.bytes_per_second > 0

    def read_size(self, wanted: int) -> int:
        """At most a burst's worth of bytes per read, so that pacing stays smooth."""
        rate = self.bytes_per_second  # read once: settings may change it meanwhile
        if rate <= 0:
            return wanted
        return max(1, min(wanted, int(rate * BURST_SECONDS)))

    def book(self, nbytes: int) -> float:
        """Book ``nbytes`` just read; return the seconds to wait before reading more."""
        rate = self.bytes_per_second
        if rate <= 0 or nbytes <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            start = max(self._next_free, now - BURST_SECONDS)
            self._next_free = start + nbytes / rate
            return max(0.0, self._next_free - now)
