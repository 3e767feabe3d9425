"""`Watcher`: keeps the index current while the library is open, from file events.

A watchdog observer over the library root feeds a thin handler; a debouncer coalesces bursts
into batches; one worker thread turns each batch into index updates through the `Reconciler`
(never SQLite on the observer's thread). Per batch:

- a file renamed or moved inside the type folders takes its record along (same id, same
  digests, nothing read); moved out of them it is a deletion, moved in a creation;
- a deleted model's record is marked `MISSING` (a ghost, reported; its sidecar is kept);
- a new model is recorded only once complete: nobody has it open for writing (on Linux a read
  lease tells, see `open_for_writing`), or, where that cannot be told, its size and mtime have
  stayed the same for `HealthSettings.settle_seconds`; a model that appears whole (hardlinked or
  renamed into place, as imports do) first gets `HealthSettings.placed_grace_seconds` for its
  importer to write the record. Its digests are then computed by the `BackgroundHasher`;
- a recorded model whose content changed is handed to the hasher for verification;
- a sidecar written by another process or by hand refreshes its index row (ours are
  recognised by their mtime, which the index already holds).

Native events (inotify) are used where they work; on network filesystems (NFS and SMB deliver
no events for changes made by other machines), when the setting asks for it, or when inotify
cannot be set up (its watch or instance limit reached: logged with the sysctl to raise it), a
polling observer takes over. Listeners (the ComfyUI bridge, the page notifier) hear which type
folders changed and when the root goes away or comes back.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import signal
import stat as stat_module
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS
from watchdog.utils.event_debouncer import EventDebouncer

from .errors import IndexStoreError, ShelfError
from .fsutil import filesystem_type
from .health.hasher import BackgroundHasher
from .imports import find_unit
from .index import NameRow
from .layout import MODEL_TYPES, SIDECAR_SUFFIX, STATE_DIRNAME, TEMP_SUFFIX, Layout
from .records import Health
from .settings import HealthSettings, WatchMode
from .sync import Reconciler, SyncReport, is_ignored, location_for

try:
    import fcntl
except ImportError:  # Windows: no leases; completeness is judged by stability alone
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("model_shelf.watch")


class _StoppingRaceFilter(logging.Filter):
    """Drops the error watchdog logs when an event arrives while its emitter stops: a race
    inside watchdog's ``stop``, harmless (the next start's sync sees whatever it dropped), and
    alarming as the last line a user sees when quitting."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_StoppingRaceFilter())

WRITER_RECHECK_SECONDS = 1.0
"""A file still open for writing is looked at again after this long (or at its next event)."""
ROOT_CHECK_SECONDS = 2.0
"""How often the worker checks that the library root is still there."""
STOP = object()

NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "fuse.sshfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.rclone",
        "davfs",
        "fuse.s3fs",
        "lustre",
        "gpfs",
    }
)
"""Filesystems where changes made by other machines raise no inotify events: poll there."""

# What the native observer is asked for; the kernel then sends nothing else (no opens, reads).
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]


class LibraryListener(Protocol):
    """Who hears about changes (the ComfyUI bridge, the API's event hub)."""

    def library_changed(self, types: frozenset[str]) -> None:
        """Models were added, removed, renamed or re-read in ``types``."""

    def root_changed(self, available: bool) -> object:
        """The library root went away (``False``) or came back (``True``)."""


@dataclass
class WatchBatch:
    """What the worker did with one batch of events (for tests, benchmarks, diagnostics)."""

    report: SyncReport
    waiting: list[str] = field(default_factory=list)
    """Models seen but not complete yet (still written, settling, or in their grace time)."""
    finished_at: float = 0.0
    """``time.monotonic()`` when the batch was done."""


BatchListener = Callable[[WatchBatch], None]


# -- is a file complete? --------------------------------------------------------------------------


