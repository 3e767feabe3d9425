"""The SQLite index: a fast, searchable cache of the records. Disposable by design.

WAL mode so readers never block the writer and several processes (several ComfyUI installs)
can share one library. Deleting ``index.db`` loses nothing: `Shelf.rebuild_index` recreates it
from the sidecars. SQL uses ``?`` placeholders only; ORDER BY comes from `SortOrder`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .errors import IndexStoreError
from .records import ModelRecord
from .settings import SQLITE_BUSY_TIMEOUT_MS


class SortOrder(str, Enum):
    NAME = "name"
    SIZE = "size"
    NEWEST = "newest"
    TYPE = "type"


_ORDER_BY = {
    SortOrder.NAME: "name COLLATE NOCASE, type",
    SortOrder.SIZE: "size DESC, name",
    SortOrder.NEWEST: "created_at DESC, name",
    SortOrder.TYPE: "type, name COLLATE NOCASE",
}


def _migration_1(db: sqlite3.Connection) -> None:
    statements = [
        """CREATE TABLE models (
            rowid INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT,
            blake3 TEXT,
            xxh3 TEXT,
            hash_state TEXT NOT NULL,
            health TEXT NOT NULL,
            architecture TEXT,
            model_kind TEXT,
            created_at TEXT NOT NULL,
            sidecar_mtime_ns INTEGER NOT NULL DEFAULT 0,
            record_json TEXT NOT NULL,
            UNIQUE (type, name)
        )""",
        "CREATE INDEX models_sha256 ON models(sha256)",
        "CREATE INDEX models_blake3 ON models(blake3)",
        "CREATE INDEX models_xxh3 ON models(xxh3)",
        """CREATE TABLE aliases (
            model_rowid INTEGER NOT NULL REFERENCES models(rowid) ON DELETE CASCADE,
            alias TEXT NOT NULL COLLATE NOCASE,
            PRIMARY KEY (model_rowid, alias)
        )""",
        "CREATE INDEX aliases_alias ON aliases(alias)",
        "CREATE VIRTUAL TABLE models_fts USING fts5(name, aliases, tags, sources, architecture)",
    ]
    # One statement at a time: executescript() would COMMIT and break the migration transaction.
    for statement in statements:
        db.execute(statement)


# Numbered steps, N -> N+1; the index's PRAGMA user_version says how far it got.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migration_1]


# Digest algorithm -> indexed column (a fixed map: column names never come from input).
_HASH_COLUMNS = {"sha256": "sha256", "blake3": "blake3", "xxh3_128": "xxh3"}


def _fts_query(text: str) -> str:
    """User text -> an FTS5 query: every word must match as a prefix."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " AND ".join(f'"{word}"*' for word in words)


@dataclass(frozen=True)
class NameRow:
    """What resolving a name needs about one model, read without parsing its whole record."""

    type: str
    name: str
    aliases: tuple[str, ...]
    tags: tuple[str, ...]


