"""Browsing the index: filtered, sorted, paginated pages of light model summaries.

What the sidebar's list and the HTTP API's ``GET /model-shelf/models`` need: prefix search
(FTS5) combined with filters (type, architecture, tag, status), a sort, a page window and the
total. Rows are read from the index's columns (plus a few small JSON fields of the shown rows
only), never parsed into whole records, so a page costs about the same at 100 models or 100,000.

SQL uses ``?`` placeholders only; ORDER BY and status conditions come from fixed maps.
"""

from __future__ import annotations

import json
import re
import sqlite3
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import IndexStoreError
from .index import IndexStore
from .layout import PICKLE_EXTENSIONS, check_type

MAX_PAGE = 500
"""Most models returned in one page."""


class ModelStatus(str, Enum):
    """The badge a model shows (and the filter that selects it)."""

    VERIFIED = "verified"
    """Digests known and the last check found the file intact."""
    UNVERIFIED = "unverified"
    """Recorded with a fingerprint only; its digests are still to be computed."""
    CORRUPTED = "corrupted"
    MISSING = "missing"
    DAMAGED = "damaged"
    """Its record cannot be read (or leads outside the library): ``repair`` re-creates it."""
    PICKLE = "pickle"
    """A pickle-format file (``.ckpt``, ``.pt``, ``.bin``...): loading it can run code."""


class QuerySort(str, Enum):
    RELEVANCE = "relevance"
    """Best text match first (with no text: as `TYPE`)."""
    NAME = "name"
    SIZE = "size"
    NEWEST = "newest"
    TYPE = "type"


_ORDER_BY = {
    QuerySort.NAME: "m.name COLLATE NOCASE, m.type",
    QuerySort.SIZE: "m.size DESC, m.name",
    QuerySort.NEWEST: "m.created_at DESC, m.name",
    QuerySort.TYPE: "m.type, m.name COLLATE NOCASE",
}

# The extension test stands for the probe's "pickle" format: it is a plain column check, where
# reading the format out of every record's JSON would cost a parse per row.
_PICKLE_CONDITION = (
    "(" + " OR ".join(f"lower(m.name) LIKE '%{ext}'" for ext in sorted(PICKLE_EXTENSIONS)) + ")"
)

_STATUS_CONDITION = {
    ModelStatus.VERIFIED: "m.health = 'ok' AND m.hash_state = 'hashed'",
    ModelStatus.UNVERIFIED: "m.health = 'ok' AND m.hash_state = 'pending'",
    ModelStatus.CORRUPTED: "m.health = 'corrupted'",
    ModelStatus.MISSING: "m.health = 'missing'",
    ModelStatus.DAMAGED: "m.health = 'damaged'",
    ModelStatus.PICKLE: _PICKLE_CONDITION,
}


class ModelQuery(BaseModel):
    """Which models, in which order, which window of them."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field("", max_length=200)
    """Every word must match the start of a word in a name, alias, tag, source or architecture."""
    type: str | None = Field(None, max_length=64)
    architecture: str | None = Field(None, max_length=64)
    tag: str | None = Field(None, max_length=64)
    status: ModelStatus | None = None
    sort: QuerySort = QuerySort.RELEVANCE
    offset: int = Field(0, ge=0, le=10_000_000)
    limit: int = Field(100, ge=1, le=MAX_PAGE)


class ModelSummary(BaseModel):
    """What a list row shows about one model."""

    id: str
    type: str
    name: str
    size: int
    kind: str
    health: str
    hash_state: str
    status: ModelStatus
    pickle: bool
    architecture: str | None = None
    model_kind: str | None = None
    sha256: str | None = None
    tags: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    created_at: str
    """ISO 8601, as stored."""
    verified_at: str | None = None


class ModelPage(BaseModel):
    """One window of a query's results and how many there are in all."""

    total: int
    """How many models match; at most `COUNT_LIMIT` + 1 for a text search (see ``exact``)."""
    exact: bool = True
    """False when a search matched more than `COUNT_LIMIT` models and counting stopped."""
    offset: int
    items: list[ModelSummary]


class Facet(BaseModel):
    value: str
    count: int


class Facets(BaseModel):
    """The values the filters can take, with how many models have each."""

    total: int
    types: list[Facet]
    architectures: list[Facet]
    tags: list[Facet]
    statuses: list[Facet]


