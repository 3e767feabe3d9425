"""Downloads into the library: the model-aware side of the download queue.

`DownloadService` is what ``shelf.downloads`` is: add a source, list tasks, pause, resume,
cancel, and run the engine (in ComfyUI's event loop, or in the CLI's own). `LibraryInstaller`
is what the engine calls when a file is complete and verified: it places the file with the
existing importer (a rename: the partial folder is inside the root), or recognises a model the
library already has. The engine itself knows nothing about models; these two do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path, PurePosixPath

from .catalog import Catalog
from .downloads.engine import DownloadEngine, InstalledModel
from .downloads.progress import ProgressListener
from .downloads.tasks import (
    DownloadTask,
    TaskOrigin,
    TaskState,
    TaskStore,
    split_credentials,
    utc_now,
)
from .errors import (
    CorruptModelError,
    InvalidSourceError,
    NameClashError,
    NotAModelError,
    ShelfError,
    TaskNotFoundError,
    UnknownTypeError,
)
from .hashing import Hashes
from .imports import Importer, ImportMode, UnitHashes, find_unit
from .layout import MODEL_EXTENSIONS, Layout, check_type, safe_name
from .probe import probe_file
from .records import ModelRecord, SourceRef
from .removal import Remover
from .settings import DownloadSettings
from .sources import RemoteFile, resolve_source
from .sources.content import KIND as CONTENT_KIND
from .stored_settings import TaskCredentials, URLCredentials

QUARANTINE_DIRNAME = "quarantine"
"""``.shelf/quarantine/``: downloads that failed verification, kept for a person to inspect."""

# What the probe calls a file -> the type folder it belongs in, when the user gave no --type.
_KIND_TO_TYPE: dict[str, str] = {
    "checkpoint": "checkpoints",
    "diffusion_model": "diffusion_models",
    "lora": "loras",
    "vae": "vae",
    "text_encoder": "text_encoders",
    "controlnet": "controlnet",
    "clip_vision": "clip_vision",
    "upscaler": "upscale_models",
    "embedding": "embeddings",
}

ORPHAN_CREDENTIALS_SECONDS = 3600.0
"""Credentials whose task is in no queue are deleted once this old: `DownloadService.add` writes
them just before it inserts the task, so a younger file may belong to a task about to appear."""

_SHA256 = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


def quarantine_dir(layout: Layout) -> Path:
    return layout.state_dir / QUARANTINE_DIRNAME


def normalize_sha256(value: str) -> str:
    """``"ABC..."`` or ``"sha256:abc..."`` -> ``"sha256:abc..."``.

    Raises:
        `InvalidSourceError`: not 64 hex digits.
    """
    match = _SHA256.match(value.strip())
    if match is None:
        raise InvalidSourceError(f"not a sha256 digest: {value!r} (expected 64 hex digits)")
    return f"sha256:{match[1].lower()}"


def _record_name(task: DownloadTask) -> str:
    """The name in the type folder: ``--name`` (keeping the file's extension), else the file's."""
    filename = task.filename or "download"
    if not task.name:
        return filename
    suffix = PurePosixPath(filename).suffix
    if PurePosixPath(task.name).suffix.lower() in MODEL_EXTENSIONS or not suffix:
        return task.name
    return task.name + suffix


class LibraryInstaller:
    """Places verified downloads in the library (the engine's `Installer`)."""

    def __init__(
        self, layout: Layout, catalog: Catalog, importer: Importer, remover: Remover
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.importer = importer
        self.remover = remover

    def find_installed(self, sha256: str) -> InstalledModel | None:
        """The model with exactly this sha256, if the library has one."""
        for record in self.catalog.index.by_hash(sha256):
            if record.hashes.get("sha256") == sha256:
                return _installed(record)
        return None

    def check_destination(self, task: DownloadTask, remote: RemoteFile) -> None:
        """Refuse early what could not be installed later: unknown type, a name already taken.

        Raises:
            `UnknownTypeError`, `UnsafeNameError`, `NameClashError`.
        """
        model_type = task.model_type or remote.model_type
        if model_type is None:
            return  # decided from the file's content once it is here
        model_type = check_type(model_type)
        filename = task.filename or remote.filename
        if filename is None and not task.name:
            return
        name = safe_name(_record_name(task.model_copy(update={"filename": filename})))
        path = self.layout.model_path(model_type, name)
        if path.exists() or self.layout.sidecar_for(path).exists():
            raise NameClashError(
                f"{model_type}/{name} already exists and is a different model; "
                "add the download again with another --name",
                path=str(path),
            )

    def install(self, task: DownloadTask, path: Path, hashes: Hashes) -> InstalledModel:
        """Move the verified file at ``path`` into the library and record it.

        The file is first renamed to its real name in a folder of its own (the importer decides
        what a file is by its extension). A file that is not a usable model is quarantined; on
        any other failure it is put back at ``path``, so that a resume can try again.

        Raises:
            `UnknownTypeError`: no ``--type`` and the content does not say.
            `NotAModelError`, `CorruptModelError`: the file is not a model (quarantined).
            `NameClashError`, `StorageFullError`: nothing was changed.
        """
        staging_dir = path.parent / task.id
        staging_dir.mkdir(exist_ok=True)
        staged = staging_dir / safe_name(PurePosixPath(task.filename or "download").name)
        os.replace(path, staged)
        try:
            existing = self.find_installed(hashes["sha256"])
            if existing is not None:
                self.remover.delete(
                    [staged], reason=f"downloaded copy of {existing.model_name} (task {task.id})"
                )
                return existing
            unit = find_unit(staged)
            model_type = task.model_type or _type_from_content(staged)
            record = self.importer.import_unit(
                unit,
                model_type,
                ImportMode.MOVE,
                name=_record_name(task),
                known_hashes=UnitHashes(files={staged.name: hashes}, model=hashes),
                sources=[SourceRef.model_validate(task.source_ref)] if task.source_ref else [],
            )
            return _installed(record)
        except (NotAModelError, CorruptModelError):
            target = quarantine_dir(self.layout) / f"{task.id}-{staged.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            raise
        except ShelfError:
            if staged.exists():
                os.replace(staged, path)
            raise
        finally:
            with contextlib.suppress(OSError):
                staging_dir.rmdir()

    def restore(self, task: DownloadTask, path: Path) -> None:
        """Undo the staging rename of an `install` that a crash interrupted, so the complete
        bytes are verified and installed again instead of fetched again."""
        staging_dir = path.parent / task.id
        if path.exists() or not staging_dir.is_dir():
            return
        staged = [p for p in staging_dir.iterdir() if p.is_file()]
        if len(staged) == 1:
            os.replace(staged[0], path)
        with contextlib.suppress(OSError):
            staging_dir.rmdir()


def _type_from_content(path: Path) -> str:
    kind = probe_file(path).kind
    model_type = _KIND_TO_TYPE.get(kind or "")
    if model_type is None:
        raise UnknownTypeError(
            f"cannot tell what kind of model {path.name} is; add it again with --type"
        )
    return model_type


def _installed(record: ModelRecord) -> InstalledModel:
    return InstalledModel(model_id=record.id, model_name=record.display(), hashes=record.hashes)


class DownloadService:
    """``shelf.downloads``: the download queue of one library, and the engine that runs it.

    Control methods (`add`, `pause`, `resume`, `cancel`, `list`) are synchronous and quick
    (one SQLite transaction); from async code call them through ``asyncio.to_thread``. They act
    on tasks whichever process runs them. `run` is the engine itself (async); `run_foreground`
    runs it on a loop of its own, for the CLI.
    """

    def __init__(
        self,
        store: TaskStore,
        engine: DownloadEngine,
        installer: LibraryInstaller,
        catalog: Catalog,
        settings: DownloadSettings,
        credentials: TaskCredentials,
    ) -> None:
        self.store = store
        self.engine = engine
        self.installer = installer
        self.catalog = catalog
        self.settings = settings
        self.credentials = credentials
        """Where a source URL's ``user:password@`` goes (issue #15)."""

    def add(
        self,
        source: str,
        model_type: str | None = None,
        name: str | None = None,
        sha256: str | None = None,
        priority: int = 0,
        origin: TaskOrigin = TaskOrigin.USER,
    ) -> DownloadTask:
        """Queue a download, unless the library has it or a task for it exists already.

        Args:
            source (`str`): a URL, Hugging Face path, Civitai link or id, or AIR.
            model_type (`str`, *optional*): the type folder; else the source's (Civitai) or the
                file's content decides.
            name (`str`, *optional*): name under the type folder; else the file's own name.
            sha256 (`str`, *optional*): expected digest (hex, or ``sha256:hex``).
            priority (`int`, *optional*): higher runs first.
            origin (`TaskOrigin`, *optional*): who asks. A workflow's download may reach only
                public addresses and allowed hosts; the user asking for a task a workflow
                queued lifts that (the user chose the URL now).

        Returns:
            `DownloadTask`: the new task; or the existing one for the same source (a paused or
            failed one is queued again); or a ``done`` task naming the model already there.

        Raises:
            `InvalidSourceError`, `InsecureURLError`: the source is refused (nothing queued).
            `UnknownTypeError`, `UnsafeNameError`: bad ``model_type`` or ``name``.
        """
        # The state.db row never holds a user:password@ or a ?token=: they go to the task's
        # credentials file.
        source, credentials = split_credentials(source.strip())
        resolved = resolve_source(source, self.settings)
        model_type = check_type(model_type) if model_type else None
        name = safe_name(name) if name else None
        expected = normalize_sha256(sha256) if sha256 else None
        if resolved.kind == CONTENT_KIND:  # the source is the digest itself
            if expected not in (None, resolved.key):
                raise InvalidSourceError(f"{resolved.key} is not the sha256 given ({expected})")
            expected = resolved.key
        previous = self.store.latest_for_source(resolved.key)
        if (
            previous is not None
            and origin is TaskOrigin.USER
            and previous.origin is not origin
            and (not previous.in_terminal_state or previous.state is TaskState.FAILED)
        ):
            previous = self.store.update(previous.id, origin=origin)
        if previous is not None:
            if previous.state in (TaskState.PAUSED, TaskState.FAILED):
                # Asked again, perhaps with what was missing (--type after UNKNOWN_TYPE, the
                # password after AUTH_REQUIRED): keep the bytes already here and take the new
                # destination and credentials.
                changes = {"model_type": model_type, "name": name, "expected_sha256": expected}
                changes = {k: v for k, v in changes.items() if v is not None}
                if changes:
                    self.store.update(previous.id, **changes)
                self._keep_credentials(previous.id, credentials)
                return self.resume(previous.id)
            if not previous.in_terminal_state:
                self._keep_credentials(previous.id, credentials)  # read when it next starts
                return previous
            model_id = previous.model_id if previous.state is TaskState.DONE else None
            if model_id and self.catalog.index.get(model_id) is not None:
                return previous  # the library has it: never download the same model twice
        task = DownloadTask(
            source=source,
            source_key=resolved.key,
            source_kind=resolved.kind,
            model_type=model_type,
            name=name,
            priority=priority,
            origin=origin,
            expected_sha256=expected,
        )
        existing = self.installer.find_installed(expected) if expected else None
        if existing is not None:
            task.state = TaskState.DONE
            task.model_id, task.model_name = existing.model_id, existing.model_name
            task.hashes = existing.hashes
            task.wait_reason = f"already in the library as {existing.model_name}"
            task.finished_at = utc_now()
        else:
            # Before the row: an engine (of any process) may claim the task the moment it is
            # inserted, and must find its credentials then.
            self._keep_credentials(task.id, credentials)
        queued, is_new = self.store.insert(task)
        if not is_new and credentials is not None:
            # Another process queued the same file meanwhile: that task gets them.
            self.credentials.forget([task.id])
            if not queued.in_terminal_state:
                self._keep_credentials(queued.id, credentials)
        self.credentials.forget(self.store.prune_finished(self.settings.finished_tasks_kept))
        self.engine.wake()
        return queued

    def forget_stale_credentials(self) -> None:
        """Delete credentials that a crash left behind: their task ended (done, cancelled)
        before they were deleted, or it is in no queue at all.

        Raises:
            `TaskStoreError`: the queue cannot be read.
        """
        stale = []
        for task_id in self.credentials.task_ids():
            try:
                state = self.store.get(task_id).state
            except TaskNotFoundError:
                path = self.credentials.path(task_id)
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - path.stat().st_mtime > ORPHAN_CREDENTIALS_SECONDS:
                        stale.append(task_id)
                continue
            if state in (TaskState.DONE, TaskState.CANCELLED):
                stale.append(task_id)
        self.credentials.forget(stale)

    def _keep_credentials(self, task_id: str, credentials: URLCredentials | None) -> None:
        if credentials is not None:
            self.credentials.put(task_id, credentials)

    def get(self, task_id: str) -> DownloadTask:
        """Raises `TaskNotFoundError` if there is no such task."""
        return self.store.get(task_id)

    def list(self, states: Iterable[TaskState] | None = None) -> list[DownloadTask]:
        return self.store.list(states)

    def page(self, offset: int = 0, limit: int = 100) -> tuple[list[DownloadTask], int]:
        """A window of the task list (unfinished first) and the number of tasks; see
        `TaskStore.page`."""
        return self.store.page(offset, limit)

    def counts(self) -> dict[str, int]:
        """How many tasks are in each state."""
        return self.store.count_by_state()

    def pause(self, task_id: str) -> DownloadTask:
        """Pause one task; see `DownloadEngine.pause`."""
        return self.engine.pause(task_id)

    def resume(self, task_id: str) -> DownloadTask:
        """Queue a paused or failed task again; see `DownloadEngine.resume`."""
        return self.engine.resume(task_id)

    def cancel(self, task_id: str) -> DownloadTask:
        """Cancel one task and remove its partial file; see `DownloadEngine.cancel`."""
        return self.engine.cancel(task_id)

    def pause_all(self) -> list[DownloadTask]:
        active = [TaskState.QUEUED, TaskState.DOWNLOADING, TaskState.VERIFYING]
        return [self.pause(t.id) for t in self.list(active)]

    def resume_all(self) -> list[DownloadTask]:
        return [self.resume(t.id) for t in self.list([TaskState.PAUSED, TaskState.FAILED])]

    def cancel_all(self) -> list[DownloadTask]:
        unfinished = [s for s in TaskState if s not in (TaskState.DONE, TaskState.CANCELLED)]
        return [self.cancel(t.id) for t in self.list(unfinished)]

    def engines_running(self) -> int:
        """How many processes run an engine on the whole queue of this library now (ComfyUI,
        ``serve``); with none, queued downloads wait. See `TaskStore.engines_running`.

        Raises:
            `TaskStoreError`: the queue cannot be read.
        """
        return self.store.engines_running()

    def subscribe(self, listener: ProgressListener) -> Callable[[], None]:
        """Receive every `ProgressEvent` of this process's engine; returns the unsubscriber."""
        return self.engine.events.subscribe(listener)

    async def run(self, *, until_idle: bool = False, only: Collection[str] | None = None) -> None:
        """Run the engine in the current event loop (see `DownloadEngine.run`)."""
        await self.engine.run(until_idle=until_idle, only=only)

    async def stop(self, *, pause: bool = False) -> None:
        await self.engine.stop(pause=pause)

    def run_foreground(
        self, task_ids: Collection[str], listener: ProgressListener | None = None
    ) -> list[DownloadTask]:
        """Run the engine on a loop of its own until these tasks end (or are paused).

        Ctrl-C pauses them: their partial data is kept and ``resume`` continues them.

        Returns:
            `list[DownloadTask]`: the tasks as they ended.
        """
        unsubscribe = self.subscribe(listener) if listener is not None else None
        try:
            asyncio.run(self.engine.run(until_idle=True, only=task_ids))
        except KeyboardInterrupt:
            for task_id in task_ids:
                if not self.get(task_id).in_terminal_state:
                    self.pause(task_id)
            raise
        finally:
            if unsubscribe is not None:
                unsubscribe()
        return [self.get(task_id) for task_id in task_ids]
