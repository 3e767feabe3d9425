"""Counting model uses without slowing down the lookup that notices them.

`UsageRecorder.note` only appends to a deque (thread-safe, no lock, no I/O), so ComfyUI's
``get_full_path`` stays fast. A background thread saves the counts in batches: each model's
record gets ``usage.count`` raised and ``usage.last_used`` set, through `Catalog.save`.
Usage is best effort: a count that cannot be saved (root gone, bad record) is logged and lost.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import datetime, timezone

from .errors import ShelfError
from .shelf import Shelf

log = logging.getLogger(__name__)

USAGE_FLUSH_SECONDS = 2.0
"""How often noted uses are written to the records."""


class UsageRecorder:
    """Collects ``(type, name)`` uses and saves them to the records from its own thread."""

    def __init__(self, shelf: Shelf, interval: float = USAGE_FLUSH_SECONDS) -> None:
        self.shelf = shelf
        self.interval = interval
        self._pending: collections.deque[tuple[str, str, float]] = collections.deque()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, model_type: str, name: str) -> None:
        """Record one use of ``type/name`` now. Never blocks and never touches the disk."""
        self._pending.append((model_type, name, time.time()))

    def flush(self) -> int:
        """Save every noted use; returns how many records were updated."""
        with self._flush_lock:
            batch: dict[tuple[str, str], tuple[int, float]] = {}
            while self._pending:
                model_type, name, when = self._pending.popleft()
                count, last = batch.get((model_type, name), (0, 0.0))
                batch[(model_type, name)] = (count + 1, max(last, when))
            saved = 0
            for (model_type, name), (count, last) in batch.items():
                if self._save(model_type, name, count, last):
                    saved += 1
            return saved

    def _save(self, model_type: str, name: str, count: int, last: float) -> bool:
        layout = self.shelf.layout
        try:
            # Read the sidecar itself, not the index row: it is the truth, and the window in
            # which another writer's change could be lost stays as small as it can be.
            sidecar = layout.sidecar_for(layout.model_path(model_type, name))
            record = self.shelf.records.read(sidecar)
            record.usage.count += count
            stamp = datetime.fromtimestamp(last, timezone.utc)
            if record.usage.last_used is None or record.usage.last_used < stamp:
                record.usage.last_used = stamp
            self.shelf.catalog.save(record)
        except (ShelfError, OSError) as exc:
            log.info("Model Shelf: use of %s/%s not recorded: %s", model_type, name, exc)
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
