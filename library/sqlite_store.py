"""What every SQLite file of ours shares: one connection per thread, WAL, numbered migrations,
``sqlite3`` errors turned into our typed errors at the store.

Several processes (several ComfyUI installs) open the same files: WAL lets readers go on while
one writes, and the busy timeout makes a writer wait for another's lock instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from .settings import SQLITE_BUSY_TIMEOUT_MS

Migration = Callable[[sqlite3.Connection], None]

STATE_FILE_MODE = 0o600
"""Our SQLite files (and their ``-wal``/``-shm``) hold download sources and what the library
holds: readable by their owner only."""


class SqliteStore:
    """Base of `IndexStore` and `TaskStore`. Subclasses set `migrations` and `_error`."""

    migrations: ClassVar[Sequence[Migration]] = ()
    """Step N takes the schema from version N to N+1 (``PRAGMA user_version``)."""
    synchronous: ClassVar[str] = "NORMAL"
    row_factory: ClassVar[Callable[..., object] | None] = None
    extra_pragmas: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._owner_only()
        self._migrate()

    def _owner_only(self) -> None:
        """Create the file owner-only before SQLite opens it (SQLite gives its ``-wal`` and
        ``-shm`` files the database's mode), and narrow files made by older versions."""
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, STATE_FILE_MODE))
        for suffix in ("", "-wal", "-shm"):
            # Missing, or another user's (a library shared by several accounts): left as is.
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.chmod(f"{self.path}{suffix}", STATE_FILE_MODE)

    def _error(self, exc: sqlite3.Error) -> Exception:
        """The typed error that stands for ``exc`` (raised from it)."""
        raise NotImplementedError

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        if self.row_factory is not None:
            db.row_factory = self.row_factory
        db.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        for pragma in self.extra_pragmas:
            db.execute(f"PRAGMA {pragma}")
        return db

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = self._connect()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise self._error(exc) from exc
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads made in the block by this thread see one state of the database (a read
        transaction: WAL keeps it while others write), so that figures read one after the
        other agree (a count and the items it counts). The block must not write.

        Raises:
            The store's typed error (`_error`): the transaction cannot begin.
        """
        db = self.db
        if db.in_transaction:  # already inside one: it is the snapshot
            yield
            return
        try:
            db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            yield
        finally:
            if db.in_transaction:
                db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version, len(self.migrations)):
                self.migrations[step](db)
                db.execute(f"PRAGMA user_version={step + 1}")
        if version < len(self.migrations):
            # Until a checkpoint the main file keeps the pages as they were before the steps
            # (and the WAL any older frames): a step may have taken secrets out of rows (issue
            # #15), so both are overwritten now. Best effort: a reader in another process may
            # hold old frames, and SQLite then says so instead of raising.
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def close(self) -> None:
        """Close every thread's connection (call once no thread uses the store any more)."""
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()
