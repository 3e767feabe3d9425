"""Progress of running downloads (bytes, speed, ETA), delivered to whoever subscribed.

Subscribers are plain callables: the CLI's progress bar, later the HTTP API and the websocket
push. They are called on the engine's event-loop thread and must return quickly; one that raises
is logged and kept, never allowed to break a download.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .tasks import DownloadTask, TaskState

log = logging.getLogger("model_shelf.downloads")

PUBLISH_INTERVAL_SECONDS = 0.25
"""Progress of one task is published at most this often (state changes always are)."""

_SPEED_WINDOW_SECONDS = 3.0


@dataclass(frozen=True)
class ProgressEvent:
    """A snapshot of one task, as subscribers see it."""

    task_id: str
    state: TaskState
    bytes_done: int
    total_bytes: int | None
    speed_bytes_per_second: float
    eta_seconds: float | None
    message: str | None = None
    """The wait reason or error, when there is one."""
    error_code: str | None = None
    model_name: str | None = None
    byte_sources: dict[str, int] = field(default_factory=dict)
    """Bytes by where they came from: ``peer``, ``store``, ``internet`` (issue #13)."""

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


ProgressListener = Callable[[ProgressEvent], None]


class SpeedMeter:
    """Bytes per second over the last few seconds (an exponential moving average)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()
        self.bytes_per_second = 0.0

    def add(self, nbytes: int) -> None:
        now = self._clock()
        elapsed = max(now - self._last, 1e-6)
        self._last = now
        instant = nbytes / elapsed
        weight = min(1.0, elapsed / _SPEED_WINDOW_SECONDS)
        if self.bytes_per_second == 0.0:
            self.bytes_per_second = instant
        else:
            self.bytes_per_second += weight * (instant - self.bytes_per_second)

    def reset(self) -> None:
        self._last = self._clock()
        self.bytes_per_second = 0.0


class ProgressBus:
    """Fan-out of `ProgressEvent` to subscribers. Subscribing is thread-safe."""

    def __init__(self) -> None:
        self._listeners: list[ProgressListener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: ProgressListener) -> Callable[[], None]:
        """Call ``listener`` with every event from now on; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: ProgressEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a subscriber's bug must not stop a download
                log.exception("progress subscriber %r failed", listener)


def snapshot(task: DownloadTask, speed: float = 0.0) -> ProgressEvent:
    """The event describing ``task`` as it is, with ``speed`` when it is running."""
    total = task.expected_size
    eta = None
    if total is not None and speed > 0 and task.state is TaskState.DOWNLOADING:
        eta = max(0.0, (total - task.bytes_done) / speed)
    return ProgressEvent(
        task_id=task.id,
        state=task.state,
        bytes_done=task.bytes_done,
        total_bytes=total,
        speed_bytes_per_second=speed if task.running else 0.0,
        eta_seconds=eta,
        message=task.error_message or task.wait_reason,
        error_code=task.error_code,
        model_name=task.model_name,
        byte_sources=dict(task.byte_sources),
    )
