"""Repair: fetch a corrupted or missing model again from its recorded source, through the
download queue (no second downloader), and verify it.

A repair has two halves, so it can run inside ComfyUI where the download engine works in the
event loop, as well as in the CLI where it runs in the foreground:

1. `Repairer.start`: the bad file is set aside as ``.shelf/repair/<id>-<file>`` (kept until the
   repair succeeds, put back if it fails), the record is written down in
   ``.shelf/repair/<id>.json`` and its sidecar removed (journaled) so the name is free; then a
   download of the recorded source is queued, for the same type and name, expecting the
   recorded sha256 (a file with other content is refused by the engine).
2. `Repairer.finish` (once the task ended; `finish_ready` does every one that did): the new
   record takes the old one's id, names, aliases, tags, usage and sources back, is verified,
   and the set-aside file is removed. If the download failed or was cancelled, the old file and
   record are put back as they were.

Only single-file models are repaired this way (sources name one file).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..catalog import Catalog
from ..downloads.progress import ProgressEvent
from ..downloads.tasks import TERMINAL_STATES
from ..errors import ShelfError, TaskNotFoundError
from ..fsutil import atomic_write_bytes, fsync_dir
from ..imports import HashTiming, Importer, find_unit
from ..installer import DownloadService
from ..layout import Layout
from ..records import Health, ModelKind, ModelRecord, utc_now
from ..removal import Remover
from ..verify import Verifier

log = logging.getLogger("model_shelf.health")

REPAIR_DIRNAME = "repair"
DAMAGED_DIRNAME = "damaged"
"""Under ``.shelf/``: damaged records set aside by `Repairer.recreate`, kept for people."""


@dataclass
class RepairJob:
    model_id: str
    model: str
    """``type/name``."""
    task_id: str


@dataclass
class RepairResult:
    model: str
    ok: bool
    detail: str
    task_id: str | None = None


def repair_source(record: ModelRecord) -> str | None:
    """Where to download ``record`` again: its first recorded source, else the source its
    metadata found (issue #12), else None."""
    own = next((s.url for s in record.sources if s.url), None)
    return own or record.metadata.source_url()


def repairable(record: ModelRecord) -> bool:
    """True if ``record`` can be fetched again: a single file with a source."""
    return record.kind is ModelKind.FILE and repair_source(record) is not None


class Repairer:
    """Re-downloads broken models. See the module docstring for the two halves."""

    def __init__(
        self,
        layout: Layout,
        catalog: Catalog,
        remover: Remover,
        verifier: Verifier,
        downloads: DownloadService,
        importer: Importer,
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.remover = remover
        self.verifier = verifier
        self.downloads = downloads
        self.importer = importer
        self._started: set[str] = set()  # task ids of repairs started by this process

    @property
    def folder(self) -> Path:
        return self.layout.state_dir / REPAIR_DIRNAME

    def _intent(self, model_id: str) -> Path:
        return self.folder / f"{model_id}.json"

    # -- the first half ------------------------------------------------------------------------

    def start(self, record: ModelRecord) -> RepairJob:
        """Set the broken model aside and queue its download (see the module docstring).

        Raises:
            `ShelfError`: the model cannot be repaired (no source, not a single file) or the
                source is refused; nothing was changed then.
        """
        if not repairable(record):
            raise ShelfError(
                f"{record.display()} has no source to download it from again "
                "(import a good copy, or remove it with rm)"
            )
        if self._intent(record.id).exists():
            job = self._load(record.id)
            if job is not None:
                return job
        source = repair_source(record) or ""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.catalog.lock:  # the watcher must not save the record back meanwhile
            set_aside = self._set_aside(record)
            intent = {"record": record.model_dump(mode="json"), "set_aside": set_aside}
            atomic_write_bytes(self._intent(record.id), json.dumps(intent).encode())
            self.remover.delete(
                [self.catalog.records.sidecar_path(record)],
                reason=f"repair: downloading {record.display()} again from {source}",
                record=record,
            )
            self.catalog.index.delete(record.id)
        try:
            task = self.downloads.add(
                source, record.type, record.name, sha256=record.hashes.get("sha256")
            )
        except ShelfError:
            self._restore(record, set_aside)
            raise
        intent["task_id"] = task.id
        atomic_write_bytes(self._intent(record.id), json.dumps(intent).encode())
        self._started.add(task.id)
        return RepairJob(record.id, record.display(), task.id)

    def _set_aside(self, record: ModelRecord) -> list[list[str]]:
        """Move the model's present files to ``.shelf/repair/<id>-<file>``; ``[[from, to]]``.

        One flat folder: no folder per repair (a watcher would see a folder created inside a
        folder just created, which watchdog's inotify bookkeeping handles noisily)."""
        moved = []
        for path in self.catalog.records.file_paths(record):
            if not path.exists():
                continue
            target = self.folder / f"{record.id}-{path.name}"
            try:
                os.replace(path, target)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # Another filesystem (a type folder on its own mount): the bad copy is not
                # worth a slow copy; it is deleted, journaled.
                self.remover.delete([path], reason=f"repair: corrupted copy of {record.display()}")
                continue
            moved.append([str(path), str(target)])
        return moved

    # -- the second half -----------------------------------------------------------------------

    def finish(self, job: RepairJob) -> RepairResult | None:
        """Complete a repair whose download ended; None while it is still running."""
        try:
            task = self.downloads.get(job.task_id)
        except TaskNotFoundError:
            task = None
        intent = json.loads(self._intent(job.model_id).read_bytes())
        old = ModelRecord.model_validate(intent["record"])
        set_aside = intent.get("set_aside", [])
        if task is not None and not task.in_terminal_state:
            return None  # still queued or running, or paused: kept for later
        if task is None or task.state.value != "done":
            why = task.error_message if task is not None else "its download task is gone"
            why = why or (task.state.value if task is not None else "")
            self._restore(old, set_aside)
            return RepairResult(job.model, False, f"download did not finish: {why}", job.task_id)
        new = self.catalog.index.get_at(old.type, old.name)
        if new is None:
            self._restore(old, set_aside)
            return RepairResult(
                job.model,
                False,
                f"downloaded as {task.model_name}, not at {old.display()}",
                job.task_id,
            )
        merged = self._merge(old, new)
        result = self.verifier.verify(merged)
        if result.health is not Health.OK:
            return RepairResult(job.model, False, f"downloaded copy: {result.detail}", job.task_id)
        leftovers = [Path(to) for _, to in set_aside]
        self.remover.delete(
            [*leftovers, self._intent(old.id)],
            reason=f"repair of {old.display()} done: replaced by a verified download",
        )
        return RepairResult(job.model, True, "downloaded again and verified", job.task_id)

    def _merge(self, old: ModelRecord, new: ModelRecord) -> ModelRecord:
        """The downloaded record under the old identity: id, aliases, tags, usage, sources."""
        merged = old.model_copy(deep=True)
        merged.files, merged.size = new.files, new.size
        merged.hashes, merged.hash_state, merged.probe = new.hashes, new.hash_state, new.probe
        merged.health, merged.health_detail = Health.OK, None
        merged.archived_at = None  # an archived stub fetched again is a whole model again
        known = {s.url for s in merged.sources}
        merged.sources += [s for s in new.sources if s.url not in known]
        self.catalog.index.delete(new.id)
        self.catalog.save(merged)
        return merged

    def _restore(self, record: ModelRecord, set_aside: list[list[str]]) -> None:
        """Put the old file and record back, as they were before the repair started."""
        for original, aside in set_aside:
            if Path(aside).exists() and not Path(original).exists():
                os.replace(aside, original)
        self.catalog.save(record)
        self.remover.delete(
            [self._intent(record.id)],
            reason=f"repair of {record.display()} undone",
        )

    def _load(self, model_id: str) -> RepairJob | None:
        try:
            intent = json.loads(self._intent(model_id).read_bytes())
        except (OSError, ValueError):
            return None
        task_id = intent.get("task_id")
        if not task_id:
            return None
        record = intent["record"]
        return RepairJob(model_id, f"{record['type']}/{record['name']}", task_id)

    def pending(self) -> list[RepairJob]:
        """Repairs started and not finished (in this process or another, before or after a
        restart)."""
        jobs = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.exists() else []:
            job = self._load(path.stem)
            if job is not None:
                jobs.append(job)
        return jobs

    def finish_ready(self) -> list[RepairResult]:
        """`finish` every repair whose download has ended."""
        results = []
        for job in self.pending():
            try:
                result = self.finish(job)
            except (ShelfError, OSError) as exc:
                log.warning("Model Shelf: finishing the repair of %s failed: %s", job.model, exc)
                continue
            if result is not None:
                results.append(result)
        return results

    def recreate(self, record: ModelRecord) -> RepairResult:
        """Re-create a damaged record (`Health.DAMAGED`) from its model file, hashing it. The
        damaged sidecar is kept, moved to ``.shelf/damaged/<type>/<name>.shelf.json.<time>``:
        never overwritten, never deleted.
        """
        sidecar = self.catalog.records.sidecar_path(record)
        location = self.catalog.records.model_path(record)
        try:
            unit = find_unit(location)
        except ShelfError as exc:
            return RepairResult(record.display(), False, f"cannot re-create the record: {exc}")
        stamp = utc_now().strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.layout.state_dir / DAMAGED_DIRNAME / record.type / f"{record.name}.shelf.json"
        aside = aside.with_name(f"{aside.name}.{stamp}")
        aside.parent.mkdir(parents=True, exist_ok=True)
        if sidecar.exists():
            os.replace(sidecar, aside)  # same disk: the state folder is inside the root
            fsync_dir(sidecar.parent)
        self.catalog.index.delete(record.id)
        try:
            new = self.importer.register_in_place(unit, hashing=HashTiming.NOW)
        except (ShelfError, OSError) as exc:
            return RepairResult(record.display(), False, f"cannot re-create the record: {exc}")
        log.info(
            "Model Shelf: record of %s re-created; the damaged one is %s", new.display(), aside
        )
        return RepairResult(new.display(), True, f"record re-created; the damaged one is {aside}")

    def repair_now(self, record: ModelRecord) -> RepairResult:
        """Repair one model in the foreground: download (on a loop of its own), then verify.
        A damaged record is re-created from the model file instead (`recreate`).

        For the CLI and scripts; inside ComfyUI use `start` and let the running engine do it.
        """
        if record.health is Health.DAMAGED:
            return self.recreate(record)
        try:
            job = self.start(record)
        except ShelfError as exc:
            return RepairResult(record.display(), False, exc.message)
        self.downloads.run_foreground([job.task_id])
        result = self.finish(job)
        if result is None:  # paused (Ctrl-C): kept for the next run
            return RepairResult(job.model, False, "download paused; run repair again", job.task_id)
        return result

    def on_progress(self, event: ProgressEvent) -> None:
        """A download listener for automatic repair: finishes a repair once its download ends.

        Called on the engine's event-loop thread, so the finishing (it reads the new file to
        verify it) runs in the loop's executor.
        """
        if event.state not in TERMINAL_STATES or event.task_id not in self._started:
            return
        self._started.discard(event.task_id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # published outside the loop (engine not running): finish here
            self.finish_ready()
            return
        future = loop.run_in_executor(None, self.finish_ready)
        future.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[list[RepairResult]]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("Model Shelf: finishing repairs failed", exc_info=future.exception())
