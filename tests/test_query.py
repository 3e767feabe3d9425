"""library/query.py: pages of summaries with search, filters, sort; and the index migration
that makes them fast (prefix indexes, sort indexes)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from model_shelf.library import index as index_module
from model_shelf.library.index import IndexStore
from model_shelf.library.query import (
    COUNT_LIMIT,
    RANK_LIMIT,
    ModelQuery,
    ModelStatus,
    QuerySort,
    facets,
    run_query,
)
from model_shelf.library.records import HashState, Health, ModelRecord


def record(name: str, model_type: str = "loras", **kw: object) -> ModelRecord:
    return ModelRecord.model_validate(
        {"type": model_type, "name": name, "hash_state": HashState.HASHED, **kw}
    )


@pytest.fixture
def store(tmp_path: Path) -> IndexStore:
    opened = IndexStore(tmp_path / "index.db")
    yield opened
    opened.close()


def names(store: IndexStore, **query: object) -> list[str]:
    return [f"{m.type}/{m.name}" for m in run_query(store, ModelQuery(**query)).items]


def test_relevance_puts_the_file_name_first(store: IndexStore) -> None:
    store.upsert_many(
        (record(n), 0)
        for n in [
            "anime/unrelated-lora.safetensors",  # matches by its folder only
            "style-anime-xl.safetensors",  # a word of the name
            "anime.safetensors",  # the whole name
            "animesque.safetensors",  # a prefix of a word
        ]
    )
    assert names(store, text="anime") == [
        "loras/anime.safetensors",
        "loras/style-anime-xl.safetensors",
        "loras/animesque.safetensors",
        "loras/anime/unrelated-lora.safetensors",
    ]
    assert names(store, text="anime", sort="name")[0] == "loras/anime.safetensors"


def test_broad_searches_stop_counting_and_page_on(store: IndexStore) -> None:
    store.upsert_many((record(f"model-{i:05}.safetensors"), 0) for i in range(COUNT_LIMIT + 200))
    page = run_query(store, ModelQuery(text="mod", limit=50))
    assert (page.total, page.exact) == (COUNT_LIMIT + 1, False)
    assert len(page.items) == 50
    far = run_query(store, ModelQuery(text="mod", offset=COUNT_LIMIT + 100, limit=50))
    assert len(far.items) == 50  # past what was counted: paged by SQL
    assert {m.id for m in page.items}.isdisjoint(m.id for m in far.items)
    narrow = run_query(store, ModelQuery(text="model 0001"))
    assert narrow.exact and narrow.total == 10  # 00010..00019
    assert narrow.total <= RANK_LIMIT


def test_filters_statuses_and_facets(store: IndexStore) -> None:
    store.upsert_many(
        [
            (record("a.safetensors", tags=["Anime", "xl"], probe={"architecture": "sdxl"}), 0),
            (record("b.ckpt", "checkpoints"), 0),
            (record("c.safetensors", health=Health.CORRUPTED), 0),
            (record("d.safetensors", hash_state=HashState.PENDING), 0),
        ]
    )
    assert names(store, status=ModelStatus.PICKLE) == ["checkpoints/b.ckpt"]
    assert names(store, status="corrupted") == ["loras/c.safetensors"]
    assert names(store, status="unverified") == ["loras/d.safetensors"]
    assert names(store, tag="anime") == ["loras/a.safetensors"]
    assert names(store, architecture="SDXL") == ["loras/a.safetensors"]
    assert names(store, type="checkpoints") == ["checkpoints/b.ckpt"]
    assert names(store, sort=QuerySort.NAME) == [
        "loras/a.safetensors",
        "checkpoints/b.ckpt",
        "loras/c.safetensors",
        "loras/d.safetensors",
    ]
    found = facets(store)
    assert found.total == 4
    assert {f.value: f.count for f in found.tags} == {"Anime": 1, "xl": 1}
    assert {f.value: f.count for f in found.statuses}["pickle"] == 1


def test_migration_from_version_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "index.db"
    with monkeypatch.context() as patch:
        patch.setattr(IndexStore, "migrations", index_module.MIGRATIONS[:2])
        old = IndexStore(path)
        with old._transaction() as db:  # rows as that version's writer wrote them
            for i in range(20):
                _insert_version_2(db, record(f"sdxl-{i}.safetensors", tags=["x"]))
        assert old.db.execute("PRAGMA user_version").fetchone()[0] == 2
        old.close()
    store = IndexStore(path)
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(index_module.MIGRATIONS)
        indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
        assert {"models_type_name", "models_name", "models_health"} <= indexes
        assert len(store.search("s")) == 20  # the full-text table kept every row
        assert run_query(store, ModelQuery(text="sd", tag="x")).total == 20
        assert store.count() == 20 and store.count_by("type") == {"loras": 20}  # issue #11
    finally:
        store.close()


def _insert_version_2(db: sqlite3.Connection, item: ModelRecord) -> None:
    """One row and its full-text entry, in the columns of index version 2."""
    cursor = db.execute(
        "INSERT INTO models (id, type, name, size, sha256, hash_state, health, architecture,"
        " created_at, record_json, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            item.id,
            item.type,
            item.name,
            item.size,
            item.hashes.get("sha256"),
            item.hash_state.value,
            item.health.value,
            item.probe.architecture,
            item.created_at.isoformat(),
            item.model_dump_json(),
            item.kind.value,
        ),
    )
    db.execute(
        "INSERT INTO models_fts (rowid, name, aliases, tags, sources, architecture)"
        " VALUES (?, ?, '', ?, '', ?)",
        (cursor.lastrowid, f"{item.type} {item.name}", " ".join(item.tags), ""),
    )
