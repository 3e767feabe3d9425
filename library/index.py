"""The SQLite index: a fast, searchable cache of the records. Disposable by design.

WAL mode so readers never block the writer and several processes (several ComfyUI installs)
can share one library. Deleting ``index.db`` loses nothing: `Shelf.rebuild_index` recreates it
from the sidecars. SQL uses ``?`` placeholders only; ORDER BY comes from `SortOrder`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from .errors import IndexStoreError
from .records import ModelRecord
from .sqlite_store import SqliteStore


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


def _migration_2(db: sqlite3.Connection) -> None:
    """Folder mtimes for the incremental start-up sync; ``kind`` and ``verified_at`` as columns
    so the sync and the background hasher never parse whole records to choose their work."""
    db.execute(
        "CREATE TABLE folders (path TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute("ALTER TABLE models ADD COLUMN kind TEXT NOT NULL DEFAULT 'file'")
    db.execute("ALTER TABLE models ADD COLUMN verified_at TEXT")
    db.execute("CREATE INDEX models_hash_state ON models(hash_state)")
    rows = db.execute(
        "SELECT rowid, json_extract(record_json, '$.kind'),"
        " json_extract(record_json, '$.verified_at') FROM models"
    ).fetchall()
    for rowid, kind, verified_at in rows:
        # Same text form as created_at (isoformat), so the two compare as strings.
        stamp = datetime.fromisoformat(verified_at).isoformat() if verified_at else None
        db.execute(
            "UPDATE models SET kind = ?, verified_at = ? WHERE rowid = ?",
            (kind or "file", stamp, rowid),
        )


def _migration_3(db: sqlite3.Connection) -> None:
    """Issue #6, the sidebar's search as you type and its sorted list at 100,000 models:

    - prefix indexes on the full-text table, so a one- to three-letter prefix ("s", "sd")
      reads one prepared list instead of merging every word that starts so (about 20x faster);
    - an index per sort order of `SortOrder` (and `query.QuerySort`), also within one type,
      so a page of a sorted list is read from an index instead of sorting every row for each
      page; and one on health, for the status filters and the counts of the health report.
    """
    db.execute(
        "CREATE VIRTUAL TABLE models_fts_next USING fts5("
        "name, aliases, tags, sources, architecture, prefix='1 2 3')"
    )
    db.execute(
        "INSERT INTO models_fts_next (rowid, name, aliases, tags, sources, architecture)"
        " SELECT rowid, name, aliases, tags, sources, architecture FROM models_fts"
    )
    db.execute("DROP TABLE models_fts")
    db.execute("ALTER TABLE models_fts_next RENAME TO models_fts")
    db.execute("CREATE INDEX models_type_name ON models(type, name COLLATE NOCASE)")
    db.execute("CREATE INDEX models_name ON models(name COLLATE NOCASE, type)")
    db.execute("CREATE INDEX models_size ON models(size DESC, name)")
    db.execute("CREATE INDEX models_created ON models(created_at DESC, name)")
    # One type's models by size or age; also what the per-type disk totals read.
    db.execute("CREATE INDEX models_type_size ON models(type, size DESC)")
    db.execute("CREATE INDEX models_type_created ON models(type, created_at DESC)")
    # Status filters and counts by health read this, not the rows (which hold whole records).
    db.execute("CREATE INDEX models_health ON models(health, hash_state)")


def _migration_enrich(db: sqlite3.Connection) -> None:
    """Issue #12: raw answers of Civitai and Hugging Face, by request key, so a lookup made
    within a week asks no one again (stale-while-revalidate: `library.enrich.cache`)."""
    db.execute(
        "CREATE TABLE enrich_answers (key TEXT PRIMARY KEY, fetched_at REAL NOT NULL,"
        " found INTEGER NOT NULL, body TEXT NOT NULL) WITHOUT ROWID"
    )


def _count_rows(db: sqlite3.Connection) -> None:
    """Fill the kept counts (empty) from every row."""
    db.execute(
        "INSERT INTO model_counts (type, health, hash_state, archived, models, bytes)"
        " SELECT type, health, hash_state, archived, COUNT(*), SUM(size) FROM models"
        " GROUP BY type, health, hash_state, archived"
    )
    db.execute(
        "INSERT INTO sha_counts (sha256, models) SELECT sha256, COUNT(*) FROM models"
        " WHERE sha256 IS NOT NULL GROUP BY sha256"
    )


def _migration_health_counts(db: sqlite3.Connection) -> None:
    """Issue #11, the health report at 100,000 models without reading them: counts kept in the
    index by its one writer (`IndexStore`: every upsert, delete and `clear`, from any thread or
    process sharing the root), in the same transaction as the rows they count:

    - ``model_counts``: models and bytes per type, health, hash state and archived flag (the
      report's counts, the disk use per type, `count`, `count_by`);
    - ``sha_counts``: models per sha256, with an index of those held more than once (the
      duplicate groups, found without grouping every row);
    - ``health_sweeps``: what the last sweep found (`Doctor.sweep`), with when it ran;
    - ``archived`` as a column, and indexes to list a section's first items (by health, then
      type and name) and the oldest pending models without sorting every row.

    SQLite triggers would keep the counts too, but any trigger on ``models`` made each insert
    cost three times as much (a rebuild of 100,000 models: 9 s -> 24 s).
    """
    db.execute("ALTER TABLE models ADD COLUMN archived INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE models SET archived = 1"
        " WHERE json_extract(record_json, '$.archived_at') IS NOT NULL"
    )
    db.execute(
        "CREATE TABLE model_counts (type TEXT NOT NULL, health TEXT NOT NULL,"
        " hash_state TEXT NOT NULL, archived INTEGER NOT NULL, models INTEGER NOT NULL,"
        " bytes INTEGER NOT NULL, PRIMARY KEY (type, health, hash_state, archived)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE sha_counts (sha256 TEXT PRIMARY KEY, models INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX sha_counts_shared ON sha_counts(sha256) WHERE models > 1")
    _count_rows(db)
    db.execute(
        "CREATE TABLE health_sweeps (kind TEXT PRIMARY KEY, taken_at TEXT NOT NULL,"
        " body TEXT NOT NULL) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX models_health_order ON models(health, type, name)")
    db.execute("CREATE INDEX models_pending ON models(hash_state, created_at)")


# Numbered steps, N -> N+1; the index's PRAGMA user_version says how far it got.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,  # issue #6
    _migration_enrich,  # issue #12
    _migration_health_counts,  # issue #11
]


# Digest algorithm -> indexed column (a fixed map: column names never come from input).
_HASH_COLUMNS = {"sha256": "sha256", "blake3": "blake3", "xxh3_128": "xxh3"}


@dataclass(frozen=True)
class NameRow:
    """What resolving a name needs about one model, read without parsing its whole record."""

    type: str
    name: str
    aliases: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class LocationRow:
    """Where one model's record sits, and what the stat-only sync compares, read without parsing
    the record."""

    id: str
    type: str
    name: str
    kind: str
    """`ModelKind` value: file, folder or sharded."""
    health: str
    sidecar_mtime_ns: int
    size: int

    @property
    def folder(self) -> str:
        """The folder holding the sidecar, relative to the root (``type`` or ``type/sub``)."""
        head, _, _ = self.name.rpartition("/")
        return f"{self.type}/{head}" if head else self.type


_LOCATION_COLUMNS = "id, type, name, kind, health, sidecar_mtime_ns, size"


@dataclass(frozen=True)
class CountRow:
    """How many models (and bytes) share one type, health, hash state and archived flag: one
    row of the counts the index keeps (`IndexStore.count_rows`)."""

    type: str
    health: str
    hash_state: str
    archived: bool
    models: int
    bytes: int


@dataclass(frozen=True)
class DuplicateRow:
    """One model of a duplicate group, read without parsing its record."""

    sha256: str
    type: str
    name: str
    size: int


_COUNTED_COLUMNS = "type, health, hash_state, archived, size, sha256"
"""What a row adds to the kept counts (`_CountChanges`)."""


class _CountChanges:
    """What one transaction's writes change in the kept counts, applied before it commits."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str, str, int], list[int]] = {}
        self.shas: dict[str, int] = {}

    def add(self, row: Sequence[Any], sign: int) -> None:
        """Count (``sign`` 1) or uncount (-1) a row of `_COUNTED_COLUMNS`."""
        model_type, health, hash_state, archived, size, sha256 = row
        counts = self.models.setdefault((model_type, health, hash_state, int(archived)), [0, 0])
        counts[0] += sign
        counts[1] += sign * size
        if sha256 is not None:
            self.shas[sha256] = self.shas.get(sha256, 0) + sign

    def apply(self, db: sqlite3.Connection) -> None:
        db.executemany(
            "INSERT INTO model_counts (type, health, hash_state, archived, models, bytes)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (type, health, hash_state, archived)"
            " DO UPDATE SET models = models + excluded.models, bytes = bytes + excluded.bytes",
            [(*key, n, b) for key, (n, b) in self.models.items() if n or b],
        )
        db.execute("DELETE FROM model_counts WHERE models = 0")
        changed = [(sha, n) for sha, n in self.shas.items() if n]
        db.executemany(
            "INSERT INTO sha_counts (sha256, models) VALUES (?, ?)"
            " ON CONFLICT (sha256) DO UPDATE SET models = models + excluded.models",
            changed,
        )
        db.executemany(
            "DELETE FROM sha_counts WHERE sha256 = ? AND models = 0", [(s,) for s, _ in changed]
        )


