"""An asyncio loop of its own on a thread: how tests host aiohttp servers that synchronous code
(subprocesses, Playwright's sync API, urllib, hypothesis) talks to."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any


class LoopThread:
    """`start` runs ``setup()`` in a new loop on a new thread and waits for it (its failure is
    raised here); `stop` stops the loop, then runs ``teardown()`` in it and closes it."""

    def __init__(
        self,
        name: str,
        setup: Callable[[], Awaitable[None]],
        teardown: Callable[[], Awaitable[None]],
        *,
        daemon: bool = False,
    ) -> None:
        self.name = name
        self.setup = setup
        self.teardown = teardown
        self.daemon = daemon
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                loop.run_until_complete(self.setup())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.teardown())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=main, name=self.name, daemon=self.daemon)
        self._thread.start()
        ready.wait(timeout)
        if failure:
            self._thread.join(5)
            raise failure[0]

    def call(self, coro: Awaitable[Any], timeout: float = 30.0) -> Any:
        """Run ``coro`` in the loop and wait for its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, timeout: float = 60.0) -> None:
        if self.loop is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
