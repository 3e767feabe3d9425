"""What every route table is built with: how to reach the library, where events go, the thread
pool for blocking work, and the few things that differ between ComfyUI and ``serve``.

Inside ComfyUI the routes are registered while ComfyUI imports node packs, before the library
(possibly on a slow share) has opened on its background thread: the `ShelfProvider` then
answers `LibraryNotReadyError` (503) until it has. In ``serve`` it simply returns the Shelf.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from ..library import Shelf
from ..library.errors import (
    BusyError,
    LibraryNotReadyError,
    ShelfError,
    UnsupportedOperationError,
)
from ..library.settings import ApiSettings
from .events import EventHub
from .guard import AllowedHosts
from .metrics import Metrics
from .ratelimit import RateLimiter

log = logging.getLogger("model_shelf.api")

API_THREADS = 2
"""Threads for the quick blocking calls (index queries): few, because each runs Python between
its SQLite calls and more of them would keep the event loop waiting for the interpreter lock
(see bench/bench_api.py). Apart from the loop's default pool, which ComfyUI uses too."""
LONG_THREADS = 4
"""Threads for file work that may take minutes (imports, uploads, verification, deletion), so
that it never holds up a search."""

T = TypeVar("T")
ShelfProvider = Callable[[], Shelf]
"""Returns the open library, or raises `LibraryNotReadyError`."""


class RootSetting(Protocol):
    """Where the library root is chosen, and whether the sidebar may change it."""

    source: str
    """Where the root in use comes from, for people (``--root``, a settings file...)."""
    editable: bool

    def pending(self) -> str | None:
        """A root saved for the next start that differs from the one in use, if any."""

    def save(self, root: str) -> None:
        """Use ``root`` from the next start on.

        Raises:
            `UnsupportedOperationError`: the root cannot be changed from here.
        """


@dataclass
class FixedRoot:
    """The root given on the command line: shown, not changeable from the page."""

    source: str = "serve --root (or MODEL_SHELF_ROOT)"
    editable: bool = False

    def pending(self) -> str | None:
        return None

    def save(self, root: str) -> None:
        raise UnsupportedOperationError(
            "this server was started with its library root; restart it with another --root"
        )


def _api_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(API_THREADS, thread_name_prefix="model-shelf-api")


def _long_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(LONG_THREADS, thread_name_prefix="model-shelf-api-long")


def provide(shelf: Shelf) -> ShelfProvider:
    """A provider for a library that is already open."""
    return lambda: shelf


def provide_when_ready(get: Callable[[], Shelf | None]) -> ShelfProvider:
    """A provider for a library opened elsewhere, later (ComfyUI's background thread)."""

    def provider() -> Shelf:
        shelf = get()
        if shelf is None:
            raise LibraryNotReadyError("the model library is still opening; try again shortly")
        return shelf

    return provider


class BackgroundJobs:
    """Long library work started by a request and finished after the answer (verify all).

    One job per name at a time; a second request for it gets ``BUSY``.
    """

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[object]] = {}

    def running(self, name: str) -> bool:
        task = self._running.get(name)
        return task is not None and not task.done()

    def start(
        self,
        name: str,
        work: Callable[[], object],
        run: Callable[[Callable[[], object]], asyncio.Future[object]],
        done: Callable[[], None] | None = None,
    ) -> None:
        """Run ``work`` (blocking) through ``run`` in the background; ``done`` afterwards.

        Raises:
            `BusyError`: that job is already running.
        """
        if self.running(name):
            raise BusyError(f"{name} is already running")

        async def job() -> object:
            try:
                return await run(work)
            except (ShelfError, OSError) as exc:
                log.warning("Model Shelf: %s failed: %s", name, exc)
                return None
            finally:
                if done is not None:
                    done()

        self._running[name] = asyncio.get_running_loop().create_task(job(), name=name)

    async def wait(self) -> None:
        """Wait for every running job (at shutdown)."""
        tasks = [t for t in self._running.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class RouteContext:
    """Everything the route tables need; built once per server.

    Args:
        shelf (`ShelfProvider`): reaches the open library.
        events (`EventHub`): where changes are announced.
        root_setting (`RootSetting`): how the library root may be changed.
        hidden_types (`frozenset[str]`): type folders this install hides (ComfyUI's settings).
        listen_hosts (`tuple[str, ...]`): the addresses or names the server listens on
            (``serve --host``, ComfyUI's ``--listen``): requests for them are answered.
        api_settings (`ApiSettings`): allowed host names, rate limits (default: the
            environment's).
    """

    shelf: ShelfProvider
    events: EventHub = field(default_factory=EventHub)
    root_setting: RootSetting = field(default_factory=FixedRoot)
    hidden_types: frozenset[str] = frozenset()
    metrics: Metrics = field(default_factory=Metrics)
    jobs: BackgroundJobs = field(default_factory=BackgroundJobs)
    executor: ThreadPoolExecutor = field(default_factory=_api_pool)
    long_executor: ThreadPoolExecutor = field(default_factory=_long_pool)
    listen_hosts: tuple[str, ...] = ()
    api_settings: ApiSettings = field(default_factory=ApiSettings.from_env)
    hosts: AllowedHosts = field(init=False)
    """The ``Host`` names answered (issue #11: the DNS-rebinding defence)."""
    limiter: RateLimiter = field(init=False)
    """Per-client limits on the routes that change something (issue #11)."""
    _closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.hosts = AllowedHosts([*self.listen_hosts, *self.api_settings.allowed_hosts])
        self.limiter = RateLimiter(
            self.api_settings.rate_limit_per_second, self.api_settings.rate_limit_burst
        )

    async def run(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        """Run blocking ``fn(*args, **kwargs)`` on the API's threads; the loop stays free."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, *args, **kwargs))

    async def run_long(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        """As `run`, for file work that may take minutes (its own threads)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.long_executor, partial(fn, *args, **kwargs))

    def run_later(self, fn: Callable[[], object]) -> asyncio.Future[object]:
        """As `run_long`, for `BackgroundJobs`."""
        return asyncio.get_running_loop().run_in_executor(self.long_executor, fn)

    def close(self) -> None:
        """Stop the event streams and the API's threads (waiting for calls in progress)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.events.close()
        self.executor.shutdown(wait=True)
        self.long_executor.shutdown(wait=True)
