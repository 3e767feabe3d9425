"""Fetching one model for a run: find it in the library, else download it and wait.

`ModelFetcher` is what the Fetch Model node and the auto-fetch await node call (through the
`Shelf`), from ComfyUI's worker thread while its event loop keeps serving. It does not download
by itself: it queues a task on the download queue and waits for it, whoever runs it (this
process's engine in ComfyUI's loop, or another process holding the task's lease: two ComfyUI
installs asking for one model share one download). With no engine running in this process (a
script, a test) it runs one on a thread of its own for the task, until the task ends.

Waiting can be stopped (``should_stop``, ComfyUI's cancel) or broken by the progress callback
raising (ComfyUI's progress hook raises its interrupt exception): either way the download is
paused, its bytes kept, and asking again resumes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from .catalog import Catalog
from .command import cli_command
from .downloads.progress import ProgressEvent
from .downloads.tasks import ControlRequest, DownloadTask, TaskOrigin, TaskState
from .errors import (
    DownloadFailedError,
    FetchInterruptedError,
    ModelNotFoundError,
    ModelUnavailableError,
    ShelfError,
)
from .installer import DownloadService, normalize_sha256
from .layout import MODEL_EXTENSIONS, check_type
from .records import Health, ModelRecord, RecordStore
from .sources import resolve_source

log = logging.getLogger("model_shelf.fetching")

POLL_SECONDS = 0.5
"""How often the task is read again while waiting (events from this process wake sooner)."""
DRIVER_STOP_SECONDS = 30.0

FetchProgress = Callable[[int, "int | None"], None]
"""Called with ``(bytes_done, total_bytes)`` while waiting; may raise to stop the wait."""
ShouldStop = Callable[[], bool]


class _EngineDriver:
    """This process's download engine, run on a thread of its own until ``task_ids`` end.

    Used only when no engine runs here already (outside ComfyUI): the engine's lease still
    keeps another process that runs the same task from downloading it twice.
    """

    def __init__(self, downloads: DownloadService, task_ids: list[str]) -> None:
        self.downloads = downloads
        self.task_ids = task_ids
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._main, name="model-shelf-fetch", daemon=True)

    def start(self) -> None:
        self.thread.start()
        self._started.wait(10)

    def _main(self) -> None:
        async def run() -> None:
            self.loop = asyncio.get_running_loop()
            self._started.set()
            await self.downloads.run(until_idle=True, only=self.task_ids)

        try:
            asyncio.run(run())
        except Exception:  # thread top level: the waiter sees the task not moving, and says so
            log.exception("Model Shelf: running downloads %s failed", ", ".join(self.task_ids))
        finally:
            self._started.set()

    def finish(self) -> None:
        """Stop the engine if it still runs (the wait ended early) and join its thread."""
        loop = self.loop
        if self.thread.is_alive() and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError, concurrent.futures.CancelledError):
                future = asyncio.run_coroutine_threadsafe(self.downloads.stop(), loop)
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    future.result(DRIVER_STOP_SECONDS)
        self.thread.join(DRIVER_STOP_SECONDS)


def _file_name_of(source: str) -> str | None:
    """The model file name a source ends with, offline (a URL's or Hugging Face path's last
    part), or None (a Civitai id, a repository)."""
    text = source.strip().split("?", 1)[0].split("#", 1)[0]
    path = urlsplit(text).path if "://" in text else text
    name = unquote(PurePosixPath(path.split("@", 1)[0]).name)
    return name if PurePosixPath(name).suffix.lower() in MODEL_EXTENSIONS else None


def _names_for(name: str | None, source: str) -> list[str]:
    """The names a fetch request's model would have in its type folder: ``name`` (with the
    source file's extension when it has none, as the installer names it), else the file's."""
    file_name = _file_name_of(source)
    if not name:
        return [file_name] if file_name else []
    wanted = name.replace("\\", "/").strip().strip("/")
    if PurePosixPath(wanted).suffix.lower() in MODEL_EXTENSIONS or file_name is None:
        return [wanted]
    return [wanted, wanted + PurePosixPath(file_name).suffix]


class ModelFetcher:
    """Finds a model in the library, or downloads it and waits (see the module docstring).

    Args:
        downloads (`DownloadService`): the download queue (``shelf.downloads``).
        catalog (`Catalog`): records and index.
        records (`RecordStore`): where models are on disk.
    """

    def __init__(self, downloads: DownloadService, catalog: Catalog, records: RecordStore) -> None:
        self.downloads = downloads
        self.catalog = catalog
        self.records = records

    # -- finding -------------------------------------------------------------------------------

    def _in_place(self, record: ModelRecord) -> bool:
        return record.health is not Health.MISSING and self.records.model_path(record).exists()

    def find(
        self,
        source: str,
        model_type: str,
        name: str | None = None,
        sha256: str | None = None,
    ) -> ModelRecord | None:
        """The library's model for a fetch request, if it has one in place.

        Matched by sha256 (when given: only a model with that content counts), else by source
        (a model downloaded from it), else by name (``name``, or the file name the source ends
        with), else by a source recorded on the model.

        Raises:
            `InvalidSourceError`, `UnknownTypeError`: the request is malformed.
        """
        model_type = check_type(model_type)
        index = self.catalog.index
        if sha256:
            digest = normalize_sha256(sha256)
            for record in index.by_hash(digest):
                if record.type == model_type and record.sha256 == digest and self._in_place(record):
                    return record
            return None
        key = resolve_source(source, self.downloads.settings).key
        task = self.downloads.store.latest_for_source(key)
        if task is not None and task.state is TaskState.DONE and task.model_id:
            record = index.get(task.model_id)
            if record is not None and record.type == model_type and self._in_place(record):
                return record
        for candidate in _names_for(name, source):
            record = index.get_at(model_type, candidate)
            if record is not None and self._in_place(record):
                return record
        # Recorded from this source some other way (imported with it, repaired, another
        # process's download whose task is gone): the slowest look, so the last.
        for record in index.list(model_type):
            same = any(_same_source(s.url, key, self.downloads) for s in record.sources)
            if same and self._in_place(record):
                return record
        return None

    # -- fetching ------------------------------------------------------------------------------

    def fetch(
        self,
        source: str,
        model_type: str,
        name: str | None = None,
        sha256: str | None = None,
        *,
        progress: FetchProgress | None = None,
        should_stop: ShouldStop | None = None,
        origin: TaskOrigin = TaskOrigin.USER,
    ) -> ModelRecord:
        """The model for this request: from the library, else downloaded now.

        Args:
            source (`str`): any form ``add`` takes (URL, Hugging Face path, Civitai link...).
            model_type (`str`): the type folder.
            name (`str`, *optional*): the name under the type folder (else the file's own).
            sha256 (`str`, *optional*): the expected content; a different file is refused.
            progress (`FetchProgress`, *optional*): download progress while waiting.
            should_stop (`ShouldStop`, *optional*): polled while waiting; True pauses it.
            origin (`TaskOrigin`, *optional*): who asks (a workflow: public addresses only).

        Returns:
            `ModelRecord`: the model, in place.

        Raises:
            `InvalidSourceError`, `InsecureURLError`, `UnknownTypeError`, `UnsafeNameError`:
                the request is refused (nothing queued).
            `DownloadFailedError`: the download failed (``FETCH_REFUSED``: a workflow's URL
                leads to a private address), was cancelled, or was paused by someone.
            `FetchInterruptedError`: ``should_stop`` said so; the download is paused.
            `ModelUnavailableError`: the library has that file, but in another type folder.
        """
        found = self.find(source, model_type, name, sha256)
        if found is not None:
            return found
        model_type = check_type(model_type)
        task = self.request(source, model_type, name, sha256, origin)
        task = self.wait(task.id, progress=progress, should_stop=should_stop)
        record = self.model_of(task)
        if record.type != model_type:
            # The engine found this content in the library already, in another type folder.
            raise ModelUnavailableError(
                f"the library has this file as {record.display()}, not in {model_type}; move "
                f"it there (or import it again with --type {model_type})"
            )
        return record

    def request(
        self,
        source: str,
        model_type: str,
        name: str | None = None,
        sha256: str | None = None,
        origin: TaskOrigin = TaskOrigin.USER,
    ) -> DownloadTask:
        """Queue the download of a model that is asked for now (`DownloadService.add`), and make
        sure it runs: a task still being paused (a cancelled run's wait paused it a moment
        ago) is resumed, since somebody wants the model again.

        Raises:
            As `DownloadService.add`.
        """
        return self.want(self.downloads.add(source, model_type, name, sha256, origin=origin))

    def want(self, task: DownloadTask) -> DownloadTask:
        """``task``, resumed if it is paused or has a pause pending (see `request`).

        Raises:
            `TaskNotFoundError`: no such task.
        """
        if task.state is TaskState.PAUSED or task.control is ControlRequest.PAUSE:
            return self.downloads.resume(task.id)
        return task

    def model_of(self, task: DownloadTask) -> ModelRecord:
        """The library model a finished task produced.

        Raises:
            `ModelNotFoundError`: it is gone again (removed meanwhile).
        """
        record = self.catalog.index.get(task.model_id) if task.model_id else None
        if record is None and task.model_name:
            found = self.catalog.find_all(task.model_name)
            record = found[0] if len(found) == 1 else None
        if record is None:
            raise ModelNotFoundError(
                f"download {task.id} finished as {task.model_name}, which is no longer in the "
                "library"
            )
        return record

    def name_of(self, task: DownloadTask) -> str:
        """The name under its type folder of the model a finished task produced.

        Read from the task, not the index: a repair re-records the model under its old id at
        about this moment.

        Raises:
            `ModelNotFoundError`: its file is gone again (removed meanwhile).
        """
        model_type, _, name = (task.model_name or "").partition("/")
        if not name or not self.records.layout.model_path(model_type, name).exists():
            raise ModelNotFoundError(
                f"download {task.id} finished as {task.model_name}, which is no longer in the "
                "library"
            )
        return name

    def wait(
        self,
        task_id: str,
        *,
        progress: FetchProgress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> DownloadTask:
        """Wait until a download task is done.

        Args:
            task_id (`str`): the task.
            progress (`FetchProgress`, *optional*): called with each change of its progress;
                if it raises, the task is paused and the exception goes on.
            should_stop (`ShouldStop`, *optional*): polled; True pauses the task.

        Returns:
            `DownloadTask`: the task, done.

        Raises:
            `TaskNotFoundError`: no such task.
            `DownloadFailedError`: it failed, was cancelled, or was paused by someone else.
            `FetchInterruptedError`: ``should_stop`` said so; the task is paused.
        """
        wake = threading.Event()
        live: dict[str, int | None] = {}

        def on_event(event: ProgressEvent) -> None:
            if event.task_id == task_id:
                live["bytes"], live["total"] = event.bytes_done, event.total_bytes
                wake.set()

        unsubscribe = self.downloads.subscribe(on_event)
        driver: _EngineDriver | None = None
        ended = False
        shown: tuple[int, int | None] | None = None
        try:
            while True:
                task = self.downloads.get(task_id)
                if task.state is TaskState.DONE:
                    ended = True
                    if progress is not None and task.expected_size:
                        progress(task.expected_size, task.expected_size)
                    return task
                if task.state in (TaskState.FAILED, TaskState.CANCELLED, TaskState.PAUSED):
                    ended = True
                    raise _ended_without_model(task)
                if should_stop is not None and should_stop():
                    raise FetchInterruptedError(
                        f"stopped waiting for download {task_id}; it is paused and resumes "
                        "when the model is asked for again"
                    )
                if driver is None and not self.downloads.engine.is_running:
                    driver = _EngineDriver(self.downloads, [task_id])
                    driver.start()
                done = max(task.bytes_done, live.get("bytes") or 0)
                now = (done, task.expected_size or live.get("total"))
                if progress is not None and now != shown:
                    shown = now
                    progress(*now)
                wake.wait(POLL_SECONDS)
                wake.clear()
        except BaseException:
            # Cancelled, interrupted by the host (its progress hook raised), Ctrl-C: keep the
            # bytes and let the next request resume them.
            if not ended:
                self._pause_quietly(task_id)
            raise
        finally:
            unsubscribe()
            if driver is not None:
                driver.finish()

    def _pause_quietly(self, task_id: str) -> None:
        try:
            self.downloads.pause(task_id)
        except ShelfError as exc:
            log.warning("Model Shelf: could not pause download %s: %s", task_id, exc)


def _same_source(url: str, key: str, downloads: DownloadService) -> bool:
    try:
        return resolve_source(url, downloads.settings).key == key
    except ShelfError:
        return False


def _ended_without_model(task: DownloadTask) -> DownloadFailedError:
    what = task.name or task.filename or task.source
    if task.state is TaskState.PAUSED:
        message = (
            f"the download of {what} (task {task.id}) is paused; resume it in the Model Shelf "
            f"sidebar (or '{cli_command()} resume') and run again"
        )
    elif task.state is TaskState.CANCELLED:
        message = f"the download of {what} (task {task.id}) was cancelled"
    else:
        reason = task.error_message or "failed"
        message = f"the download of {what} (task {task.id}) failed: [{task.error_code}] {reason}"
    return DownloadFailedError(message, task_id=task.id, task_code=task.error_code)


__all__ = ["FetchProgress", "ModelFetcher", "ShouldStop"]