def open_for_writing(path: Path) -> bool | None:
    """True if some process has ``path`` open for writing, False if none, None if this cannot
    be told here (no leases: Windows, macOS, NFS/SMB; a file owned by another user).

    Linux grants a read lease only on a file nobody has open for writing; the lease is dropped
    at once. Its break signal is set to SIGURG (ignored by default), so a writer opening the
    file in that instant cannot kill us with the default SIGIO.
    """
    if fcntl is None or not hasattr(fcntl, "F_SETLEASE"):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            return None
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            return True if exc.errno in (errno.EAGAIN, errno.EBUSY) else None
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def inotify_limit_message(exc: OSError) -> str:
    """The log line for an inotify limit, naming the limit and how to raise it."""
    if exc.errno == errno.EMFILE:
        name, value = "fs.inotify.max_user_instances", 1024
    else:
        name, value = "fs.inotify.max_user_watches", 524288
    current = _read_sysctl(name)
    return (
        f"Model Shelf: inotify limit reached ({name} = {current}); watching the library by "
        f"polling instead, which is slower to notice changes. To raise it: "
        f"sudo sysctl -w {name}={value} (and add '{name}={value}' to /etc/sysctl.conf to keep it)"
    )


def _read_sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return "unknown"


def _listdir_skipping_ours(path: str | None) -> Iterator[os.DirEntry[str]]:
    """``os.scandir`` for the polling observer, minus our state folder and temporaries."""
    with os.scandir(path) as entries:
        return iter(
            [e for e in entries if e.name != STATE_DIRNAME and not e.name.endswith(TEMP_SUFFIX)]
        )


# -- the handler ----------------------------------------------------------------------------------


class _Handler(FileSystemEventHandler):
    """Passes the events we act on to the debouncer; nothing else happens on this thread."""

    def __init__(self, sink: Callable[[FileSystemEvent], None]) -> None:
        super().__init__()
        self.sink = sink

    def on_created(self, event: FileSystemEvent) -> None:
        self.sink(event)

    def on_modified(self, event: FileSystemEvent) -> None:
        self.sink(event)

    def on_closed(self, event: FileSystemEvent) -> None:
        self.sink(event)

    def on_moved(self, event: FileSystemEvent) -> None:
        self.sink(event)

    def on_deleted(self, event: FileSystemEvent) -> None:
        self.sink(event)


# -- the watcher ----------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A model location seen in events and not settled yet."""

    first_seen: float
    last_event: float
    placed: bool = False
    """Appeared whole (created without writes, or renamed in): an importer may be recording it."""
    grace_done: bool = False
    fingerprint: tuple[tuple[str, int, int], ...] | None = None
    stable_since: float = 0.0
    due: float = 0.0


ObserverFactory = Callable[[], BaseObserver]

NameFingerprint = dict[str, frozenset[tuple[str, tuple[str, ...], tuple[str, ...]]]]


def names_fingerprint(rows: list[NameRow]) -> NameFingerprint:
    """Per type, what ComfyUI's lists and name lookups depend on: names, aliases, tags."""
    result: dict[str, set[tuple[str, tuple[str, ...], tuple[str, ...]]]] = {}
    for row in rows:
        result.setdefault(row.type, set()).add((row.name, row.aliases, row.tags))
    return {t: frozenset(v) for t, v in result.items()}