class IndexStore:
    """One index file, one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._migrate()

    # -- connections ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        db.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @property
    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = self._connect()
            except sqlite3.Error as exc:
                raise IndexStoreError(f"cannot open index {self.path}: {exc}") from exc
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
            raise IndexStoreError(f"index {self.path}: {exc}") from exc
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version, len(MIGRATIONS)):
                MIGRATIONS[step](db)
                db.execute(f"PRAGMA user_version={step + 1}")

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    # -- writes --------------------------------------------------------------

    def upsert(self, record: ModelRecord, sidecar_mtime_ns: int = 0) -> None:
        """Insert or replace the row for ``record`` (matched by id, or by type+name)."""
        with self._transaction() as db:
            self._upsert(db, record, sidecar_mtime_ns)

    def upsert_many(self, items: Iterable[tuple[ModelRecord, int]]) -> int:
        """Upsert many records in one transaction; returns how many."""
        count = 0
        with self._transaction() as db:
            for record, mtime_ns in items:
                self._upsert(db, record, mtime_ns)
                count += 1
        return count

    def _upsert(self, db: sqlite3.Connection, record: ModelRecord, sidecar_mtime_ns: int) -> None:
        old = db.execute(
            "SELECT rowid FROM models WHERE id = ? OR (type = ? AND name = ?)",
            (record.id, record.type, record.name),
        ).fetchall()
        for (rowid,) in old:
            db.execute("DELETE FROM models_fts WHERE rowid = ?", (rowid,))
            db.execute("DELETE FROM models WHERE rowid = ?", (rowid,))
        cursor = db.execute(
            "INSERT INTO models (id, type, name, size, sha256, blake3, xxh3, hash_state, health,"
            " architecture, model_kind, created_at, sidecar_mtime_ns, record_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.type,
                record.name,
                record.size,
                record.hashes.get("sha256"),
                record.hashes.get("blake3"),
                record.hashes.get("xxh3_128"),
                record.hash_state.value,
                record.health.value,
                record.probe.architecture,
                record.probe.kind,
                record.created_at.isoformat(),
                sidecar_mtime_ns,
                record.model_dump_json(),
            ),
        )
        rowid = cursor.lastrowid
        db.executemany(
            "INSERT OR IGNORE INTO aliases (model_rowid, alias) VALUES (?, ?)",
            [(rowid, alias) for alias in record.aliases],
        )
        db.execute(
            "INSERT INTO models_fts (rowid, name, aliases, tags, sources, architecture)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                rowid,
                f"{record.type} {record.name}",
                " ".join(record.aliases),
                " ".join(record.tags),
                " ".join(s.repo_id or s.url for s in record.sources),
                record.probe.architecture or "",
            ),
        )

    def delete(self, model_id: str) -> None:
        with self._transaction() as db:
            for (rowid,) in db.execute(
                "SELECT rowid FROM models WHERE id = ?", (model_id,)
            ).fetchall():
                db.execute("DELETE FROM models_fts WHERE rowid = ?", (rowid,))
                db.execute("DELETE FROM models WHERE rowid = ?", (rowid,))

    def clear(self) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM models_fts")
            db.execute("DELETE FROM aliases")
            db.execute("DELETE FROM models")

    # -- reads ---------------------------------------------------------------

    def _records(self, sql: str, params: tuple[object, ...] = ()) -> list[ModelRecord]:
        try:
            rows = self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise IndexStoreError(f"index {self.path}: {exc}") from exc
        return [ModelRecord.model_validate_json(row[0]) for row in rows]

    def get(self, model_id: str) -> ModelRecord | None:
        found = self._records("SELECT record_json FROM models WHERE id = ?", (model_id,))
        return found[0] if found else None

    def by_name(self, name: str, model_type: str | None = None) -> list[ModelRecord]:
        """Models whose name is ``name``, or whose name ends with ``/name`` (a bare filename)."""
        sql = "SELECT record_json FROM models WHERE (name = ? OR name LIKE ? ESCAPE '\\')"
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params: list[object] = [name, f"%/{escaped}"]
        if model_type is not None:
            sql += " AND type = ?"
            params.append(model_type)
        return self._records(sql + " ORDER BY type, name", tuple(params))

    def by_alias(self, alias: str, model_type: str | None = None) -> list[ModelRecord]:
        sql = (
            "SELECT m.record_json FROM aliases a JOIN models m ON m.rowid = a.model_rowid"
            " WHERE a.alias = ?"
        )
        params: list[object] = [alias]
        if model_type is not None:
            sql += " AND m.type = ?"
            params.append(model_type)
        return self._records(sql, tuple(params))

    def by_hash(self, digest: str) -> list[ModelRecord]:
        """Models whose digest starts with ``digest`` (8+ hex digits; ``algo:`` optional)."""
        algo, _, hexpart = digest.lower().rpartition(":")
        if not re.fullmatch(r"[0-9a-f]{8,128}", hexpart):
            return []
        algorithms = [algo] if algo else list(_HASH_COLUMNS)
        found: dict[str, ModelRecord] = {}
        for name in algorithms:
            column = _HASH_COLUMNS.get(name)
            if column is None:
                continue
            prefix = f"{name}:{hexpart}"
            for record in self._records(
                f"SELECT record_json FROM models WHERE {column} >= ? AND {column} < ?",
                (prefix, prefix + "\uffff"),
            ):
                found[record.id] = record
        return list(found.values())

    def list(
        self,
        model_type: str | None = None,
        order: SortOrder = SortOrder.TYPE,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ModelRecord]:
        sql = "SELECT record_json FROM models"
        params: list[object] = []
        if model_type is not None:
            sql += " WHERE type = ?"
            params.append(model_type)
        sql += f" ORDER BY {_ORDER_BY[order]} LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
        return self._records(sql, tuple(params))

    def search(
        self, text: str, model_type: str | None = None, limit: int = 50
    ) -> list[ModelRecord]:
        """Prefix search over names, aliases, tags, sources and architecture, best match first."""
        query = _fts_query(text)
        if not query:
            return self.list(model_type, limit=limit)
        sql = (
            "SELECT m.record_json FROM models_fts f JOIN models m ON m.rowid = f.rowid"
            " WHERE models_fts MATCH ?"
        )
        params: list[object] = [query]
        if model_type is not None:
            sql += " AND m.type = ?"
            params.append(model_type)
        sql += " ORDER BY f.rank LIMIT ?"
        params.append(limit)
        return self._records(sql, tuple(params))

    def sidecar_mtimes(self) -> dict[tuple[str, str], tuple[str, int]]:
        """``(type, name) -> (id, sidecar mtime_ns)`` for the stat-only sync."""
        rows = self.db.execute("SELECT type, name, id, sidecar_mtime_ns FROM models").fetchall()
        return {(t, n): (i, m) for t, n, i, m in rows}

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM models").fetchone()[0]

    def name_rows(self) -> list[NameRow]:
        """Type, name, aliases and tags of every model: a name table for fast lookups.

        Raises:
            `IndexStoreError`: the index cannot be read.
        """
        try:
            rows = self.db.execute(
                "SELECT rowid, type, name, json_extract(record_json, '$.tags') FROM models"
            ).fetchall()
            alias_rows = self.db.execute("SELECT model_rowid, alias FROM aliases").fetchall()
        except sqlite3.Error as exc:
            raise IndexStoreError(f"index {self.path}: {exc}") from exc
        aliases: dict[int, list[str]] = {}
        for rowid, alias in alias_rows:
            aliases.setdefault(rowid, []).append(alias)
        return [
            NameRow(
                type=model_type,
                name=name,
                aliases=tuple(aliases.get(rowid, ())),
                tags=tuple(json.loads(tags)) if tags and tags != "[]" else (),
            )
            for rowid, model_type, name, tags in rows
        ]

    def data_version(self) -> int:
        """A number that changes whenever another connection (thread or process) commits.

        Cheap enough to poll every second: it reads no table (``PRAGMA data_version``).

        Raises:
            `IndexStoreError`: the index cannot be read.
        """
        try:
            return self.db.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise IndexStoreError(f"index {self.path}: {exc}") from exc

    # -- for the incremental sync, the watcher and the health checks ---------------------------
