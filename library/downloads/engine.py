"""`DownloadEngine`: asyncio workers that take tasks from the queue and never restart from zero.

One engine per process (inside ComfyUI's event loop, or in the CLI's own). It claims tasks from
the shared `TaskStore` under a lease, so two processes never fetch the same file, and for each:

1. locates the bytes (`ResolvedSource.locate`: a signed CDN URL, size, sha256), unless the
   library already holds a model with the expected sha256 (then nothing is downloaded);
2. checks free space, then streams with ``Range`` + ``If-Range`` from the partial file's end,
   in a worker thread that reads the body straight into the partial file's buffers, writes and
   hashes them (`transport`, `partial`); a ``200`` instead of ``206`` (the file changed, or no
   range support) truncates and starts over;
3. retries what can be retried: jittered exponential backoff, ``Retry-After`` honoured, a stall
   timeout, a per-host circuit breaker; a failure after progress does not count against the
   attempts; with no network, the task waits and says so;
4. verifies size and sha256 (a mismatch quarantines the file: ``HASH_MISMATCH``), fsyncs, and
   hands the file to the installer it was given, which places it in the library.

Pause and cancel interrupt the body being read, at once; they also work from another process
through the task row (the lease holder's heartbeat picks them up). Blocking work (the body,
SQLite, file writes, hashing, the final import) runs in the engine's thread pool, never on the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..errors import (
    AuthRequiredError,
    HashMismatchError,
    HostUnavailableError,
    InsecureURLError,
    OfflineError,
    RemoteError,
    ShelfError,
    StorageFullError,
    TaskCancelledError,
    TaskNotFoundError,
)
from ..fsutil import require_free_space
from ..hashing import HashCancelled, Hashes
from ..records import SourceRef
from ..settings import DownloadSettings
from ..sources import RemoteFile, ResolvedSource, resolve_source, safe_filename
from ..stored_settings import TaskCredentials, URLCredentials
from .addresses import FetchGuard, Resolver, system_resolver
from .breaker import CircuitBreaker
from .http import (
    USER_AGENT,
    check_secure,
    display_url,
    host_of,
    origin_of,
    parse_content_range,
    unsatisfied_range_total,
)
from .mirrors import ByteSource, Mirror, MirrorFinder
from .partial import PartialFile, PartialLockedError
from .progress import PUBLISH_INTERVAL_SECONDS, ProgressBus, SpeedMeter, snapshot
from .tasks import (
    ControlRequest,
    DownloadTask,
    TaskOrigin,
    TaskState,
    TaskStore,
    new_owner_id,
    utc_now,
    with_credentials,
)
from .throttle import BandwidthLimiter
from .transport import BodyStream, ResponseHead, TransferInterrupted

log = logging.getLogger("model_shelf.downloads")

T = TypeVar("T")

MAX_CONCURRENCY = 32
"""The upper bound of `DownloadSettings.concurrency`."""
FLUSH_SECONDS = 0.5
"""Bytes are written at the latest this long after they arrive, even short of a block."""
PARKED_PARTIALS = 8
"""Paused or waiting tasks whose running digests are kept in memory (each holds two threads)."""


@dataclass(frozen=True)
class InstalledModel:
    """What the installer reports back: the model in the library that the task produced."""

    model_id: str
    model_name: str
    """``type/name``."""
    hashes: Hashes = field(default_factory=dict)


class Installer(Protocol):
    """What the engine needs from the library, passed in so that the engine knows no models."""

    def find_installed(self, sha256: str) -> InstalledModel | None:
        """A model already in the library with this sha256 (``"sha256:<hex>"``), if any."""
        ...

    def check_destination(self, task: DownloadTask, remote: RemoteFile) -> None:
        """Fail before any byte is fetched if the file could not be installed (name taken...)."""
        ...

    def install(self, task: DownloadTask, path: Path, hashes: Hashes) -> InstalledModel:
        """Place the verified file at ``path`` in the library; on failure leave it at ``path``."""
        ...

    def restore(self, task: DownloadTask, path: Path) -> None:
        """Put back at ``path`` a file that an install interrupted by a crash left aside."""
        ...


DeleteFiles = Callable[[Sequence[Path], str], None]
"""Deletes files, journaling why (`Remover.delete`)."""


# -- control flow inside a job (never leaves the engine) ---------------------------------------


class _Interrupted(Exception):
    """The chunk loop saw a request: pause, cancel, engine stop, or a lost lease."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Wait(Exception):
    """Retry later than a worker should hold its slot: give the task back to the queue."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class _Refetch(Exception):
    """A mirror's bytes did not match the sha256: the partial file was emptied, fetch again."""


class _AlreadyInstalled(Exception):
    def __init__(self, model: InstalledModel) -> None:
        super().__init__(model.model_name)
        self.model = model


_PAUSE, _CANCEL, _STOP, _LEASE_LOST = "pause", "cancel", "stop", "lease-lost"