def _fts_query(text: str) -> str:
    """User text -> an FTS5 query: every word must match as a prefix."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " AND ".join(f'"{word}"*' for word in words)


class IndexStore(SqliteStore):
    """One index file, one connection per thread."""

    migrations = MIGRATIONS
    extra_pragmas = ("foreign_keys=ON",)

    def _error(self, exc: sqlite3.Error) -> Exception:
        return IndexStoreError(f"index {self.path}: {exc}")

    # -- writes --------------------------------------------------------------

    def upsert(self, record: ModelRecord, sidecar_mtime_ns: int = 0) -> None:
        """Insert or replace the row for ``record`` (matched by id, or by type+name)."""
        self.upsert_many([(record, sidecar_mtime_ns)])

    def upsert_many(self, items: Iterable[tuple[ModelRecord, int]]) -> int:
        """Upsert many records in one transaction; returns how many."""
        count = 0
        counts = _CountChanges()
        with self._transaction() as db:
            for record, mtime_ns in items:
                self._upsert(db, record, mtime_ns, counts)
                count += 1
            counts.apply(db)
        return count

    def _upsert(
        self,
        db: sqlite3.Connection,
        record: ModelRecord,
        sidecar_mtime_ns: int,
        counts: _CountChanges,
    ) -> None:
        old = db.execute(
            f"SELECT rowid, {_COUNTED_COLUMNS} FROM models WHERE id = ? OR (type = ? AND name = ?)",
            (record.id, record.type, record.name),
        ).fetchall()
        for rowid, *counted in old:
            db.execute("DELETE FROM models_fts WHERE rowid = ?", (rowid,))
            db.execute("DELETE FROM models WHERE rowid = ?", (rowid,))
            counts.add(counted, -1)
        row = (
            record.type,
            record.health.value,
            record.hash_state.value,
            int(record.archived_at is not None),
            record.size,
            record.hashes.get("sha256"),
        )
        counts.add(row, 1)
        cursor = db.execute(
            "INSERT INTO models (id, type, name, size, sha256, blake3, xxh3, hash_state, health,"
            " architecture, model_kind, created_at, sidecar_mtime_ns, record_json, kind,"
            " verified_at, archived)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                record.kind.value,
                record.verified_at.isoformat() if record.verified_at else None,
                row[3],
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
        counts = _CountChanges()
        with self._transaction() as db:
            for rowid, *counted in db.execute(
                f"SELECT rowid, {_COUNTED_COLUMNS} FROM models WHERE id = ?", (model_id,)
            ).fetchall():
                db.execute("DELETE FROM models_fts WHERE rowid = ?", (rowid,))
                db.execute("DELETE FROM models WHERE rowid = ?", (rowid,))
                counts.add(counted, -1)
            counts.apply(db)

    def clear(self) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM models_fts")
            db.execute("DELETE FROM aliases")
            db.execute("DELETE FROM models")
            db.execute("DELETE FROM model_counts")
            db.execute("DELETE FROM sha_counts")
            db.execute("DELETE FROM folders")  # the next sync then looks at every folder

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

    def by_stem(
        self, stem: str, extensions: Iterable[str], model_type: str | None = None
    ) -> list[ModelRecord]:
        """Models whose name, or its last part (a bare filename), is ``stem`` plus one of
        ``extensions`` (lowercase, with the dot): a name typed without its extension."""
        if not stem.strip("/"):
            return []
        escaped = stem.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        sql = (
            "SELECT record_json FROM models"
            " WHERE (name LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\')"
        )
        params: list[object] = [f"{escaped}.%", f"%/{escaped}.%"]
        if model_type is not None:
            sql += " AND type = ?"
            params.append(model_type)
        wanted = {ext.lower() for ext in extensions}
        found = []
        for record in self._records(sql + " ORDER BY type, name", tuple(params)):
            # LIKE ignores case and its % spans dots and slashes: keep stem + one extension.
            head, _, ext = record.name.rpartition(".")
            if f".{ext.lower()}" in wanted and (head == stem or head.endswith(f"/{stem}")):
                found.append(record)
        return found

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
        """How many models (from the kept counts: no row is read).

        Raises:
            `IndexStoreError`: the index cannot be read.
        """
        return self._rows("SELECT COALESCE(SUM(models), 0) FROM model_counts")[0][0]

    def recount(self) -> None:
        """Count every row afresh into the kept counts (a fraction of a second at 100,000
        models): what a writer that does not keep them (an older version sharing the root)
        changed is then counted too."""
        with self._transaction() as db:
            db.execute("DELETE FROM model_counts")
            db.execute("DELETE FROM sha_counts")
            _count_rows(db)

    def counts_match_rows(self) -> bool:
        """Do the kept counts add up to the rows there are? A cheap check (one index read),
        run when the library opens: rows added or removed by a writer that does not keep the
        counts show here.

        Raises:
            `IndexStoreError`: the index cannot be read.
        """
        return self._rows("SELECT COUNT(*) FROM models")[0][0] == self.count()

    def count_rows(self) -> list[CountRow]:
        """The counts the index keeps (`CountRow`): a few rows whatever the library's size.

        Raises:
            `IndexStoreError`: the index cannot be read.
        """
        return [
            CountRow(t, h, s, bool(a), n, b)
            for t, h, s, a, n, b in self._rows(
                "SELECT type, health, hash_state, archived, models, bytes FROM model_counts"
                " WHERE models > 0 ORDER BY type, health, hash_state, archived"
            )
        ]

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

    # -- enrichment answers (issue #12) ---------------------------------------------------------

    def answers(self, keys: Sequence[str]) -> dict[str, tuple[float, bool, str]]:
        """Cached remote answers: ``key -> (fetched_at, found, body)`` for the keys present.

        Raises:
            `IndexStoreError`: the index cannot be read.
        """
        wanted = list(dict.fromkeys(keys))
        found: dict[str, tuple[float, bool, str]] = {}
        for start in range(0, len(wanted), 500):  # SQLite caps the number of parameters
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, fetched_at, hit, body in self._rows(
                f"SELECT key, fetched_at, found, body FROM enrich_answers WHERE key IN ({marks})",
                chunk,
            ):
                found[key] = (fetched_at, bool(hit), body)
        return found

    def store_answers(self, rows: Iterable[tuple[str, float, bool, str]]) -> None:
        """Remember ``(key, fetched_at, found, body)`` answers, replacing older ones."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO enrich_answers (key, fetched_at, found, body)"
                " VALUES (?, ?, ?, ?)",
                [(k, t, int(f), b) for k, t, f, b in rows],
            )

    def metadata_rows(self, limit: int, checked_before: str | None) -> list[str]:
        """Ids of up to ``limit`` hashed, present models to enrich: never checked ones first
        (newest first), then (with ``checked_before``, an isoformat time) those checked before.
        """
        ids = [
            row[0]
            for row in self._rows(
                "SELECT id FROM models WHERE health != 'missing'"
                " AND json_extract(record_json, '$.metadata.checked_at') IS NULL"
                " ORDER BY created_at DESC LIMIT ?",
                (limit,),
            )
        ]
        if checked_before is not None and len(ids) < limit:
            ids += [
                row[0]
                for row in self._rows(
                    "SELECT id FROM models WHERE health != 'missing'"
                    " AND json_extract(record_json, '$.metadata.checked_at') < ?"
                    " ORDER BY json_extract(record_json, '$.metadata.checked_at') LIMIT ?",
                    (checked_before, limit - len(ids)),
                )
            ]
        return ids

    def metadata_summaries(self) -> list[tuple[str, str, str, str | None]]:
        """``(id, type, name, metadata JSON)`` of every model, by type and name (the grid)."""
        return [
            (i, t, n, m)
            for i, t, n, m in self._rows(
                "SELECT id, type, name, json_extract(record_json, '$.metadata') FROM models"
                " ORDER BY type, name COLLATE NOCASE"
            )
        ]

    # -- for the incremental sync, the watcher and the health checks ---------------------------

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise IndexStoreError(f"index {self.path}: {exc}") from exc

    def folder_mtimes(self) -> dict[str, int]:
        """``folder (relative to the root, POSIX) -> mtime_ns`` as of the last sync that saw it.

        Raises:
            `IndexStoreError`: the index cannot be read.
        """
        return dict(self._rows("SELECT path, mtime_ns FROM folders"))

    def update_folder_mtimes(self, changed: dict[str, int], removed: Iterable[str]) -> None:
        """Store ``changed`` folder mtimes and forget ``removed`` folders, in one transaction."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO folders (path, mtime_ns) VALUES (?, ?)", changed.items()
            )
            db.executemany("DELETE FROM folders WHERE path = ?", [(p,) for p in removed])

    def location_rows(self, model_type: str | None = None) -> list[LocationRow]:
        """Every model's `LocationRow` (of one type if given): no record is parsed."""
        sql = f"SELECT {_LOCATION_COLUMNS} FROM models"
        params: list[object] = []
        if model_type is not None:
            sql += " WHERE type = ?"
            params.append(model_type)
        return [LocationRow(*row) for row in self._rows(sql, params)]

    def rows_under(self, model_type: str, prefix: str) -> list[LocationRow]:
        """Models whose name is ``prefix`` or lies below ``prefix/`` in ``model_type``."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [
            LocationRow(*row)
            for row in self._rows(
                f"SELECT {_LOCATION_COLUMNS} FROM models"
                " WHERE type = ? AND (name = ? OR name LIKE ? ESCAPE '\\')",
                (model_type, prefix, f"{escaped}/%"),
            )
        ]

    def location_row(self, model_type: str, name: str) -> LocationRow | None:
        """The `LocationRow` of the model at exactly ``type/name``, if any."""
        rows = self._rows(
            f"SELECT {_LOCATION_COLUMNS} FROM models WHERE type = ? AND name = ?",
            (model_type, name),
        )
        return LocationRow(*rows[0]) if rows else None

    def files_of(self, ids: Iterable[str]) -> dict[str, list[tuple[str, int, int]]]:
        """``id -> [(path, size, mtime_ns), ...]`` of each model's files, without parsing the
        whole record (what the stat-only checks compare)."""
        wanted = list(dict.fromkeys(ids))
        result: dict[str, list[tuple[str, int, int]]] = {}
        for start in range(0, len(wanted), 500):  # SQLite caps the number of parameters
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for model_id, files in self._rows(
                "SELECT id, json_extract(record_json, '$.files') FROM models"
                f" WHERE id IN ({marks})",
                chunk,
            ):
                result[model_id] = [
                    (f["path"], f["size"], f.get("mtime_ns", 0)) for f in json.loads(files or "[]")
                ]
        return result

    def get_at(self, model_type: str, name: str) -> ModelRecord | None:
        """The model recorded at exactly ``type/name``, if any."""
        found = self._records(
            "SELECT record_json FROM models WHERE type = ? AND name = ?", (model_type, name)
        )
        return found[0] if found else None

    def get_many(self, ids: Iterable[str]) -> list[ModelRecord]:
        """Records for ``ids`` (unknown ids are skipped), in no particular order."""
        wanted = list(dict.fromkeys(ids))
        found: list[ModelRecord] = []
        for start in range(0, len(wanted), 500):  # SQLite caps the number of parameters
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += self._records(
                f"SELECT record_json FROM models WHERE id IN ({marks})", tuple(chunk)
            )
        return found

    def with_health(
        self, health: str, limit: int | None = None, *, archived: bool | None = None
    ) -> list[ModelRecord]:
        """Models whose last check found ``health`` (a `Health` value), by type and name.

        Args:
            limit (`int`, *optional*): at most this many (the first ones).
            archived (`bool`, *optional*): only archived stubs (True) or only the others.
        """
        sql = "SELECT record_json FROM models WHERE health = ?"
        params: list[object] = [health]
        if archived is not None:
            sql += " AND archived = ?"
            params.append(int(archived))
        sql += " ORDER BY type, name LIMIT ?"
        return self._records(sql, (*params, -1 if limit is None else limit))

    def unverified_since(self, ids: Iterable[str], since: datetime) -> list[str]:
        """Those of ``ids`` that are hashed, present (health ok) and not verified since
        ``since``, by type and name: what a sweep found changed and nobody has checked yet."""
        wanted = list(dict.fromkeys(ids))
        found: list[tuple[str, str, str]] = []
        for start in range(0, len(wanted), 500):  # SQLite caps the number of parameters
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += self._rows(
                f"SELECT type, name, id FROM models WHERE id IN ({marks})"
                " AND health = 'ok' AND hash_state = 'hashed'"
                " AND (verified_at IS NULL OR verified_at < ?)",
                (*chunk, since.isoformat()),
            )
        return [model_id for _, _, model_id in sorted(found)]

    def pending_rows(self, limit: int) -> list[LocationRow]:
        """Up to ``limit`` models still waiting for their digests, oldest first."""
        return [
            LocationRow(*row)
            for row in self._rows(
                f"SELECT {_LOCATION_COLUMNS} FROM models WHERE hash_state = 'pending'"
                " AND health NOT IN ('missing', 'damaged') ORDER BY created_at LIMIT ?",
                (limit,),
            )
        ]

    def unverified_rows(self, since: datetime, limit: int) -> list[LocationRow]:
        """Up to ``limit`` hashed, present models not verified since ``since``, longest first.

        A model never verified counts from when it was recorded (its digests were taken then).
        """
        return [
            LocationRow(*row)
            for row in self._rows(
                f"SELECT {_LOCATION_COLUMNS} FROM models WHERE hash_state = 'hashed'"
                " AND health NOT IN ('missing', 'damaged')"
                " AND COALESCE(verified_at, created_at) < ?"
                " ORDER BY COALESCE(verified_at, created_at) LIMIT ?",
                (since.isoformat(), limit),
            )
        ]

    def count_by(self, column: Literal["health", "hash_state", "type"]) -> dict[str, int]:
        """How many models have each value of ``column`` (from the kept counts)."""
        sql = _COUNT_BY[column]
        return dict(self._rows(sql))

    def bytes_by_type(self) -> dict[str, tuple[int, int]]:
        """``type -> (models, bytes)`` from the recorded sizes (the kept counts: no row and no
        folder is read)."""
        return {
            t: (n, b)
            for t, n, b in self._rows(
                "SELECT type, SUM(models), SUM(bytes) FROM model_counts GROUP BY type"
                " HAVING SUM(models) > 0"
            )
        }

    def duplicate_rows(self) -> list[DuplicateRow]:
        """Every model whose sha256 another model shares, by sha256, oldest first within one
        (the order `dedupe` keeps); read from the shared-sha256 index, not by grouping rows."""
        return [
            DuplicateRow(*row)
            for row in self._rows(
                # IN, not a join: the planner then reads the shared-sha256 index first.
                "SELECT sha256, type, name, size FROM models WHERE sha256 IN"
                " (SELECT sha256 FROM sha_counts WHERE models > 1)"
                " ORDER BY sha256, created_at, type, name"
            )
        ]

    def duplicate_groups(self) -> list[list[ModelRecord]]:
        """Groups of two or more models with the same sha256, oldest first in each group."""
        rows = self._rows("SELECT sha256 FROM sha_counts WHERE models > 1 ORDER BY sha256")
        groups = []
        for (sha256,) in rows:
            groups.append(
                self._records(
                    "SELECT record_json FROM models WHERE sha256 = ?"
                    " ORDER BY created_at, type, name",
                    (sha256,),
                )
            )
        return groups

    # -- what the last sweep found (issue #11) ---------------------------------------------------

    def save_sweep(self, kind: str, taken_at: datetime, body: str) -> None:
        """Keep what a sweep of ``kind`` found (``body``, JSON), replacing the last one."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO health_sweeps (kind, taken_at, body) VALUES (?, ?, ?)",
                (kind, taken_at.isoformat(), body),
            )

    def change_sweep(self, kind: str, change: Callable[[str], str | None]) -> None:
        """Replace the kept ``body`` of ``kind`` with ``change(body)`` (None: leave it), in one
        transaction: two processes changing it at once each see the other's change."""
        with self._transaction() as db:
            row = db.execute("SELECT body FROM health_sweeps WHERE kind = ?", (kind,)).fetchone()
            body = change(row[0]) if row is not None else None
            if body is not None:
                db.execute("UPDATE health_sweeps SET body = ? WHERE kind = ?", (body, kind))

    def load_sweep(self, kind: str) -> tuple[datetime, str] | None:
        """``(taken_at, body)`` of the last sweep of ``kind``; None if none was kept.

        Raises:
            `IndexStoreError`: the index cannot be read.
        """
        rows = self._rows("SELECT taken_at, body FROM health_sweeps WHERE kind = ?", (kind,))
        return (datetime.fromisoformat(rows[0][0]), rows[0][1]) if rows else None


# Fixed statements: a column name never comes from input. Read from the kept counts.
_COUNT_BY = {
    column: f"SELECT {column}, SUM(models) FROM model_counts GROUP BY {column}"
    f" HAVING SUM(models) > 0"
    for column in ("health", "hash_state", "type")
}