class Watcher:
    """Watches one library root and keeps its index current. `start` / `stop` own its threads.

    Args:
        layout (`Layout`): the library.
        reconciler (`Reconciler`): applies each change to records and index.
        hasher (`BackgroundHasher`, *optional*): computes digests of new models and verifies
            changed ones; without it they stay pending until ``verify``.
        settings (`HealthSettings`): mode, debounce, settle and grace times.
        native_observer (`ObserverFactory`, *optional*): builds the native observer (tests
            pass one that fails, to exercise the fallback).
        sweep (`Callable[[], SyncReport]`, *optional*): the catch-up's stat of every file;
            default `Reconciler.sweep` (the library passes the health report's, which keeps
            what it found).
    """

    def __init__(
        self,
        layout: Layout,
        reconciler: Reconciler,
        hasher: BackgroundHasher | None,
        settings: HealthSettings,
        native_observer: ObserverFactory | None = None,
        sweep: Callable[[], SyncReport] | None = None,
    ) -> None:
        self.layout = layout
        self.reconciler = reconciler
        self._sweep = sweep or reconciler.sweep
        self.hasher = hasher
        self.settings = settings
        self.mode: str | None = None
        """``"native"`` or ``"polling"`` once started."""
        self._native_factory = native_observer or Observer
        self._listeners: list[LibraryListener] = []
        self._batch_listeners: list[BatchListener] = []
        self._queue: queue.Queue[object] = queue.Queue()
        self._pending: dict[Path, _Pending] = {}
        self._observer: BaseObserver | None = None
        self._debouncer: EventDebouncer | None = None
        self._worker: threading.Thread | None = None
        self._observer_lock = threading.Lock()
        self._available = True
        self._next_root_check = 0.0
        self._idle = threading.Condition()
        self._busy = False
        self._data_version = -1
        self._names: NameFingerprint | None = None  # None: no baseline yet
        # Folders created (or moved in) lately -> their last event: what lands in them is
        # looked at once they are quiet, so that a folder model copied file by file is seen
        # whole (its model_index.json may arrive after its weights).
        self._new_dirs: dict[Path, float] = {}

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, listener: LibraryListener) -> Callable[[], None]:
        """Tell ``listener`` (from the worker thread) about changes; returns the unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def on_batch(self, listener: BatchListener) -> Callable[[], None]:
        """Call ``listener`` with every `WatchBatch`; returns the unsubscriber."""
        self._batch_listeners.append(listener)
        return lambda: (
            self._batch_listeners.remove(listener) if listener in self._batch_listeners else None
        )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker, the debouncer and the observer (schedule -> start). Once only.

        The worker first catches up with changes made since the library was opened: a stat-only
        sync, then a stat of every recorded file (`Reconciler.sweep`), on its own thread.
        """
        if self._worker is not None:
            return
        self._worker = threading.Thread(target=self._run, name="shelf-watch", daemon=True)
        self._debouncer = EventDebouncer(self.settings.debounce_seconds, self._enqueue)
        self._debouncer.name = "shelf-watch-debounce"
        self._debouncer.start()
        self._queue.put(_CatchUp())
        self._worker.start()
        self._start_observer()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the observer, flush the debouncer, stop the worker; join every thread."""
        self._stop_observer(timeout)
        if self._debouncer is not None:
            self._debouncer.stop()
            self._debouncer.join(timeout)
            self._debouncer = None
        if self._worker is not None:
            self._queue.put(STOP)
            self._worker.join(timeout)
            self._worker = None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every event so far is handled and no model is waiting to settle (tests,
        benchmarks). True if that happened within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            marker = threading.Event()
            self._queue.put(marker)  # the worker sets it when it gets there
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not marker.wait(remaining):
                return False
            with self._idle:
                if not self._pending and not self._busy:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.5))

    # -- observers -----------------------------------------------------------------------------

    def _start_observer(self) -> None:
        with self._observer_lock:
            observer, mode = self._make_observer()
            self._observer, self.mode = observer, mode

    def _stop_observer(self, timeout: float) -> None:
        with self._observer_lock:
            observer, self._observer = self._observer, None
        if observer is not None:
            _stop_and_join(observer, timeout)

    def _make_observer(self) -> tuple[BaseObserver, str]:
        interval = self.settings.polling_interval_seconds
        if self.settings.watch_mode is WatchMode.POLLING:
            log.info("Model Shelf: watching %s by polling (setting)", self.layout.root)
            return self._polling(), "polling"
        if self.settings.watch_mode is WatchMode.AUTO:
            fs_type = filesystem_type(self.layout.root)
            if fs_type in NETWORK_FILESYSTEMS:
                log.info(
                    "Model Shelf: %s is on a network filesystem (%s), which does not report "
                    "changes made by other machines; polling it every %.0f s",
                    self.layout.root,
                    fs_type,
                    interval,
                )
                return self._polling(), "polling"
        try:
            return self._native(), "native"
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EMFILE):
                log.warning(inotify_limit_message(exc))
            else:
                log.warning(
                    "Model Shelf: native file events unavailable for %s (%s); polling every "
                    "%.0f s instead",
                    self.layout.root,
                    exc,
                    interval,
                )
            return self._polling(), "polling"

    def _native(self) -> BaseObserver:
        """Schedule and start the native observer, or raise OSError (limits, no inotify)."""
        self._check_watch_limit()
        observer = self._native_factory()
        try:
            observer.schedule(
                _Handler(self._sink),
                str(self.layout.root),
                recursive=True,
                event_filter=EVENT_FILTER,
            )
            _name_threads(observer)
            observer.start()
        except BaseException:
            _stop_and_join(observer, 5.0)
            raise
        return observer

    def _check_watch_limit(self) -> None:
        """inotify needs a watch per folder and fails silently below the root when it runs
        out; count first and refuse cleanly."""
        limit = _read_sysctl("fs.inotify.max_user_watches")
        if not limit.isdigit():
            return
        folders = sum(1 for _ in _iter_folders(self.layout.root))
        if folders >= int(limit):
            raise OSError(errno.ENOSPC, f"{folders} folders to watch, limit {limit}")

    def _polling(self) -> BaseObserver:
        observer = PollingObserverVFS(
            os.stat, _listdir_skipping_ours, polling_interval=self.settings.polling_interval_seconds
        )
        observer.schedule(_Handler(self._sink), str(self.layout.root), recursive=True)
        _name_threads(observer)
        observer.start()
        return observer

    # -- events in -------------------------------------------------------------------------------

    def _sink(self, event: FileSystemEvent) -> None:
        debouncer = self._debouncer
        if debouncer is not None:
            debouncer.handle_event(event)

    def _enqueue(self, events: list[FileSystemEvent]) -> None:
        """The debouncer's callback: runs under its lock, so only hands the batch over."""
        self._queue.put(events)

    # -- the worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            timeout = self._next_timeout()
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            items = [item]
            while True:  # take whatever else is waiting: one bigger batch
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(i is STOP for i in items)
            events: list[FileSystemEvent] = []
            markers: list[threading.Event] = []
            catch_up = False
            for i in items:
                if isinstance(i, list):
                    events += i
                elif isinstance(i, threading.Event):
                    markers.append(i)
                elif isinstance(i, _CatchUp):
                    catch_up = True
            with self._idle:
                self._busy = True
            try:
                self._tick(events, catch_up)
            except Exception:  # thread top level: log, keep watching
                log.exception("Model Shelf: updating the index from file events failed")
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
                for marker in markers:
                    marker.set()
            if stopping:
                return

    def _next_timeout(self) -> float:
        now = time.monotonic()
        due = [p.due for p in self._pending.values()]
        due.append(self._next_root_check)
        return max(0.01, min(due) - now)

    def _tick(self, events: list[FileSystemEvent], catch_up: bool) -> None:
        now = time.monotonic()
        report = SyncReport()
        look_at_index = catch_up or any(
            os.fsdecode(e.src_path).endswith(SIDECAR_SUFFIX)
            or os.fsdecode(getattr(e, "dest_path", "") or "").endswith(SIDECAR_SUFFIX)
            for e in events
        )
        if now >= self._next_root_check:
            self._next_root_check = now + ROOT_CHECK_SECONDS
            look_at_index = True
            if not self._check_root(report):
                return
        if catch_up:
            self._catch_up(report)
        if events:
            self._take(events, now, report)
        waiting = self._settle(now, report)
        other = self._index_changes() if look_at_index else set()
        self._finish(report, waiting, other)

    def _index_changes(self) -> set[str]:
        """Types whose names, aliases or tags changed in the index by another thread or
        process (a record saved elsewhere: its sidecar event says nothing new to us, since the
        index row already matches it). Cheap unless the index moved (``PRAGMA data_version``)."""
        index = self.reconciler.index
        version = index.data_version()
        if version == self._data_version:
            return set()
        self._data_version = version
        new = names_fingerprint(index.name_rows())
        old, self._names = self._names, new
        if old is None:
            return set()  # the first look: a baseline, nothing to report
        return {t for t in set(old) | set(new) if old.get(t) != new.get(t)}

    def _catch_up(self, report: SyncReport) -> None:
        """Changes made between opening the library and the observer starting, and content
        rewritten in place while we were not running (the sweep)."""
        for part in (self.reconciler.sync(), self._sweep()):
            for name, value in vars(part).items():
                if isinstance(value, list):
                    getattr(report, name).extend(value)
        if self.hasher is not None and report.changed_ids:
            # Already known to be corrupted: not read again at every start.
            fresh = self.reconciler.index.get_many(report.changed_ids)
            self.hasher.check(r.id for r in fresh if r.health is not Health.CORRUPTED)
            report.changed_ids = []

    # -- turning events into pending locations -----------------------------------------------------

    def _take(self, events: list[FileSystemEvent], now: float, report: SyncReport) -> None:
        folders = self.reconciler.recorded_folder_models()
        for event in events:
            src = Path(os.fsdecode(event.src_path))
            if isinstance(event, (FileMovedEvent, DirMovedEvent)):
                dest_raw = os.fsdecode(event.dest_path) if event.dest_path else ""
                dest = Path(dest_raw) if dest_raw else None
                self._moved(src, dest, event.is_directory, folders, now, report)
            elif isinstance(event, (FileDeletedEvent, DirDeletedEvent)):
                self._gone(src, event.is_directory, folders, now)
            elif isinstance(event, DirCreatedEvent):
                if not is_ignored(self.layout, src):
                    self._new_dirs[src] = now
            elif isinstance(event, (FileCreatedEvent, FileModifiedEvent, FileClosedEvent)):
                written = not isinstance(event, FileCreatedEvent)
                self._touch(location_for(self.layout, src, folders), now, placed=not written)

    def _moved(
        self,
        src: Path,
        dest: Path | None,
        is_dir: bool,
        folders: set[str],
        now: float,
        report: SyncReport,
    ) -> None:
        src_ours = not is_ignored(self.layout, src)
        dest_ours = dest is not None and not is_ignored(self.layout, dest)
        if src_ours and dest_ours and dest is not None:
            is_record = src.name.endswith(SIDECAR_SUFFIX) or dest.name.endswith(SIDECAR_SUFFIX)
            if not is_record and self.reconciler.move(src, dest, report) is not None:
                self._pending.pop(dest, None)
                return
            if is_dir:
                for row in self.reconciler.rows_under(src):
                    self._touch(self.layout.model_path(row.type, row.name), now)
                return  # the files inside come as moves of their own
        if src_ours:
            if is_dir:
                for row in self.reconciler.rows_under(src):
                    self._touch(self.layout.model_path(row.type, row.name), now)
            else:
                self._touch(location_for(self.layout, src, folders), now)
        if dest_ours and dest is not None and not is_dir:
            self._touch(location_for(self.layout, dest, folders), now, placed=True)

    def _gone(self, path: Path, is_dir: bool, folders: set[str], now: float) -> None:
        if is_dir:
            for row in self.reconciler.rows_under(path):
                self._touch(self.layout.model_path(row.type, row.name), now)
            return
        self._touch(location_for(self.layout, path, folders), now)

    def _touch(self, location: Path | None, now: float, *, placed: bool = False) -> None:
        if location is None:
            return
        pending = self._pending.get(location)
        if pending is None:
            pending = self._pending[location] = _Pending(first_seen=now, last_event=now)
            pending.placed = placed
        elif not placed:
            pending.placed = False  # written to after appearing: a copy, not a placement
        pending.last_event = now
        pending.fingerprint = None
        pending.due = now

    # -- settling ------------------------------------------------------------------------------

    def _settle(self, now: float, report: SyncReport) -> list[str]:
        quiet = self.settings.settle_seconds
        for pending_at in self._pending:  # events inside a new folder keep it "arriving"
            for folder in self._new_dirs:
                if folder in pending_at.parents or folder == pending_at:
                    last = self._pending[pending_at].last_event
                    self._new_dirs[folder] = max(self._new_dirs[folder], last)
        folders = None
        for location in [loc for loc, p in self._pending.items() if p.due <= now]:
            pending = self._pending[location]
            arriving = [
                t for d, t in self._new_dirs.items() if d in location.parents or d == location
            ]
            if arriving and now - max(arriving) < quiet:
                pending.due = max(arriving) + quiet
                continue
            if folders is None:
                folders = self.reconciler.recorded_folder_models()
            real = location_for(self.layout, location, folders)
            if real is not None and real != location:
                # It turned out to be part of a folder model (its marker arrived later).
                del self._pending[location]
                self._touch(real, now, placed=pending.placed)
                continue
            try:
                again = self._evaluate(location, pending, now, report)
            except (ShelfError, OSError) as exc:
                if isinstance(exc, IndexStoreError):
                    raise
                report.problems.append(f"{location}: {exc}")
                again = None
            if again is None:
                del self._pending[location]
            else:
                pending.due = again
        self._new_dirs = {d: t for d, t in self._new_dirs.items() if now - t < quiet}
        return [str(loc) for loc in self._pending]

    def _evaluate(
        self, location: Path, pending: _Pending, now: float, report: SyncReport
    ) -> float | None:
        """Handle one location if it is complete; else return when to look again."""
        record = self.reconciler.refresh(location, report)
        if not (location.exists() or location.is_symlink()):
            if record is not None:
                self.reconciler.check(record, report)
            return None
        try:
            unit = find_unit(location)
        except ShelfError as exc:
            if record is not None:
                self.reconciler.check(record, report)
                return None
            if now - pending.last_event < self.settings.settle_seconds:
                return pending.last_event + self.settings.settle_seconds  # more shards coming?
            report.problems.append(f"{location}: {exc}")
            return None
        again = self._not_complete(unit.members, pending, now)
        if again is not None:
            return again
        if record is not None:
            self.reconciler.check(record, report)
            return None
        if pending.placed and not pending.grace_done and self.settings.placed_grace_seconds:
            pending.grace_done = True
            return now + self.settings.placed_grace_seconds
        self.reconciler.register(unit, report)
        return None

    def _not_complete(self, members: list[Path], pending: _Pending, now: float) -> float | None:
        """None if every member is complete; else when to look again."""
        knowable = True
        for member in members:
            writing = open_for_writing(member)
            if writing:
                return now + WRITER_RECHECK_SECONDS
            if writing is None:
                knowable = False
        if knowable:
            return None
        # No way to see writers here: complete once unchanged for the settle time.
        fingerprint = tuple(
            (str(m), s.st_size, s.st_mtime_ns) for m, s in ((m, m.stat()) for m in members)
        )
        if fingerprint != pending.fingerprint:
            pending.fingerprint, pending.stable_since = fingerprint, now
        if now - pending.stable_since < self.settings.settle_seconds:
            return pending.stable_since + self.settings.settle_seconds
        return None

    # -- results out -----------------------------------------------------------------------------

    def _finish(self, report: SyncReport, waiting: list[str], other: set[str]) -> None:
        if self.hasher is not None:
            if report.changed_ids:
                self.hasher.check(report.changed_ids)
            if report.registered:
                self.hasher.wake()
        types = frozenset(report.touched_types | other)
        if types:
            self._tell(lambda listener: listener.library_changed(types))
        for problem in report.problems:
            log.warning("Model Shelf: %s", problem)
        batch = WatchBatch(report=report, waiting=waiting, finished_at=time.monotonic())
        for listener in list(self._batch_listeners):
            try:
                listener(batch)
            except Exception:  # a listener's failure must not stop the watcher
                log.exception("Model Shelf: batch listener %r failed", listener)

    def _tell(self, call: Callable[[LibraryListener], object]) -> None:
        for listener in list(self._listeners):
            try:
                call(listener)
            except Exception:  # a listener's failure must not stop the others or the watcher
                log.exception("Model Shelf: change listener %r failed", listener)

    # -- the root going away and coming back -----------------------------------------------------

    def _check_root(self, report: SyncReport) -> bool:
        """False while the root is unavailable (nothing else is done then)."""
        available = self.layout.state_dir.is_dir()
        if available == self._available:
            return available
        self._available = available
        if not available:
            log.warning("Model Shelf: library root %s went away", self.layout.root)
            self._stop_observer(5.0)
            self._pending.clear()
            self._tell(lambda listener: listener.root_changed(False))
            return False
        log.info("Model Shelf: library root %s is back", self.layout.root)
        # Connections opened before it vanished may point at a dead mount: reopen.
        self.reconciler.index.close()
        self._data_version = -1
        self._start_observer()
        self._catch_up(report)
        self._tell(lambda listener: listener.root_changed(True))
        self._tell(lambda listener: listener.library_changed(frozenset(MODEL_TYPES)))
        return True


class _CatchUp:
    """Queue item: reconcile with the folders before handling events."""


def _iter_folders(root: Path) -> Iterator[str]:
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        yield folder
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            stack.extend(
                e.path
                for e in entries
                if e.is_dir(follow_symlinks=False) and not e.name.endswith(TEMP_SUFFIX)
            )


def _name_threads(observer: BaseObserver) -> None:
    """Our prefix on the observer's threads, so leak checks and thread dumps know them."""
    observer.name = "shelf-watch-observer"
    for emitter in observer.emitters:
        emitter.name = "shelf-watch-emitter"
    inotify = getattr(observer, "_inotify_fd", None)  # the native observer's reader thread
    if isinstance(inotify, threading.Thread):
        inotify.name = "shelf-watch-inotify"


def _stop_and_join(observer: BaseObserver, timeout: float) -> None:
    observer.stop()
    if observer.is_alive():
        observer.join(timeout)
    else:
        # Never started: its emitters and the inotify reader were, or may have been.
        for emitter in list(observer.emitters):
            if emitter.is_alive():
                emitter.join(timeout)
        inotify = getattr(observer, "_inotify_fd", None)
        if isinstance(inotify, threading.Thread) and inotify.is_alive():
            inotify.join(timeout)