class _Job:
    """One task being worked on by this engine: its flags, partial file and counters."""

    def __init__(self, task: DownloadTask, partial_file: PartialFile) -> None:
        self.task = task
        self.partial = partial_file
        self.source: ResolvedSource | None = None
        self.remote: RemoteFile | None = None
        self.interrupt: str | None = None
        self.wakeup = asyncio.Event()
        self.failures = task.failures  # in a row, without progress (kept across requeues)
        self.offline_streak = 0
        self.relocated = False  # a refused signed URL was located afresh in this attempt
        self.speed = SpeedMeter()
        self.counted = partial_file.offset  # bytes already counted by the speed meter
        self.last_publish = 0.0
        self.cancel_hashing = threading.Event()  # also ends a bandwidth-limit wait
        self.body: BodyStream | None = None  # the body being read, if any
        # issue #13: where the partial file's bytes came from, and which mirrors sent them.
        self.byte_sources: dict[str, int] = dict(task.byte_sources)
        self.mirrors_asked = False
        self.contributors: list[Mirror] = []
        self.bad_mirrors: list[Mirror] = []
        # issue #15: the source URL's user:password@ and ?token=, read from their own file when
        # the job starts; in memory only, and only on the URL handed to the transport.
        self.credentials: URLCredentials | None = None

    def request(self, reason: str) -> None:
        """Ask the job to stop (event-loop thread only): at once, even mid-read or mid-sleep."""
        self.halt(reason)
        self.wakeup.set()

    def halt(self, reason: str) -> None:
        """The part of `request` any thread may do: record it, and end a read in progress."""
        # Cancel beats pause beats stop: a later, weaker request never hides a cancel.
        order = (_LEASE_LOST, _CANCEL, _PAUSE, _STOP)
        if self.interrupt is None or order.index(reason) < order.index(self.interrupt):
            self.interrupt = reason
        self.cancel_hashing.set()
        body = self.body
        if body is not None:
            # A read waiting for a silent server would otherwise notice only when bytes come.
            body.interrupt()

    def check(self) -> None:
        """Raise if a stop was asked for: `TaskCancelledError` for a cancel."""
        if self.interrupt == _CANCEL:
            raise TaskCancelledError(f"download {self.task.id} cancelled")
        if self.interrupt is not None:
            raise _Interrupted(self.interrupt)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once for pause/cancel/stop."""
        self.wakeup.clear()
        self.check()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), timeout=max(0.0, seconds))
        self.check()


class DownloadEngine:
    """Runs download tasks from a `TaskStore`. See the module docstring for the life of a task.

    Args:
        store (`TaskStore`): the shared queue.
        partial_dir (`Path`): where partial files live (``.shelf/partial``).
        quarantine_dir (`Path`): where files that failed verification go (``.shelf/quarantine``).
        settings (`DownloadSettings`): limits, timeouts, credentials.
        installer (`Installer`): places finished files in the library.
        delete_files (`DeleteFiles`): the library's one deletion path, for partial files.
        events (`ProgressBus`, *optional*): where progress is published.
        mirrors (`MirrorFinder`, *optional*): LAN peers and team stores, asked first for a file
            whose sha256 is known (issue #13).
        credentials (`TaskCredentials`, *optional*): the ``user:password@`` taken out of
            tasks' source URLs (issue #15); deleted when their task is done or cancelled.
        resolver (`Resolver`, *optional*): how host names of a workflow's downloads are
            resolved for their address check (issue #11; tests give their own).
    """

    def __init__(
        self,
        store: TaskStore,
        partial_dir: Path,
        quarantine_dir: Path,
        settings: DownloadSettings,
        installer: Installer,
        delete_files: DeleteFiles,
        events: ProgressBus | None = None,
        mirrors: MirrorFinder | None = None,
        credentials: TaskCredentials | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.store = store
        self.mirrors = mirrors
        self.credentials = credentials
        self.resolver = resolver
        self.partial_dir = partial_dir
        self.quarantine_dir = quarantine_dir
        self.settings = settings
        self.installer = installer
        self.delete_files = delete_files
        self.events = events or ProgressBus()
        self.owner = new_owner_id()
        self.breaker = CircuitBreaker(
            settings.breaker_failure_threshold, settings.breaker_cooldown_seconds
        )
        self._jobs: dict[str, _Job] = {}
        self._parked: OrderedDict[str, PartialFile] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._limiter: BandwidthLimiter | None = None
        self._finished: asyncio.Event | None = None
        self._stopping: str | None = None
        self._running = threading.Event()
        self._watched: dict[str, tuple[TaskState, int]] = {}
        self._alive_until = 0.0  # monotonic time of the next renewal of the engine's lease
        # Saves published per task: an answer to pause/cancel/resume, published later on the
        # loop, is dropped if the task was saved (and published) since it was made.
        self._saves: dict[str, int] = {}

    # -- control from any thread ---------------------------------------------------------------

    def pause(self, task_id: str) -> DownloadTask:
        """Pause a task (here or in another process); its partial data is kept.

        Raises:
            `TaskNotFoundError`: no such task.
        """
        counted = self._bytes_counted(task_id)  # before the signal: the job may end at once
        saves = self._saves.get(task_id, 0)
        task, _ = self.store.request(task_id, ControlRequest.PAUSE)
        self._signal(task_id, _PAUSE)
        task = self._with_progress(task, counted)
        self._publish_later(task, saves)
        return task

    def cancel(self, task_id: str) -> DownloadTask:
        """Cancel a task; its partial file is removed (by its owner, if one is running it).

        Raises:
            `TaskNotFoundError`: no such task.
        """
        counted = self._bytes_counted(task_id)
        saves = self._saves.get(task_id, 0)
        task, orphaned = self.store.request(task_id, ControlRequest.CANCEL)
        self._signal(task_id, _CANCEL)
        if task.state is TaskState.CANCELLED:
            self.forget_credentials([task_id])  # else its owner does, when it stops
        if orphaned:
            self._forget_parked(task_id)
            self._remove_partial(task, "download cancelled")
        else:
            task = self._with_progress(task, counted)
        self._publish_later(task, saves)
        return task

    def resume(self, task_id: str) -> DownloadTask:
        """Queue a paused or failed task again (clears a pending pause, skips a retry wait).

        Raises:
            `TaskNotFoundError`: no such task.
        """
        counted = self._bytes_counted(task_id)
        saves = self._saves.get(task_id, 0)
        task, _ = self.store.request(task_id, None)
        job = self._jobs.get(task_id)
        if job is not None and job.interrupt == _PAUSE:
            job.interrupt = None
            job.cancel_hashing.clear()  # else a bandwidth-limit wait would never wait again
        self.wake()
        task = self._with_progress(task, counted)
        self._publish_later(task, saves)
        return task

    def apply_settings(self, settings: DownloadSettings) -> None:
        """Use new settings from now on (thread-safe): concurrency applies at the next claim,
        the bandwidth limit at the next chunk, the rest at the next request.
        """
        self.settings = settings
        limiter = self._limiter
        if limiter is not None:
            limiter.bytes_per_second = settings.bandwidth_limit_bytes_per_second
        self.breaker.threshold = settings.breaker_failure_threshold
        self.breaker.cooldown_seconds = settings.breaker_cooldown_seconds
        self.wake()

    def _bytes_counted(self, task_id: str) -> int | None:
        """Bytes this engine holds of a task it runs or has parked (None if neither)."""
        job = self._jobs.get(task_id)
        partial_file = job.partial if job is not None else self._parked.get(task_id)
        if partial_file is None or partial_file.hasher is None:
            return None
        return partial_file.offset

    @staticmethod
    def _with_progress(task: DownloadTask, counted: int | None) -> DownloadTask:
        """``task`` as stored, but never behind the bytes counted here: the row's count is the
        last heartbeat's, and showing it would step progress back."""
        if counted is None or counted <= task.bytes_done:
            return task
        return task.model_copy(update={"bytes_done": counted})

    def wake(self) -> None:
        """Look for work now instead of at the next poll (thread-safe)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to wake
                loop.call_soon_threadsafe(wake.set)

    def _signal(self, task_id: str, reason: str) -> None:
        loop = self._loop
        job = self._jobs.get(task_id)
        if job is None or loop is None or loop.is_closed():
            return
        # The read stops now, from this thread: the loop may take a while to run the request
        # (inside ComfyUI, a worker thread holding the interpreter as it cleans up after a
        # prompt), and bytes still arriving meanwhile would be read and thrown away.
        job.halt(reason)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(job.request, reason)

    def _publish_later(self, task: DownloadTask, saves: int) -> None:
        """Publish a control answer on the loop, after what the job published meanwhile.

        ``saves`` is the task's count of saves when the answer was made: if the job saved since
        (say, paused with every byte counted), the answer is older news and is dropped; else
        it goes out with the bytes counted by then, so progress never steps back.
        """
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._running.is_set():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._publish_answer, task, saves)
        else:
            self.events.publish(snapshot(task))

    def _publish_answer(self, task: DownloadTask, saves: int) -> None:
        if self._saves.get(task.id, 0) != saves:
            return
        self.events.publish(snapshot(self._with_progress(task, self._bytes_counted(task.id))))

    # -- running -------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._running.is_set()

    @property
    def is_stopping(self) -> bool:
        """Has `stop` been asked for while `run` is still finishing?"""
        return self._running.is_set() and self._stopping is not None

    async def run(self, *, until_idle: bool = False, only: Collection[str] | None = None) -> None:
        """Work on the queue until `stop` (or, with ``until_idle``, until nothing is left).

        Args:
            until_idle (`bool`, *optional*): return once no task (of ``only``) is queued or
                running anywhere; paused and finished tasks do not count.
            only (`Collection[str]`, *optional*): work on these task ids only (the CLI's
                foreground ``add``); others are left to other processes.
        """
        if self._running.is_set():
            raise RuntimeError("this download engine is already running")
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._stopping = None
        self._alive_until = 0.0
        self._limiter = BandwidthLimiter(self.settings.bandwidth_limit_bytes_per_second)
        # Sized for the largest concurrency `apply_settings` may set; threads start on demand.
        self._pool = ThreadPoolExecutor(
            max_workers=2 * MAX_CONCURRENCY + 2, thread_name_prefix="shelf-download"
        )
        self._running.set()
        only_ids = set(only) if only is not None else None
        workers: set[asyncio.Task[None]] = set()
        heartbeat = asyncio.create_task(self._heartbeat(only_ids), name="model-shelf-heartbeat")
        try:
            if only_ids is None:  # the whole queue: tell other processes (`engines_running`)
                await self._say_alive()
            while self._stopping is None:
                # Cleared before the claims, not after: a stop (or a finished worker) signalled
                # while a claim waits in its thread must end the wait below at once.
                self._wake.clear()
                while len(self._jobs) < self.settings.concurrency and self._stopping is None:
                    try:
                        task = await self._blocking(
                            self.store.claim, self.owner, self.settings.lease_seconds, only_ids
                        )
                    except ShelfError as exc:  # a full disk or a locked database: next poll
                        log.warning("cannot take tasks from the queue: %s", exc)
                        break
                    if task is None:
                        break
                    job = self._new_job(task)
                    worker = asyncio.create_task(self._work(job), name=f"model-shelf-{task.id}")
                    workers.add(worker)
                    worker.add_done_callback(workers.discard)
                    worker.add_done_callback(lambda _t: self._wake.set())
                idle = until_idle and not self._jobs
                if idle and not await self._blocking(self._pending, only_ids):
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=self.settings.poll_interval_seconds
                    )
        finally:
            reason = self._stopping or _STOP
            for job in list(self._jobs.values()):
                job.request(reason)
            if workers:
                await asyncio.gather(*workers, return_exceptions=True)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            if only_ids is None:
                with contextlib.suppress(ShelfError):  # else its lease expires by itself
                    await self._blocking(self.store.engine_gone, self.owner)
            for partial_file in self._parked.values():
                partial_file.discard_hasher()
            self._parked.clear()
            self._running.clear()
            # Off the loop: a thread may still be making a connection that a stop gave up on.
            await asyncio.to_thread(self._pool.shutdown, True)
            self._loop = None
            self._finished.set()

    async def stop(self, *, pause: bool = False) -> None:
        """Stop working: running tasks stop at their next chunk, keep their partial data, and go
        back to the queue (or are paused, with ``pause``). Returns when `run` has finished.
        """
        self._stopping = _PAUSE if pause else _STOP
        for job in list(self._jobs.values()):
            job.request(self._stopping)
        if self._wake is not None:
            self._wake.set()
        if self._running.is_set() and self._finished is not None:
            await self._finished.wait()  # run() is closing the session and the pool

    def _pending(self, only: set[str] | None) -> bool:
        """Is any task (of ``only``) queued or running, here or in another process?"""
        tasks = self.store.list([TaskState.QUEUED, TaskState.DOWNLOADING, TaskState.VERIFYING])
        return any(only is None or t.id in only for t in tasks)

    async def _blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        assert self._loop is not None and self._pool is not None
        return await self._loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))

    def _new_job(self, task: DownloadTask) -> _Job:
        partial_file = self._parked.pop(task.id, None)
        if partial_file is None:
            partial_file = PartialFile(
                self.partial_dir / task.partial_name,
                self.settings.free_space_margin_bytes,
                direct_io=self.settings.direct_io,
            )
        job = _Job(task, partial_file)
        self._jobs[task.id] = job
        return job

    def _park(self, job: _Job) -> None:
        """Keep a stopped task's running digests, so resuming here re-reads nothing."""
        if job.partial.hasher is None:
            return
        self._parked[job.task.id] = job.partial
        while len(self._parked) > PARKED_PARTIALS:
            _, oldest = self._parked.popitem(last=False)
            oldest.discard_hasher()

    def _forget_parked(self, task_id: str) -> None:
        partial_file = self._parked.pop(task_id, None)
        if partial_file is not None:
            partial_file.discard_hasher()

    # -- credentials of source URLs (issue #15) ------------------------------------------------

    def forget_credentials(self, task_ids: Collection[str]) -> None:
        """Delete the credentials of these tasks (done, cancelled or forgotten). Blocking."""
        if self.credentials is not None and task_ids:
            self.credentials.forget(task_ids)

    def _credentials_for(self, task: DownloadTask) -> URLCredentials | None:
        if self.credentials is None or task.source_kind != "url":
            return None
        return self.credentials.get(task.id)

    @staticmethod
    def _with_credentials(job: _Job, url: str) -> str:
        """``url`` as the transport gets it: with the task's ``user:password@`` and ``?token=``
        when it is the source URL's origin. The transport sends the first as Basic auth, to
        that origin only; the query goes to no redirect's target (a ``Location`` is followed as
        the server wrote it)."""
        credentials = job.credentials
        if credentials is None:
            return url
        same = origin_of(job.task.source) == origin_of(url)
        return with_credentials(url, credentials) if same else url

    # -- the heartbeat: leases, requests from other processes, progress of remote tasks --------

    async def _say_alive(self) -> None:
        """Renew this engine's lease in the engine table (a third of the lease ahead)."""
        now = time.monotonic()
        if now < self._alive_until:
            return
        try:
            await self._blocking(self.store.engine_alive, self.owner, self.settings.lease_seconds)
        except ShelfError as exc:  # a locked or full database: the next beat tries again
            log.warning("could not renew the download engine's lease: %s", exc)
            return
        self._alive_until = now + self.settings.lease_seconds / 3

    async def _heartbeat(self, only: set[str] | None) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_seconds)
            if only is None:
                await self._say_alive()
            for job in list(self._jobs.values()):
                try:
                    row = await self._blocking(
                        self.store.renew,
                        job.task.id,
                        self.owner,
                        self.settings.lease_seconds,
                        # Before the partial file is re-read (while locating, or asking the
                        # mirrors) its offset is 0: the row keeps its count instead.
                        job.partial.offset
                        if job.partial.hasher is not None
                        else job.task.bytes_done,
                    )
                except (ShelfError, OSError) as exc:  # a full disk or a locked file: try again
                    log.warning("could not renew the lease of task %s: %s", job.task.id, exc)
                    continue
                if row is None:
                    if job.task.id in self._jobs:  # not just released by the job itself
                        log.warning("task %s: lease lost to another process", job.task.id)
                        job.request(_LEASE_LOST)
                elif row.control is ControlRequest.CANCEL:
                    job.request(_CANCEL)
                elif row.control is ControlRequest.PAUSE:
                    job.request(_PAUSE)
            if only:
                await self._watch_others(only)

    async def _watch_others(self, only: set[str]) -> None:
        """Publish progress of watched tasks that another process is running."""
        for task_id in only - set(self._jobs):
            try:
                task = await self._blocking(self.store.get, task_id)
            except TaskNotFoundError:
                continue
            seen = (task.state, task.bytes_done)
            if self._watched.get(task_id) != seen:
                self._watched[task_id] = seen
                self.events.publish(snapshot(task))

    # -- one task ------------------------------------------------------------------------------

    async def _save(self, job: _Job, **fields: Any) -> None:
        """Update the task row (while we hold its lease) and the in-memory copy, and publish."""
        if job.partial.hasher is not None:
            # The row's count is the last heartbeat's: publishing it would step progress back.
            fields.setdefault("bytes_done", job.partial.offset)
        fields.setdefault("byte_sources", dict(job.byte_sources))
        job.task = await self._blocking(self.store.update, job.task.id, self.owner, **fields)
        self._saves[job.task.id] = self._saves.get(job.task.id, 0) + 1
        self.events.publish(snapshot(job.task, job.speed.bytes_per_second))

    async def _release(self, job: _Job, **fields: Any) -> None:
        """Give the task up (with its new state) and drop our lease."""
        self._jobs.pop(job.task.id, None)  # the heartbeat must not renew what we give up
        fields.setdefault("control", None)
        fields["lease_owner"] = None
        fields["lease_expires_at"] = None
        fields.setdefault("bytes_done", job.partial.size_on_disk())
        await self._save(job, **fields)
        if fields.get("state") in (TaskState.DONE, TaskState.CANCELLED):
            await self._blocking(self.forget_credentials, [job.task.id])

    async def _work(self, job: _Job) -> None:
        """Run one claimed task to an end state; the top level of a task: nothing escapes."""
        task = job.task
        try:
            await self._blocking(self.installer.restore, task, job.partial.path)
            await self._blocking(job.partial.open)
        except PartialLockedError:
            log.info("task %s: another process is writing its partial file", task.id)
            self._jobs.pop(task.id, None)
            with contextlib.suppress(ShelfError):
                await self._blocking(
                    self.store.update, task.id, self.owner, lease_owner=None, lease_expires_at=None
                )
            return
        except StorageFullError as exc:
            self._jobs.pop(task.id, None)
            await self._end_failed(job, exc)
            return
        try:
            if task.control is ControlRequest.CANCEL:
                raise TaskCancelledError(f"download {task.id} cancelled")
            if task.control is ControlRequest.PAUSE:
                raise _Interrupted(_PAUSE)
            await self._save(job, state=TaskState.DOWNLOADING, wait_reason=None, not_before=None)
            job.credentials = await self._blocking(self._credentials_for, task)
            while True:
                await self._fetch(job)
                try:
                    await self._verify_and_install(job)
                    break
                except _Refetch:
                    continue
        except _Interrupted as stop:
            # A resume may have withdrawn a pause that had already stopped the transfer.
            reason = stop.reason if job.interrupt is not None else _STOP
            await self._end_interrupted(job, reason)
        except _Wait as wait:
            await self._end_waiting(job, wait)
        except _AlreadyInstalled as found:
            await self._end_already_installed(job, found.model)
        except TaskCancelledError:
            await self._end_interrupted(job, _CANCEL)
        except HashCancelled:
            await self._end_interrupted(job, job.interrupt or _STOP)
        except ShelfError as exc:
            await self._end_failed(job, exc)
        except asyncio.CancelledError:
            await asyncio.shield(self._end_interrupted(job, _STOP))
            raise
        except Exception as exc:  # the task's top level: record it, log it, keep the engine up
            log.exception("download task %s failed unexpectedly", task.id)
            await self._end_failed(job, exc, detail=traceback.format_exc())
        finally:
            await self._blocking(job.partial.close)
            self._jobs.pop(task.id, None)

    async def _fetch(self, job: _Job) -> None:
        """Locate and transfer until every byte is in the partial file, retrying as needed."""
        settings = self.settings
        if await self._from_mirrors(job):
            return
        while True:
            job.check()
            received_before = job.partial.offset
            try:
                if job.remote is None:
                    await self._locate(job)
                    if await self._from_mirrors(job):
                        return
                await self._transfer_from(job, "internet")
                self.breaker.record_success(host_of(job.task.url or job.remote.url))
                return
            except AuthRequiredError as exc:
                if job.remote is not None and job.remote.expires and not job.relocated:
                    # A signed URL that expired (or was revoked): ask the source for a new one.
                    log.info("task %s: %s; locating the file again", job.task.id, exc)
                    job.remote, job.relocated = None, True
                    await self._save(job, url=None)
                    continue
                raise
            except (RemoteError, OfflineError, HostUnavailableError) as exc:
                url = getattr(exc, "url", None) or job.task.url or job.task.source
                if job.partial.offset > received_before:
                    job.failures = 0  # it broke, but after progress: not a failed attempt
                if isinstance(exc, HostUnavailableError):
                    delay = max(0.0, exc.until - time.time())
                    reason = f"{exc.code}: {exc.message}"
                else:
                    self.breaker.record_failure(host_of(url))
                    if isinstance(exc, RemoteError) and not exc.retryable:
                        raise
                    if isinstance(exc, OfflineError):
                        # Not an attempt: waiting for the network costs nothing.
                        job.offline_streak += 1
                        delay = self._backoff(job.offline_streak)
                        reason = f"{exc.code}: {exc.message}; waiting for the network"
                    else:
                        job.offline_streak = 0
                        job.failures += 1
                        await self._save(job, attempts=job.task.attempts + 1, failures=job.failures)
                        if job.failures >= settings.max_attempts:
                            raise
                        delay = self._retry_delay(job, exc)
                        reason = (
                            f"{exc.code}: {exc.message}; retry {job.failures} of "
                            f"{settings.max_attempts - 1} in {delay:.1f} s"
                        )
                job.relocated = False
                log.info("task %s: %s", job.task.id, reason)
                if delay > settings.hold_max_seconds:
                    raise _Wait(delay, reason) from exc
                await self._save(job, wait_reason=reason)
                await job.sleep(delay)
                await self._save(job, wait_reason=None)

    def _backoff(self, streak: int) -> float:
        """Jittered exponential backoff: "equal jitter", half fixed and half random."""
        ceiling = min(
            self.settings.backoff_max_seconds,
            self.settings.backoff_base_seconds * 2 ** max(0, streak - 1),
        )
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _retry_delay(self, job: _Job, exc: RemoteError | OfflineError) -> float:
        retry_after = getattr(exc, "retry_after_seconds", None)
        if retry_after is not None:
            return min(retry_after, self.settings.retry_after_max_seconds)
        return self._backoff(job.failures)

    async def _locate(self, job: _Job) -> None:
        """Ask the source where the bytes are; detect a changed file; skip what we already have."""
        task = job.task
        if job.source is None:
            job.source = resolve_source(task.source, self.settings)
        remote = await job.source.locate()
        check_secure(remote.url, self.settings.allow_insecure_http)
        wanted = [s for s in (task.expected_sha256, remote.sha256) if s]
        if len(set(wanted)) > 1:
            raise HashMismatchError(
                f"the expected sha256 {task.expected_sha256} differs from the one the source "
                f"publishes ({remote.sha256}); not downloading"
            )
        sha256 = wanted[0] if wanted else None
        if sha256 is not None:
            existing = await self._blocking(self.installer.find_installed, sha256)
            if existing is not None:
                raise _AlreadyInstalled(existing)
        await self._blocking(self.installer.check_destination, task, remote)
        changed = (
            task.remote_version is not None
            and remote.version is not None
            and task.remote_version != remote.version
        )
        if changed:
            log.info("task %s: the file changed at the source; starting over", task.id)
            await self._blocking(job.partial.restart)
        fields: dict[str, Any] = {
            "url": remote.url,
            "remote_version": remote.version,
            "source_ref": remote.source_ref.model_dump(mode="json"),
            "filename": task.filename if task.filename and not changed else remote.filename,
            "model_type": task.model_type or remote.model_type,
        }
        if remote.size is not None:
            fields["expected_size"] = remote.size
        if changed:
            fields.update(etag=None, last_modified=None, bytes_done=0)
        job.remote = remote
        await self._save(job, **fields)
        size = remote.size or remote.size_hint
        if size is not None:
            await self._check_space(job, size)

    async def _check_space(self, job: _Job, total: int) -> None:
        needed = max(0, total - job.partial.size_on_disk())
        await self._blocking(
            require_free_space, job.partial.path, needed, self.settings.free_space_margin_bytes
        )

    async def _transfer(self, job: _Job, mirror: Mirror | None = None) -> None:
        """One request: continue the partial file from its end, to the end of the remote file
        (from ``mirror`` when given: content-addressed, so no validator and no change check).

        Raises:
            `RemoteError`, `OfflineError`, `AuthRequiredError`: the request failed (typed).
            `HostUnavailableError`: the host's circuit is open.
            `StorageFullError`: the disk filled up.
        """
        assert job.remote is not None or mirror is not None
        task = job.task
        partial_file = job.partial
        offset = await self._blocking(partial_file.prepare, job.cancel_hashing)
        if task.expected_size is not None:
            if offset == task.expected_size:
                return  # complete already (a crash after the last byte, or a resumed verify)
            if offset > task.expected_size:
                await self._blocking(partial_file.restart)
                offset = 0
        validator = None if mirror is not None else task.etag or task.last_modified
        known_sha256 = task.expected_sha256 or (job.remote.sha256 if job.remote else None)
        if offset and not (validator or known_sha256):
            # Nothing can tell us the server still has the same file: splicing would be a guess.
            log.info("task %s: no validator to resume against; starting over", task.id)
            await self._blocking(partial_file.restart)
            offset = 0
        if mirror is not None:
            url, source_headers = mirror.url, mirror.headers
        else:
            assert job.remote is not None
            url, source_headers = task.url or job.remote.url, job.remote.headers
        headers = {
            **source_headers,
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",  # byte offsets must count the file's own bytes
        }
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        host = host_of(url)
        self.breaker.check(host)
        body = BodyStream(
            url if mirror is not None else self._with_credentials(job, url),
            headers,
            connect_timeout=self.settings.connect_timeout_seconds,
            stall_timeout=self.settings.stall_timeout_seconds,
            allow_insecure_http=self.settings.allow_insecure_http
            or (mirror is not None and mirror.allow_http),
            guard=self._guard(task) if mirror is None else None,
        )
        job.body = body
        try:
            head = await self._open(job, body)
            if not await self._accept(job, body, head, offset, host, mirror):
                await self._copy(job, body)
        except (RemoteError, OfflineError) as exc:
            # Typed by the transport; `_fetch` counts it against the host that failed. When that
            # was a redirect's target, the host we asked answered: give its probe back.
            if host_of(exc.url or url) != host:
                self.breaker.release(host)
            raise
        except TransferInterrupted:
            self.breaker.release(host)
            job.check()
            raise _Interrupted(_STOP) from None  # a pause withdrawn after it stopped the read
        except BaseException:
            # Paused, cancelled, stopped, refused as insecure, a full disk: this says nothing
            # about the host, so a half-open circuit's probe is given back.
            self.breaker.release(host)
            raise
        finally:
            job.body = None
            body.close()
        expected = job.task.expected_size
        if expected is None:
            # No length was announced and the body ended cleanly: what arrived is the file.
            await self._save(job, expected_size=partial_file.offset)
        elif partial_file.offset != expected:
            raise RemoteError(
                f"{display_url(url)}: connection closed before the end of the file "
                f"({partial_file.offset:,} of {expected:,} bytes)",
                url=url,
            )

    def _guard(self, task: DownloadTask) -> FetchGuard | None:
        """Where a task's own source may connect: anywhere, unless a workflow asked for it
        (issue #11). The endpoints the user configured (Hugging Face, Civitai) stay allowed."""
        if task.origin is not TaskOrigin.WORKFLOW:
            return None
        configured = [host_of(self.settings.hf_endpoint), host_of(self.settings.civitai_api_base)]
        return FetchGuard([*self.settings.allowed_fetch_hosts, *configured], self.resolver)

    async def _accept(
        self,
        job: _Job,
        body: BodyStream,
        head: ResponseHead,
        offset: int,
        host: str,
        mirror: Mirror | None = None,
    ) -> bool:
        """Check a response against our range request; record its validators before any byte.

        Returns:
            `bool`: True when the partial file turns out complete already (a satisfied 416).
        """
        task = job.task
        partial_file = job.partial
        if head.status == 416:
            total = unsatisfied_range_total(head.headers.get("Content-Range"))
            if total is not None and total == offset:
                await self._save(job, expected_size=total)
                return True
            await self._blocking(partial_file.restart)
            raise RemoteError(
                f"{display_url(head.url)} refused our range; starting over", url=head.url
            )
        await self._blocking(body.raise_for_status, head)
        etag = head.headers.get("ETag")
        strong_etag = etag if etag and not etag.startswith("W/") else None
        last_modified = head.headers.get("Last-Modified")
        if head.status == 206:
            content_range = parse_content_range(head.headers.get("Content-Range"))
            changed = bool(
                mirror is None and task.etag and strong_etag and strong_etag != task.etag
            )
            if content_range is None or content_range.start != offset or changed:
                # The server ignored If-Range or answered another range: never splice.
                await self._blocking(partial_file.restart)
                raise RemoteError(
                    f"{display_url(head.url)} sent a different part or version of the file; "
                    "starting over",
                    url=head.url,
                )
            total = content_range.total
        else:
            if offset:
                log.info(
                    "task %s: server sent the whole file (changed, or no resume support); "
                    "starting over",
                    task.id,
                )
                await self._blocking(partial_file.restart)
            total = head.content_length
        fields: dict[str, Any] = {}
        if mirror is None:  # a mirror's validators are not the source's
            fields.update(etag=strong_etag, last_modified=last_modified)
        if total is not None:
            fields["expected_size"] = total
        if mirror is None and job.source is not None and job.source.kind == "url":
            # Plain URLs: the response names the file better than the path does.
            fields["filename"] = safe_filename(head.filename) or task.filename
        job.relocated = False
        await self._save(job, **fields)
        self.breaker.record_success(host)  # it answered (after redirects, maybe elsewhere)
        self.breaker.record_success(host_of(head.url))
        if total is not None:
            await self._check_space(job, total)
        return False

    async def _open(self, job: _Job, body: BodyStream) -> ResponseHead:
        """`BodyStream.open` in a worker thread. A stop asked meanwhile does not wait for a
        connection still being made (DNS, TCP, TLS can take the whole connect timeout): the
        thread is left to finish, and the stream closes itself once it sees the interrupt."""
        assert self._loop is not None and self._pool is not None
        opening = self._loop.run_in_executor(self._pool, body.open)
        while True:
            job.wakeup.clear()  # `request` (on this loop) sets interrupt, then wakeup
            if job.interrupt is not None:
                opening.cancel()
                job.check()
            waking = asyncio.ensure_future(job.wakeup.wait())
            try:
                await asyncio.wait({opening, waking}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waking.cancel()
            if opening.done():
                return opening.result()

    async def _copy(self, job: _Job, body: BodyStream) -> None:
        """`_receive` in a worker thread. If this coroutine is cancelled, the worker is
        interrupted and awaited first: nothing may close the partial file under its writes."""
        assert self._loop is not None and self._pool is not None
        receiving = self._loop.run_in_executor(self._pool, self._receive, job, body)
        try:
            await asyncio.shield(receiving)
        except asyncio.CancelledError:
            body.interrupt()
            await asyncio.wait({receiving})
            raise

    def _receive(self, job: _Job, body: BodyStream) -> None:
        """Copy the body into the partial file (in a worker thread), a block at a time.

        Each block is read straight into a buffer of the partial file, then handed to its
        writer and digest threads (`PartialFile.append` returns at once), so this thread only
        reads. A block is handed over when full or `FLUSH_SECONDS` after it was started, so a
        slow link still shows progress and keeps little only in memory. Whatever ends the body
        (its end, a broken connection, an interrupt), every byte read is written and hashed
        before this returns.
        """
        assert self._loop is not None and self._limiter is not None
        partial_file = job.partial
        try:
            self._receive_blocks(job, body)
        finally:
            partial_file.flush()
            # Published whatever the interval: the blocks counted before were still being written.
            self._loop.call_soon_threadsafe(self._progress, job, True)

    def _receive_blocks(self, job: _Job, body: BodyStream) -> None:
        assert self._loop is not None and self._limiter is not None
        partial_file, limiter = job.partial, self._limiter
        while True:
            block = partial_file.buffer()
            filled, ended = 0, False
            deadline = time.monotonic() + FLUSH_SECONDS
            try:
                while filled < len(block) and time.monotonic() < deadline:
                    size = limiter.read_size(len(block) - filled)
                    n = body.readinto(block[filled : filled + size], deadline)
                    if not n:
                        ended = True
                        break
                    filled += n
                    delay = limiter.book(n)
                    if delay:
                        job.cancel_hashing.wait(delay)  # an interrupt ends the wait
            finally:
                if filled:
                    partial_file.append(block[:filled])
                    self._loop.call_soon_threadsafe(self._progress, job)
            if ended:
                return
            if job.interrupt is not None:
                raise TransferInterrupted()

    def _progress(self, job: _Job, final: bool = False) -> None:
        done = job.partial.offset
        job.speed.add(max(0, done - job.counted))
        job.counted = done
        job.task = job.task.model_copy(update={"bytes_done": done})
        now = time.monotonic()
        if final or now - job.last_publish >= PUBLISH_INTERVAL_SECONDS:
            job.last_publish = now
            self.events.publish(snapshot(job.task, job.speed.bytes_per_second))

    async def _verify_and_install(self, job: _Job) -> None:
        task = job.task
        await self._save(job, state=TaskState.VERIFYING, bytes_done=job.partial.offset)
        job.check()
        hashes = await self._blocking(job.partial.finish)
        expected = [
            s for s in (task.expected_sha256, job.remote.sha256 if job.remote else None) if s
        ]
        actual = hashes.get("sha256")
        for sha256 in expected:
            if sha256.lower() != actual:
                if job.contributors:
                    await self._reject_mirrors(job, sha256, actual)
                    raise _Refetch()
                place = await self._blocking(self._quarantine, job)
                raise HashMismatchError(
                    f"downloaded file does not match: expected {sha256}, got {actual}; "
                    f"nothing was added to the library (the file is kept at {place})"
                )
        size = job.partial.offset
        await self._blocking(job.partial.close)
        installed = await self._blocking(self.installer.install, job.task, job.partial.path, hashes)
        job.partial.discard_hasher()
        await self._release(
            job,
            state=TaskState.DONE,
            hashes=installed.hashes or hashes,
            model_id=installed.model_id,
            model_name=installed.model_name,
            bytes_done=size,
            error_code=None,
            error_message=None,
            wait_reason=None,
            finished_at=utc_now(),
        )

    # -- mirrors: LAN peers and team stores (issue #13) ----------------------------------------

    async def _from_mirrors(self, job: _Job) -> bool:
        """Fetch the rest of the file from the mirrors that hold its sha256, in turn, each one
        continuing where the one before stopped. True when the file is complete."""
        task = job.task
        sha256 = task.expected_sha256 or (job.remote.sha256 if job.remote else None)
        if self.mirrors is None or job.mirrors_asked or sha256 is None:
            return False
        job.mirrors_asked = True
        if job.remote is None:  # not located: `_locate` would have checked this
            existing = await self._blocking(self.installer.find_installed, sha256)
            if existing is not None:
                raise _AlreadyInstalled(existing)
        found = await self._blocking(self.mirrors.find, sha256)
        for mirror in found:
            if any(m.kind == mirror.kind and m.label == mirror.label for m in job.bad_mirrors):
                continue
            job.check()
            await self._adopt_metadata(job, mirror, sha256)
            try:
                await self._transfer_from(job, mirror.kind, mirror)
            except (
                RemoteError,
                OfflineError,
                AuthRequiredError,
                HostUnavailableError,
                InsecureURLError,
            ) as exc:
                log.info(
                    "task %s: %s %s failed (%s: %s); trying the next source",
                    task.id,
                    mirror.kind,
                    mirror.label,
                    exc.code,
                    exc.message,
                )
                continue
            log.info("task %s: fetched from %s %s", task.id, mirror.kind, mirror.label)
            return True
        return False

    async def _adopt_metadata(self, job: _Job, mirror: Mirror, sha256: str) -> None:
        """Before any byte comes from a mirror: what the task does not know yet (its file name,
        type, size, origin), from the mirror; and the same early refusals as `_locate`."""
        task = job.task
        source_ref = task.source_ref or mirror.source_ref
        if source_ref is None and task.source_kind in ("huggingface", "civitai", "url"):
            source_ref = SourceRef(kind=task.source_kind, url=task.source).model_dump(mode="json")
        fields: dict[str, Any] = {
            "filename": task.filename or mirror.filename,
            "model_type": task.model_type or mirror.model_type,
            "source_ref": source_ref,
        }
        if task.expected_size is None and mirror.size is not None:
            fields["expected_size"] = mirror.size
        await self._save(job, **fields)
        if job.remote is None and source_ref is not None:
            remote = RemoteFile(
                url=mirror.url,
                source_ref=SourceRef.model_validate(source_ref),
                sha256=sha256,
                size=mirror.size,
                filename=mirror.filename,
                model_type=mirror.model_type,
            )
            await self._blocking(self.installer.check_destination, job.task, remote)
        size = job.task.expected_size
        if size is not None:
            await self._check_space(job, size)

    async def _transfer_from(
        self, job: _Job, kind: ByteSource, mirror: Mirror | None = None
    ) -> None:
        """`_transfer`, counting the bytes it adds by where they came from."""
        self._reconcile_sources(job, kind)
        before = job.partial.offset
        try:
            await self._transfer(job, mirror)
        finally:
            after = job.partial.offset
            if after < before:  # started over: the bytes counted so far are gone
                job.byte_sources, job.contributors, before = {}, [], 0
            if after > before:
                job.byte_sources[kind] = job.byte_sources.get(kind, 0) + after - before
                if mirror is not None and mirror not in job.contributors:
                    job.contributors.append(mirror)

    @staticmethod
    def _reconcile_sources(job: _Job, kind: ByteSource) -> None:
        """Make the counts add up to the bytes on disk: after a crash the row's counts are the
        last save's. Bytes counted nowhere are put on the source about to continue (after a
        restart the same source order applies, so it is most likely the one that sent them)."""
        offset = job.partial.offset
        counted = sum(job.byte_sources.values())
        if offset == counted:
            return
        if offset == 0:
            job.byte_sources = {}
        elif offset > counted:
            job.byte_sources[kind] = job.byte_sources.get(kind, 0) + offset - counted
        else:
            excess = counted - offset
            for name in sorted(job.byte_sources, key=job.byte_sources.__getitem__, reverse=True):
                cut = min(excess, job.byte_sources[name])
                job.byte_sources[name] -= cut
                excess -= cut
            job.byte_sources = {k: v for k, v in job.byte_sources.items() if v}

    async def _reject_mirrors(self, job: _Job, expected: str, actual: str | None) -> None:
        """Mirrors sent bytes that did not hash to ``expected``: never ask them again for this
        task, report them, and empty the partial file (which bytes were wrong cannot be told)."""
        for mirror in job.contributors:
            log.warning(
                "task %s: %s %s sent bytes that do not match %s (got %s); marked bad",
                job.task.id,
                mirror.kind,
                mirror.label,
                expected,
                actual,
            )
            job.bad_mirrors.append(mirror)
            await self._blocking(self.mirrors.mark_bad, mirror, f"sent bytes hashing to {actual}")
        labels = ", ".join(f"{m.kind} {m.label}" for m in job.contributors)
        job.contributors, job.byte_sources, job.mirrors_asked = [], {}, False
        await self._blocking(job.partial.restart)
        await self._save(
            job,
            state=TaskState.DOWNLOADING,
            bytes_done=0,
            wait_reason=f"{labels} sent wrong bytes (rejected by sha256); fetching again",
        )

    def _quarantine(self, job: _Job) -> Path:
        """Move a file that failed verification out of the way, where a person can look at it."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        name = job.task.filename or job.task.partial_name
        target = self.quarantine_dir / f"{job.task.id}-{name}"
        job.partial.close()
        job.partial.discard_hasher()
        shutil.move(str(job.partial.path), target)
        return target

    # -- how a job ends ------------------------------------------------------------------------

    async def _end_interrupted(self, job: _Job, reason: str) -> None:
        task = job.task
        try:
            if reason == _LEASE_LOST:
                job.partial.discard_hasher()  # another process owns the bytes now
                return
            if reason == _CANCEL:
                await self._blocking(job.partial.close)
                job.partial.discard_hasher()
                await self._blocking(self._remove_partial, task, "download cancelled")
                await self._release(
                    job,
                    state=TaskState.CANCELLED,
                    bytes_done=0,
                    byte_sources={},
                    finished_at=utc_now(),
                )
                return
            self._park(job)
            state = TaskState.PAUSED if reason == _PAUSE else TaskState.QUEUED
            await self._release(job, state=state, wait_reason=None)
        except TaskNotFoundError:
            job.partial.discard_hasher()  # the lease went meanwhile: nothing is ours to record
        except ShelfError as exc:
            log.error("task %s: could not record its %s: %s", task.id, reason, exc)

    async def _end_waiting(self, job: _Job, wait: _Wait) -> None:
        self._park(job)
        with contextlib.suppress(TaskNotFoundError):
            await self._release(
                job,
                state=TaskState.QUEUED,
                wait_reason=wait.reason,
                not_before=time.time() + wait.delay,
            )

    async def _end_already_installed(self, job: _Job, model: InstalledModel) -> None:
        await self._blocking(job.partial.close)
        job.partial.discard_hasher()
        await self._blocking(
            self._remove_partial, job.task, f"already in the library as {model.model_name}"
        )
        with contextlib.suppress(TaskNotFoundError):
            await self._release(
                job,
                state=TaskState.DONE,
                model_id=model.model_id,
                model_name=model.model_name,
                hashes=model.hashes,
                bytes_done=0,
                byte_sources={},
                wait_reason=f"already in the library as {model.model_name}",
                finished_at=utc_now(),
            )

    async def _end_failed(self, job: _Job, exc: BaseException, detail: str | None = None) -> None:
        code = exc.code if isinstance(exc, ShelfError) else "INTERNAL_ERROR"
        message = exc.message if isinstance(exc, ShelfError) else f"{type(exc).__name__}: {exc}"
        log.warning("task %s failed: %s: %s", job.task.id, code, message)
        if isinstance(exc, StorageFullError):
            self._park(job)  # keep the bytes and their digests for the resume
        else:
            job.partial.discard_hasher()
        failure: dict[str, Any] = {
            "state": TaskState.FAILED,
            "error_code": code,
            "error_message": message,
            "error_detail": detail,
            "wait_reason": None,
            "finished_at": utc_now(),
        }
        try:
            try:
                await self._release(job, **failure)
            except StorageFullError:
                # Not even room to say so (another program filled the disk): give the partial
                # file's tail back, then record it. The rest is kept for the resume.
                size = await self._blocking(job.partial.give_back)
                self._forget_parked(job.task.id)
                await self._release(job, bytes_done=size, **failure)
        except TaskNotFoundError:
            pass  # lease lost meanwhile
        except ShelfError as store_exc:
            log.error(
                "task %s: could not record its failure (%s): %s", job.task.id, code, store_exc
            )

    def _remove_partial(self, task: DownloadTask, reason: str) -> None:
        path = self.partial_dir / task.partial_name
        if path.exists():
            self.delete_files([path], f"{reason} (task {task.id})")