def fts_match(text: str) -> str:
    """User text -> an FTS5 query: every word must match as a prefix (as `IndexStore.search`)."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " AND ".join(f'"{word}"*' for word in words)


def _tag_phrase(tag: str) -> str:
    """A tag -> an FTS5 phrase on the ``tags`` column (tags are indexed as their words)."""
    words = re.findall(r"\w+", tag, flags=re.UNICODE)
    return "tags : " + ('"' + " ".join(words) + '"') if words else ""


COUNT_LIMIT = 1000
"""A text search stops counting here: "1,000+" is as useful as an exact number while a name is
being typed, and counting every match of a one-letter prefix costs more than the search."""
RANK_LIMIT = 500
"""Matches ranked by relevance. Beyond that many the query is still being typed ("s", "sd"):
matches are shown in index order, which costs nothing."""

_COLUMNS = (
    "m.id, m.type, m.name, m.size, m.kind, m.health, m.hash_state, m.architecture,"
    " m.model_kind, m.sha256, json_extract(m.record_json, '$.tags'),"
    " json_extract(m.record_json, '$.aliases'), m.created_at, m.verified_at"
)
_PICKLE_SUFFIXES = tuple(sorted(PICKLE_EXTENSIONS))


def _summary(row: tuple[Any, ...]) -> ModelSummary:
    """A row of `_COLUMNS` as a summary. Built without validation: the index wrote every value
    itself, and validating 100 rows per keystroke would cost more than the query."""
    (model_id, model_type, name, size, kind, health, hash_state, arch, model_kind, sha256) = row[
        :10
    ]
    tags, aliases, created_at, verified_at = row[10:]
    if health == "corrupted":
        status = ModelStatus.CORRUPTED
    elif health == "missing":
        status = ModelStatus.MISSING
    elif health == "damaged":
        status = ModelStatus.DAMAGED
    elif hash_state == "pending":
        status = ModelStatus.UNVERIFIED
    else:
        status = ModelStatus.VERIFIED
    return ModelSummary.model_construct(
        id=model_id,
        type=model_type,
        name=name,
        size=size,
        kind=kind,
        health=health,
        hash_state=hash_state,
        status=status,
        pickle=name.lower().endswith(_PICKLE_SUFFIXES),
        architecture=arch,
        model_kind=model_kind,
        sha256=sha256,
        tags=json.loads(tags) if tags else [],
        aliases=json.loads(aliases) if aliases else [],
        created_at=created_at,
        verified_at=verified_at,
    )


def _words(text: str) -> list[str]:
    return [w.casefold() for w in re.findall(r"\w+", text, flags=re.UNICODE)]


def _relevance(words: list[str], name: str) -> tuple[int, int, str]:
    """Sort key: words that match the file name's own words (whole, then as a prefix) count
    most, words that matched elsewhere (folder, type, tag, alias, source) least; then shorter
    names first."""
    base = name.rsplit("/", 1)[-1]
    name_words = _words(base)
    score = 0
    for word in words:
        if word in name_words:
            score += 3
        elif any(w.startswith(word) for w in name_words):
            score += 2
        else:
            score += 1
    return (-score, len(base), name.casefold())


def run_query(index: IndexStore, query: ModelQuery) -> ModelPage:
    """One page of models matching ``query``, and how many match.

    Args:
        index (`IndexStore`): the library's index.
        query (`ModelQuery`): text, filters, sort and window.

    Returns:
        `ModelPage`: the window (``offset``, up to ``limit`` models) and the total.

    Raises:
        `UnknownTypeError`: ``query.type`` is not a model type.
        `IndexStoreError`: the index cannot be read.
    """
    where: list[str] = []
    params: list[object] = []
    match_parts = [p for p in (fts_match(query.text), _tag_phrase(query.tag or "")) if p]
    source = "models m"
    if match_parts:
        source = "models_fts f JOIN models m ON m.rowid = f.rowid"
        where.append("models_fts MATCH ?")
        params.append(" AND ".join(f"({p})" for p in match_parts))
    if query.type is not None:
        where.append("m.type = ?")
        params.append(check_type(query.type))
    if query.architecture:
        where.append("m.architecture = ? COLLATE NOCASE")
        params.append(query.architecture)
    if query.tag:
        # The FTS phrase narrowed the rows; this keeps exact (case-insensitive) tags only.
        where.append(
            "EXISTS (SELECT 1 FROM json_each(m.record_json, '$.tags') t"
            " WHERE lower(t.value) = lower(?))"
        )
        params.append(query.tag.strip())
    if query.status is not None:
        where.append(_STATUS_CONDITION[query.status])
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    try:
        db = index.db
        if match_parts:
            total, rows = _search(db, query, source, clause, params, only_text=len(where) == 1)
        else:
            total = db.execute(f"SELECT COUNT(*) FROM {source}{clause}", params).fetchone()[0]
            order = _ORDER_BY[QuerySort.TYPE if query.sort is QuerySort.RELEVANCE else query.sort]
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM {source}{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            ).fetchall()
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc).lower():
            # A query FTS5 cannot parse (our quoting should prevent it): nothing matches.
            return ModelPage(total=0, offset=query.offset, items=[])
        raise IndexStoreError(f"index {index.path}: {exc}") from exc
    except sqlite3.Error as exc:
        raise IndexStoreError(f"index {index.path}: {exc}") from exc
    return ModelPage.model_construct(
        total=total,
        exact=total <= COUNT_LIMIT,
        offset=query.offset,
        items=[_summary(r) for r in rows],
    )


def _search(
    db: sqlite3.Connection,
    query: ModelQuery,
    source: str,
    clause: str,
    params: list[object],
    only_text: bool,
) -> tuple[int, list[tuple[Any, ...]]]:
    """Total and page rows of a full-text query, evaluating the full-text match once on the
    usual path (each evaluation of a prefix costs about a millisecond at 100,000 models).

    One read of up to `COUNT_LIMIT` + 1 matching ids gives the total. A specific query (up to
    `RANK_LIMIT` matches; most are, once a few letters are typed) is ranked from it; a broad
    one is still being typed and is shown in index order, its first pages straight from that
    read. Other sorts, and pages past the read, are ordered by SQL.
    """
    probe_source = "models_fts f" if only_text else source  # no join per match if possible
    probe = [
        row[0]
        for row in db.execute(
            f"SELECT f.rowid FROM {probe_source}{clause} LIMIT ?", [*params, COUNT_LIMIT + 1]
        )
    ]
    total = len(probe)
    end = query.offset + query.limit
    if query.sort is QuerySort.RELEVANCE:
        if total <= RANK_LIMIT:
            words = _words(query.text)
            names = _rows(db, "rowid, name", probe)
            names.sort(key=lambda row: _relevance(words, row[1]))
            return total, _rows_by_rowid(db, [row[0] for row in names[query.offset : end]])
        if end <= total:
            return total, _rows_by_rowid(db, probe[query.offset : end])
        order = "f.rowid"
    else:
        order = _ORDER_BY[query.sort]
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM {source}{clause} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, query.limit, query.offset],
    ).fetchall()
    return total, rows


def _rows(db: sqlite3.Connection, columns: str, rowids: list[int]) -> list[tuple[Any, ...]]:
    """``columns`` of the models with these rowids (in no particular order)."""
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(rowids), 500):  # SQLite caps the number of parameters
        chunk = rowids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found += db.execute(
            f"SELECT {columns} FROM models m WHERE m.rowid IN ({marks})", chunk
        ).fetchall()
    return found


def _rows_by_rowid(db: sqlite3.Connection, rowids: list[int]) -> list[tuple[Any, ...]]:
    """`_COLUMNS` of these models, in this order."""
    by_rowid = {row[0]: row[1:] for row in _rows(db, f"m.rowid, {_COLUMNS}", rowids)}
    return [by_rowid[r] for r in rowids if r in by_rowid]


def facets(index: IndexStore, max_tags: int = 200) -> Facets:
    """Filter values with their counts: types, architectures, the most used tags, statuses.

    Raises:
        `IndexStoreError`: the index cannot be read.
    """
    try:
        db = index.db
        total = db.execute("SELECT COUNT(*) FROM models").fetchone()[0]
        types = db.execute(
            "SELECT type, COUNT(*) FROM models GROUP BY type ORDER BY type"
        ).fetchall()
        archs = db.execute(
            "SELECT architecture, COUNT(*) FROM models WHERE architecture IS NOT NULL"
            " GROUP BY architecture ORDER BY COUNT(*) DESC, architecture"
        ).fetchall()
        tags = db.execute(
            "SELECT t.value, COUNT(*) FROM models m, json_each(m.record_json, '$.tags') t"
            " GROUP BY t.value ORDER BY COUNT(*) DESC, t.value LIMIT ?",
            (max_tags,),
        ).fetchall()
        statuses = [
            (status.value, db.execute(f"SELECT COUNT(*) FROM models m WHERE {cond}").fetchone()[0])
            for status, cond in _STATUS_CONDITION.items()
        ]
    except sqlite3.Error as exc:
        raise IndexStoreError(f"index {index.path}: {exc}") from exc
    return Facets(
        total=total,
        types=[Facet(value=v, count=c) for v, c in types],
        architectures=[Facet(value=v, count=c) for v, c in archs],
        tags=[Facet(value=str(v), count=c) for v, c in tags],
        statuses=[Facet(value=v, count=c) for v, c in statuses],
    )
