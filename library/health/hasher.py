"""`BackgroundHasher`: digests for new models and re-verification of old ones, off the event loop.

Work comes in three kinds, served in this order: models whose files changed behind our back
(`check`, verified first), models recorded with a fingerprint only (hash state ``pending``),
and models due for periodic re-verification (`HealthSettings.verify_interval_days`) or part of a
requested full pass (`request_pass`). Nothing is held only in memory: pending models are found
by their state, due ones by their ``verified_at``, and a requested pass is a small file in the
state folder, so a restart continues where the last run stopped.

One reader thread per physical disk (two partitions of one disk share a reader), or a single
reader in total (`HealthSettings.single_reader`, for spinning disks that share a spindle or a
bus). A planner thread decides what each reader does next. Reading is throttled (bytes per
second, per kind of work) and can be paused; `stop` cancels the file being read (it is read
again, whole, next time) and joins every thread.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from pathlib import Path

from ..catalog import Catalog
from ..errors import ShelfError
from ..fsutil import atomic_write_bytes
from ..hashing import HashCancelled
from ..index import LocationRow
from ..layout import Layout
from ..records import HashState, Health
from ..settings import HealthSettings
from ..verify import Verifier, VerifyResult

log = logging.getLogger("model_shelf.health")

PLAN_BATCH = 64
"""Models a planning round hands to each reader at most (keeps priorities fresh)."""
PLAN_INTERVAL_SECONDS = 300.0
"""Longest time between two planning rounds when nothing wakes the planner."""
RETRY_SECONDS = 10.0
"""A model that changed while it was read is tried again after this long."""
BURST_SECONDS = 0.25
"""Unused throttle time forgiven, so a pause does not become a burst above the limit."""
PASS_FILENAME = "verify-pass.json"

ResultListener = Callable[[VerifyResult], None]


class WorkKind(IntEnum):
    """What a reader does with a model; lower runs first."""

    CHECK = 0  # content changed on disk: compare with the record now
    HASH = 1  # never hashed: compute every digest
    VERIFY = 2  # periodic or requested re-verification


@dataclass(order=True)
class _Item:
    kind: WorkKind
    seq: int
    model_id: str = field(compare=False)


@dataclass
class HasherStatus:
    """A snapshot for the health report and the sidebar."""

    running: bool
    paused: bool
    queued: int
    reading: list[str]
    bytes_hashed: int
    hashed: int
    verified: int
    corrupted: int
    readers: int
    pass_requested_at: datetime | None


class Throttle:
    """Paces byte counts to ``bytes_per_second`` across threads; 0 means no limit."""

    def __init__(self, bytes_per_second: int, stop: threading.Event) -> None:
        self.bytes_per_second = bytes_per_second
        self._stop = stop
        self._next_free = 0.0
        self._lock = threading.Lock()

    def consume(self, nbytes: int) -> None:
        if self.bytes_per_second <= 0 or nbytes <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next_free, now - BURST_SECONDS)
            self._next_free = start + nbytes / self.bytes_per_second
            delay = self._next_free - now - BURST_SECONDS
        if delay > 0:
            self._stop.wait(delay)


def disk_of(st_dev: int) -> str:
    """A key naming the physical disk behind device ``st_dev``: partitions of one disk share
    it (Linux sysfs); elsewhere, or for network and virtual filesystems, the device itself."""
    if not hasattr(os, "major"):  # Windows: one device number per volume
        return f"dev-{st_dev}"
    major, minor = os.major(st_dev), os.minor(st_dev)
    sys_path = Path(f"/sys/dev/block/{major}:{minor}")
    try:
        real = sys_path.resolve(strict=True)
    except OSError:
        return f"dev-{major}-{minor}"
    if (real / "partition").exists():
        return real.parent.name
    return real.name


class BackgroundHasher:
    """Hashes and verifies models in the background. `start` / `stop` own its threads.

    Args:
        layout (`Layout`): the library (for the pass file and model paths).
        catalog (`Catalog`): where records are read from.
        verifier (`Verifier`): does the reading and records each verdict.
        settings (`HealthSettings`): throttles, interval, single reader.
    """

    def __init__(
        self, layout: Layout, catalog: Catalog, verifier: Verifier, settings: HealthSettings
    ) -> None:
        self.layout = layout
        self.catalog = catalog
        self.verifier = verifier
        self.settings = settings
        self.bytes_hashed = 0
        self._counts = {"hashed": 0, "verified": 0, "corrupted": 0}
        self._stop = threading.Event()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._wake = threading.Event()
        self._lock = threading.Condition()
        self._queues: dict[str, list[_Item]] = {}
        self._readers: dict[str, threading.Thread] = {}
        self._queued: set[str] = set()
        self._reading: dict[str, str] = {}  # model id -> disk
        self._checks: list[str] = []
        self._retry_at: dict[str, float] = {}
        self._disk_cache: dict[str, str] = {}
        self._seq = itertools.count()
        self._generation = 0
        self._idle_generation = -1
        self._listeners: list[ResultListener] = []
        self._planner: threading.Thread | None = None
        self._throttles = {
            WorkKind.CHECK: Throttle(settings.hash_bytes_per_second, self._stop),
            WorkKind.HASH: Throttle(settings.hash_bytes_per_second, self._stop),
            WorkKind.VERIFY: Throttle(settings.verify_bytes_per_second, self._stop),
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the planner (readers start as work for their disk appears). Once only."""
        if self._planner is not None:
            return
        self._stop.clear()
        self._planner = threading.Thread(target=self._plan_loop, name="shelf-hasher", daemon=True)
        self._planner.start()
        self.wake()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading (the file being read is dropped and read again next time) and join
        every thread."""
        self._stop.set()
        self._unpaused.set()  # a paused reader must see the stop
        self._wake.set()
        with self._lock:
            self._lock.notify_all()
        threads = [self._planner, *self._readers.values()]
        for thread in threads:
            if thread is not None:
                thread.join(timeout)
        self._planner = None
        with self._lock:
            self._readers.clear()
            self._queues.clear()
            self._queued.clear()

    @property
    def running(self) -> bool:
        return self._planner is not None and self._planner.is_alive()

    # -- control (any thread) --------------------------------------------------------------------

    def wake(self) -> None:
        """Look for work now (a model was recorded, a setting changed)."""
        with self._lock:
            self._generation += 1
        self._wake.set()

    def check(self, model_ids: Iterable[str]) -> None:
        """Verify these models before anything else (their files changed on disk)."""
        ids = list(model_ids)
        if not ids:
            return
        with self._lock:
            self._checks += [i for i in ids if i not in self._checks]
        self.wake()

    def request_pass(self) -> datetime:
        """Verify every model once, in the background; survives restarts until done.

        Returns:
            `datetime`: when the pass was requested (models verified since then are skipped).
        """
        now = datetime.now(timezone.utc)
        atomic_write_bytes(self._pass_file, json.dumps({"requested_at": now.isoformat()}).encode())
        self.wake()
        return now

    def pause(self) -> None:
        """Pause reading (the current file waits at its next chunk)."""
        self._unpaused.clear()

    def resume(self) -> None:
        self._unpaused.set()
        self.wake()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    def subscribe(self, listener: ResultListener) -> Callable[[], None]:
        """Call ``listener`` (on a reader thread) with every verdict; returns the unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until a planning round that started after this call found nothing to do and no
        reader is busy. Tests and benchmarks use it; True if idle within ``timeout``."""
        with self._lock:
            self._generation += 1
            wanted = self._generation
            self._wake.set()
            return (
                self._lock.wait_for(
                    lambda: self._idle_generation >= wanted or self._stop.is_set(), timeout
                )
                and not self._stop.is_set()
            )

    def status(self) -> HasherStatus:
        with self._lock:
            return HasherStatus(
                running=self.running,
                paused=self.paused,
                queued=len(self._queued),
                reading=sorted(self._reading),
                bytes_hashed=self.bytes_hashed,
                hashed=self._counts["hashed"],
                verified=self._counts["verified"],
                corrupted=self._counts["corrupted"],
                readers=len(self._readers),
                pass_requested_at=self._pass_requested_at(),
            )

    # -- planning ----------------------------------------------------------------------------------

    @property
    def _pass_file(self) -> Path:
        return self.layout.state_dir / PASS_FILENAME

    def _pass_requested_at(self) -> datetime | None:
        try:
            data = json.loads(self._pass_file.read_bytes())
            if data.get("finished_at"):
                return None
            return datetime.fromisoformat(data["requested_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _plan_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._next_plan_delay())
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._plan()
            except Exception:  # thread top level: log and plan again later
                log.exception("Model Shelf: planning background hashing failed")

    def _next_plan_delay(self) -> float:
        with self._lock:
            if not self._retry_at:
                return PLAN_INTERVAL_SECONDS
            soonest = min(self._retry_at.values()) - time.monotonic()
        return max(0.05, min(PLAN_INTERVAL_SECONDS, soonest))

    def _plan(self) -> None:
        with self._lock:
            generation = self._generation
            checks, self._checks = self._checks, []
            now = time.monotonic()
            self._retry_at = {k: v for k, v in self._retry_at.items() if v > now}
            busy = self._queued | set(self._reading) | set(self._retry_at)
        if self.paused:
            return
        work: list[tuple[WorkKind, str, str, str]] = []  # kind, id, type, name
        for record in self.catalog.index.get_many(checks):
            if record.id not in busy:
                work.append((WorkKind.CHECK, record.id, record.type, record.name))
        work += self._rows(WorkKind.HASH, self.catalog.index.pending_rows(PLAN_BATCH * 4), busy)
        cutoff = self._verify_cutoff()
        if cutoff is not None:
            due = self.catalog.index.unverified_rows(cutoff, PLAN_BATCH * 4)
            work += self._rows(WorkKind.VERIFY, due, busy)
        with self._lock:
            per_disk: dict[str, int] = {}
            for kind, model_id, model_type, name in work:
                if model_id in self._queued or model_id in self._reading:
                    continue
                disk = self._disk_for(model_type, name)
                if per_disk.get(disk, 0) >= PLAN_BATCH:
                    continue
                per_disk[disk] = per_disk.get(disk, 0) + 1
                heapq.heappush(
                    self._queues.setdefault(disk, []), _Item(kind, next(self._seq), model_id)
                )
                self._queued.add(model_id)
                self._ensure_reader(disk)
            self._lock.notify_all()
            if not (self._queued or self._reading or self._retry_at or work):
                if cutoff is not None and self._pass_requested_at() is not None:
                    self._finish_pass()
                self._idle_generation = generation
                self._lock.notify_all()

    def _rows(
        self, kind: WorkKind, rows: list[LocationRow], busy: set[str]
    ) -> list[tuple[WorkKind, str, str, str]]:
        return [(kind, r.id, r.type, r.name) for r in rows if r.id not in busy]

    def _verify_cutoff(self) -> datetime | None:
        """Models last verified before this are due; None when nothing is due by time."""
        cutoffs = []
        if self.settings.verify_interval_days > 0:
            interval = timedelta(days=self.settings.verify_interval_days)
            cutoffs.append(datetime.now(timezone.utc) - interval)
        requested = self._pass_requested_at()
        if requested is not None:
            cutoffs.append(requested)
        return max(cutoffs) if cutoffs else None

    def _finish_pass(self) -> None:
        requested = self._pass_requested_at()
        if requested is None:
            return
        if self.catalog.index.unverified_rows(requested, 1):
            return
        data = {
            "requested_at": requested.isoformat(),
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }
        atomic_write_bytes(self._pass_file, json.dumps(data).encode())
        log.info("Model Shelf: verification pass requested at %s finished", requested)

    def _disk_for(self, model_type: str, name: str) -> str:
        """The reader a model belongs to (cached per folder)."""
        if self.settings.single_reader:
            return "all"
        folder = self.layout.model_path(model_type, name).parent
        key = str(folder)
        disk = self._disk_cache.get(key)
        if disk is None:
            try:
                disk = disk_of(folder.stat().st_dev)
            except OSError:
                disk = "unknown"
            self._disk_cache[key] = disk
        return disk

    def _ensure_reader(self, disk: str) -> None:
        thread = self._readers.get(disk)
        if thread is not None and thread.is_alive():
            return
        thread = threading.Thread(
            target=self._read_loop, args=(disk,), name=f"shelf-hasher-{disk}", daemon=True
        )
        self._readers[disk] = thread
        thread.start()

    # -- reading -----------------------------------------------------------------------------------

    def _read_loop(self, disk: str) -> None:
        while True:
            with self._lock:
                queue = self._queues.setdefault(disk, [])
                while not queue and not self._stop.is_set():
                    self._lock.wait()
                if self._stop.is_set():
                    return
                item = heapq.heappop(queue)
                self._queued.discard(item.model_id)
                self._reading[item.model_id] = disk
            try:
                self._work(item)
            except HashCancelled:
                pass  # stopping: read again, whole, next time
            except Exception:  # thread top level: log, go on with the next model
                log.exception("Model Shelf: background hashing of model %s failed", item.model_id)
            finally:
                with self._lock:
                    self._reading.pop(item.model_id, None)
                    if not queue:
                        self._wake.set()  # this disk ran dry: plan more
                    self._lock.notify_all()

    def _work(self, item: _Item) -> None:
        record = self.catalog.index.get(item.model_id)
        if record is None:
            return
        if item.kind is WorkKind.HASH and record.hash_state is not HashState.PENDING:
            return  # done by someone else meanwhile
        throttle = self._throttles[item.kind]

        def progress(nbytes: int) -> None:
            if not self._unpaused.is_set():
                self._unpaused.wait()
            throttle.consume(nbytes)

        try:
            result = self.verifier.verify(record, progress=progress, cancel=self._stop)
        except (ShelfError, OSError) as exc:
            if isinstance(exc, HashCancelled):
                raise
            log.warning("Model Shelf: cannot read %s: %s", record.display(), exc)
            with self._lock:
                self._retry_at[item.model_id] = time.monotonic() + RETRY_SECONDS
            return
        with self._lock:
            self.bytes_hashed += result.bytes_read
            if result.retry:
                self._retry_at[item.model_id] = time.monotonic() + RETRY_SECONDS
            elif item.kind is WorkKind.HASH:
                self._counts["hashed"] += 1
            else:
                self._counts["verified"] += 1
            if result.health is Health.CORRUPTED and not result.retry:
                self._counts["corrupted"] += 1
        if result.health is Health.CORRUPTED and not result.retry:
            log.warning("Model Shelf: %s is CORRUPTED: %s", result.model, result.detail)
        for listener in list(self._listeners):
            try:
                listener(result)
            except Exception:  # a listener's failure must not stop the readers
                log.exception("Model Shelf: hash result listener %r failed", listener)


__all__ = ["BackgroundHasher", "HasherStatus", "Throttle", "WorkKind", "disk_of"]
