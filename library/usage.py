"""Counting model uses without slowing down the ComfyUI code that notices them.

Two kinds of sighting reach `UsageRecorder`, both appended to a deque (thread-safe, no lock, no
I/O), so ComfyUI's ``get_full_path`` and its prompt worker stay fast:

- ``note``: ComfyUI resolved a library model's path (`FolderPathsBridge`);
- ``run_started`` / ``run_finished``: ComfyUI's prompt queue took a prompt and finished it
  (`comfy_runs`), with its prompt, status messages and times.

A background thread saves them in order. A run counts once for every library model it used:
those its loader inputs name (cached loaders too) and those resolved while it ran. Paths
resolved outside any run count one use each, as before runs were observed. Each use raises the
record's ``usage.count`` and ``usage.last_used`` (the totals, through `Catalog.save`) and goes
into the usage log (`UsageStore`: per day, workflow, run time, failed loads). Usage is best
effort: a use that cannot be saved (root gone, bad record) is logged and lost.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .comfy_runs import RunReport
from .errors import ShelfError
from .records import ModelRecord
from .shelf import Shelf
from .usage_log import RunEntry, RunUse
from .workflows import library_model, model_entries, prompt_inputs

log = logging.getLogger(__name__)

USAGE_FLUSH_SECONDS = 2.0
"""How often noted uses are written to the records."""

WorkflowNamer = Callable[[str], "str | None"]
"""A workflow's saved name from its id (ComfyUI's user workflows folder), or None."""


@dataclass
class _Note:
    model_type: str
    name: str
    when: float


@dataclass
class _Started:
    prompt_id: str
    when: float


@dataclass
class _OpenRun:
    prompt_id: str
    resolved: list[_Note] = field(default_factory=list)


class UsageRecorder:
    """Collects uses and runs and saves them from its own thread (see the module)."""

    def __init__(
        self,
        shelf: Shelf,
        interval: float = USAGE_FLUSH_SECONDS,
        workflow_names: WorkflowNamer | None = None,
    ) -> None:
        self.shelf = shelf
        self.interval = interval
        self.workflow_names = workflow_names
        self._pending: collections.deque[_Note | _Started | RunReport] = collections.deque()
        self._open: _OpenRun | None = None
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushed = threading.Event()
        """Set after each flush (tests wait on it)."""

    def note(self, model_type: str, name: str) -> None:
        """Record one use of ``type/name`` now. Never blocks and never touches the disk."""
        self._pending.append(_Note(model_type, name, time.time()))

    def run_started(self, prompt_id: str, when: float) -> None:
        """ComfyUI's worker took a prompt (`comfy_runs.RunListener`)."""
        self._pending.append(_Started(prompt_id, when))

    def run_finished(self, report: RunReport) -> None:
        """ComfyUI finished a prompt (`comfy_runs.RunListener`)."""
        self._pending.append(report)

    def flush(self) -> int:
        """Save every noted use and finished run; returns how many records were updated."""
        with self._flush_lock:
            totals: dict[str, tuple[ModelRecord, int, float]] = {}
            loose: list[tuple[RunUse, float]] = []
            while self._pending:
                event = self._pending.popleft()
                if isinstance(event, _Note):
                    if self._open is not None:
                        self._open.resolved.append(event)
                    else:
                        self._loose(event, totals, loose)
                elif isinstance(event, _Started):
                    self._close_lost(totals, loose)
                    self._open = _OpenRun(event.prompt_id)
                else:
                    resolved = []
                    if self._open is not None and self._open.prompt_id == event.prompt_id:
                        resolved = self._open.resolved
                        self._open = None
                    self._finish(event, resolved, totals)
            self._log_loose(loose)
            saved = sum(
                1 for record, count, last in totals.values() if self._save(record, count, last)
            )
            self.flushed.set()
            return saved

    # -- uses ----------------------------------------------------------------

    def _record_at(self, model_type: str, name: str) -> ModelRecord | None:
        try:
            return self.shelf.index.get_at(model_type, name)
        except ShelfError as exc:
            log.info("Model Shelf: use of %s/%s not recorded: %s", model_type, name, exc)
            return None

    def _loose(
        self,
        note: _Note,
        totals: dict[str, tuple[ModelRecord, int, float]],
        loose: list[tuple[RunUse, float]],
    ) -> None:
        record = self._record_at(note.model_type, note.name)
        if record is None:
            return
        _add(totals, record, note.when)
        loose.append((RunUse(record.id, record.display()), note.when))

    def _close_lost(
        self, totals: dict[str, tuple[ModelRecord, int, float]], loose: list[tuple[RunUse, float]]
    ) -> None:
        """A run that never reported its end (ComfyUI's worker died): its paths count alone."""
        if self._open is not None:
            for note in self._open.resolved:
                self._loose(note, totals, loose)
            self._open = None

    def _finish(
        self,
        report: RunReport,
        resolved: list[_Note],
        totals: dict[str, tuple[ModelRecord, int, float]],
    ) -> None:
        uses: dict[str, RunUse] = {}
        records: dict[str, ModelRecord] = {}
        for record, outcome in run_models(self.shelf, report):
            records[record.id] = record
            if uses.get(record.id) is None or outcome == "failed":
                uses[record.id] = RunUse(record.id, record.display(), outcome)
        for note in resolved:
            record = self._record_at(note.model_type, note.name)
            if record is not None and record.id not in uses:
                records[record.id] = record
                uses[record.id] = RunUse(record.id, record.display())
        key, name = workflow_key(report)
        if name is None and self.workflow_names is not None and not key.startswith("prompt:"):
            name = self.workflow_names(key)
        entry = RunEntry(
            prompt_id=report.prompt_id,
            started_at=report.started_at,
            ended_at=report.ended_at,
            status=report.status,
            uses=list(uses.values()),
            workflow_key=key,
            workflow_name=name,
            error_node_type=report.error_node_type,
            error_message=report.error_message,
        )
        try:
            self.shelf.usage_log.add_run(entry)
        except (ShelfError, OSError) as exc:
            log.info("Model Shelf: run %s not recorded: %s", report.prompt_id, exc)
        for use in uses.values():
            if use.outcome != "failed":
                _add(totals, records[use.model_id], report.started_at)

    def _log_loose(self, loose: list[tuple[RunUse, float]]) -> None:
        try:
            self.shelf.usage_log.add_uses(loose)
        except (ShelfError, OSError) as exc:
            log.info("Model Shelf: %d uses not logged: %s", len(loose), exc)

    def _save(self, record: ModelRecord, count: int, last: float) -> bool:
        try:
            # Read the sidecar itself, not the index row: it is the truth, and the window in
            # which another writer's change could be lost stays as small as it can be.
            current = self.shelf.records.read(self.shelf.records.sidecar_path(record))
            current.usage.count += count
            stamp = datetime.fromtimestamp(last, timezone.utc)
            if current.usage.last_used is None or current.usage.last_used < stamp:
                current.usage.last_used = stamp
            self.shelf.catalog.save(current)
        except (ShelfError, OSError) as exc:
            log.info("Model Shelf: use of %s not recorded: %s", record.display(), exc)
            return False
        return True

    # -- thread --------------------------------------------------------------

    def start(self) -> None:
        """Start the saving thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-shelf-usage", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, wait for it, and save what is still pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # thread top level: log and keep counting
                log.exception("Model Shelf: saving model usage failed")


def _add(totals: dict[str, tuple[ModelRecord, int, float]], record: ModelRecord, when: float):
    _, count, last = totals.get(record.id, (record, 0, 0.0))
    totals[record.id] = (record, count + 1, max(last, when))


def _upstream(prompt: dict[str, Any], outputs: Iterable[str]) -> set[str]:
    """The nodes the outputs depend on (ComfyUI runs only those), outputs included."""
    seen: set[str] = set()
    stack = [o for o in outputs if o in prompt]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        inputs = prompt.get(node_id, {}).get("inputs", {})
        if isinstance(inputs, dict):
            for value in inputs.values():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                    stack.append(str(value[0]))
    return seen


def run_models(shelf: Shelf, report: RunReport) -> list[tuple[ModelRecord, str]]:
    """The library models a run's loader inputs name, with ``used`` or ``failed`` (the loader
    is the node the run failed in). Only nodes that ran or came from the cache count."""
    prompt = report.prompt
    nodes = _upstream(prompt, report.outputs) if report.outputs else set(prompt)
    if report.status != "success" and report.executed is not None:
        nodes &= {*report.executed, *report.cached, report.error_node_id or ""}
    workflow = (report.extra_data.get("extra_pnginfo") or {}).get("workflow")
    entries = model_entries(workflow) if isinstance(workflow, dict) else []
    found = []
    for model_input in prompt_inputs(prompt, entries):
        if model_input.node_id not in nodes:
            continue
        record = library_model(shelf, model_input.value, model_input.model_type)
        if record is None:
            continue
        failed = report.status == "error" and model_input.node_id == report.error_node_id
        found.append((record, "failed" if failed else "used"))
    return found


def workflow_key(report: RunReport) -> tuple[str, str | None]:
    """Which workflow a run came from: the UI workflow's ``id`` (the page saves it in the
    workflow and in the file it saves), else a fingerprint of the prompt's node types."""
    pnginfo = report.extra_data.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    if isinstance(workflow, dict) and isinstance(workflow.get("id"), str) and workflow["id"]:
        return workflow["id"], None
    types = sorted(
        {str(n.get("class_type")) for n in report.prompt.values() if isinstance(n, dict)}
    )
    digest = hashlib.sha1(json.dumps(types).encode()).hexdigest()[:12]
    shown = ", ".join(types[:4]) + (", ..." if len(types) > 4 else "")
    return f"prompt:{digest}", f"API prompt ({shown})"


class SavedWorkflowNames:
    """Workflow ids to the names the page saved them under (``<user>/default/workflows``),
    read again at most every ``refresh_seconds`` when an id is not known yet."""

    def __init__(self, folder: Path, refresh_seconds: float = 30.0) -> None:
        self.folder = folder
        self.refresh_seconds = refresh_seconds
        self._names: dict[str, str] = {}
        self._scanned = float("-inf")

    def __call__(self, workflow_id: str) -> str | None:
        if workflow_id not in self._names and time.monotonic() - self._scanned > (
            self.refresh_seconds
        ):
            self._scan()
        return self._names.get(workflow_id)

    def _scan(self) -> None:
        self._scanned = time.monotonic()
        names: dict[str, str] = {}
        for path in sorted(self.folder.rglob("*.json")) if self.folder.is_dir() else ():
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                names[data["id"]] = path.relative_to(self.folder).with_suffix("").as_posix()
        self._names = names
