"""Noticing library changes made elsewhere: a cheap poll, about once a second.

Small and replaceable (a full watchdog-based watcher comes later, in ``watch``). A tick costs
one stat of the state folder, one ``PRAGMA data_version`` and one stat per folder under the
type folders; nothing is read unless one of those moved.

- Another process on the same root (a second ComfyUI, the CLI) wrote the shared index:
  ``data_version`` moved. The name table is compared type by type to tell listeners which
  types changed; the index is already current, so no sync is needed.
- Files changed by hand (copied in, renamed, deleted): folder mtimes moved but the index did
  not. Listeners hear of it at once; after one quiet tick `Shelf.sync` (stat only) brings the
  records in line. Waiting that tick lets another process's import finish writing its record,
  so we do not record its file a second time.
- Folders that moved together with the index (a record rewritten to count a use, an import by
  a Shelf anywhere) are reported only if names, aliases or tags changed.
- The root vanished or came back (unmounted drive, lost share): listeners are told; on return
  the index is reopened (its old connections may point at a dead mount) and synced first.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .errors import ShelfError
from .index import NameRow
from .layout import MODEL_TYPES, STATE_DIRNAME, TEMP_SUFFIX
from .shelf import Shelf

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""Time between two looks at the library; changes show within about twice this."""


class LibraryListener(Protocol):
    """Who hears about changes (the ComfyUI bridge, a websocket notifier)."""

    def library_changed(self, types: frozenset[str]) -> None:
        """Models were added, removed, renamed or re-tagged in ``types``."""

    def root_changed(self, available: bool) -> object:
        """The library root went away (``False``) or came back (``True``)."""


Fingerprint = dict[str, frozenset[tuple[str, tuple[str, ...], tuple[str, ...]]]]


def fingerprint(rows: Sequence[NameRow]) -> Fingerprint:
    """Per type, what listings and name lookups depend on: names, aliases and tags."""
    result: dict[str, set[tuple[str, tuple[str, ...], tuple[str, ...]]]] = {}
    for row in rows:
        result.setdefault(row.type, set()).add((row.name, row.aliases, row.tags))
    return {t: frozenset(v) for t, v in result.items()}


def scan_folder_mtimes(root: Path) -> dict[str, tuple[str, int]]:
    """``folder -> (type, mtime_ns)`` for every folder under the type folders (not ours)."""
    found: dict[str, tuple[str, int]] = {}
    for model_type in MODEL_TYPES:
        stack = [os.path.join(root, model_type)]
        while stack:
            folder = stack.pop()
            try:
                found[folder] = (model_type, os.stat(folder).st_mtime_ns)
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            stack.extend(
                e.path
                for e in entries
                if e.is_dir(follow_symlinks=False)
                and not e.name.startswith(STATE_DIRNAME)
                and not e.name.endswith(TEMP_SUFFIX)
            )
    return found


class ChangeFeed:
    """Polls one library root and tells listeners what changed. `start` / `stop` own a thread.

    `poll` runs one tick on the caller's thread (tests drive it directly).
    """

    def __init__(
        self,
        shelf: Shelf,
        listeners: Sequence[LibraryListener],
        interval: float = POLL_SECONDS,
    ) -> None:
        self.shelf = shelf
        self.listeners = list(listeners)
        self.interval = interval
        self._available = False
        self._mtimes: dict[str, tuple[str, int]] = {}
        self._data_version = -1
        self._fingerprint: Fingerprint = {}
        self._sync_pending = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None

    # -- lifecycle -----------------------------------------------------------

    def baseline(self) -> None:
        """Remember the library as it is now; later ticks report differences from it."""
        self._available = self.shelf.layout.state_dir.is_dir()
        if self._available:
            self._mtimes = scan_folder_mtimes(self.shelf.root)
            self._data_version = self.shelf.index.data_version()
            self._fingerprint = fingerprint(self.shelf.index.name_rows())

    def start(self) -> None:
        """Take the baseline and start polling in a daemon thread (once).

        Raises:
            `IndexStoreError`: the index cannot be read for the baseline.
        """
        if self._thread is not None:
            return
        self.baseline()
        self._thread = threading.Thread(target=self._run, name="model-shelf-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling and wait for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # thread top level: log (once per kind) and keep polling
                message = f"{type(exc).__name__}: {exc}"
                if message != self._last_error:
                    self._last_error = message
                    log.exception("Model Shelf: watching the library failed")
            else:
                self._last_error = None

    # -- one tick --------------------------------------------------------------

    def poll(self) -> frozenset[str]:
        """Look once; notify listeners. Returns the types reported as changed.

        Raises:
            `IndexStoreError`: the index could not be read (the next tick tries again).
        """
        available = self.shelf.layout.state_dir.is_dir()
        if not available:
            if self._available:
                self._available = False
                self._sync_pending = False
                self._tell_root(False)
            return frozenset()
        if not self._available:
            return self._root_returned()

        changed: set[str] = set()
        moved = self._moved_folders()
        if moved:
            self._mtimes = scan_folder_mtimes(self.shelf.root)
        version = self.shelf.index.data_version()
        index_moved = version != self._data_version
        self._data_version = version

        synced = False
        if moved and not index_moved:
            # Changed by hand, or a record still on its way: refresh listings now (a share
            # with coarse mtimes hides the change from ComfyUI), reconcile when quiet.
            changed.update(moved)
            self._sync_pending = True
        elif self._sync_pending and not moved:
            self._sync_pending = False
            if not index_moved:  # still unexplained after a quiet tick: reconcile
                synced = self._sync()
        if index_moved or synced:
            changed.update(self._index_changes())
        types = frozenset(changed)
        if types:
            self._tell_changed(types)
        return types

    def _moved_folders(self) -> set[str]:
        """Types whose folders changed mtime (or vanished) since the last scan."""
        moved: set[str] = set()
        for folder, (model_type, mtime_ns) in self._mtimes.items():
            if model_type in moved:
                continue
            try:
                if os.stat(folder).st_mtime_ns != mtime_ns:
                    moved.add(model_type)
            except FileNotFoundError:
                moved.add(model_type)
        return moved

    def _index_changes(self) -> set[str]:
        new = fingerprint(self.shelf.index.name_rows())
        old, self._fingerprint = self._fingerprint, new
        return {t for t in set(old) | set(new) if old.get(t) != new.get(t)}

    def _sync(self) -> bool:
        try:
            report = self.shelf.sync()
        except (ShelfError, OSError) as exc:
            log.warning("Model Shelf: reconciling the library after a change failed: %s", exc)
            return False
        self._mtimes = scan_folder_mtimes(self.shelf.root)  # sync may write records
        for problem in report.problems:
            log.warning("Model Shelf: %s", problem)
        return True

    def _root_returned(self) -> frozenset[str]:
        # Connections opened before the root vanished may point at a dead mount: reopen.
        self.shelf.index.close()
        self._sync()
        self._data_version = self.shelf.index.data_version()
        self._fingerprint = fingerprint(self.shelf.index.name_rows())
        self._available = True
        self._tell_root(True)
        types = frozenset(MODEL_TYPES)
        self._tell_changed(types)
        return types

    # -- listeners ---------------------------------------------------------------

    def _tell_changed(self, types: frozenset[str]) -> None:
        for listener in self.listeners:
            try:
                listener.library_changed(types)
            except Exception:  # a listener's failure must not stop the others or the feed
                log.exception("Model Shelf: change listener %r failed", listener)

    def _tell_root(self, available: bool) -> None:
        for listener in self.listeners:
            try:
                listener.root_changed(available)
            except Exception:  # as above
                log.exception("Model Shelf: root listener %r failed", listener)
