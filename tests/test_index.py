"""The index is a cache: rebuildable from records, searchable, shared by processes."""

import sqlite3
import stat
from pathlib import Path

from model_shelf.library import Shelf
from model_shelf.library.index import SortOrder


def _tagged_library(shelf, make_model):
    for i, (kind, name, tags) in enumerate(
        [
            ("loras", "sdxl/detail-tweaker.safetensors", ["detail", "xl"]),
            ("loras", "anime-style.safetensors", ["anime"]),
            ("checkpoints", "juggernaut_xl_v9.safetensors", ["photo"]),
        ]
    ):
        record = shelf.import_model(make_model(seed=i), kind, name=name)
        record.tags = tags
        record.aliases = [f"alias-{i}.safetensors"]
        shelf.catalog.save(record)


def _state(shelf):
    return sorted(
        (r.type, r.name, r.id, tuple(sorted(r.hashes.items())), tuple(r.tags), tuple(r.aliases))
        for r in shelf.list_models()
    )


def test_deleting_index_db_loses_nothing(root, make_model):
    with Shelf.open(root) as shelf:
        _tagged_library(shelf, make_model)
        before = _state(shelf)
    for suffix in ("", "-wal", "-shm"):
        (root / ".shelf" / f"index.db{suffix}").unlink(missing_ok=True)

    with Shelf.open(root) as shelf:
        assert shelf.rebuild_index() == 3
        assert _state(shelf) == before
        assert shelf.find("alias-1.safetensors").name == "anime-style.safetensors"


def test_a_corrupt_index_is_set_aside_and_rebuilt(root, make_model):
    with Shelf.open(root) as shelf:
        _tagged_library(shelf, make_model)
        before = _state(shelf)
    (root / ".shelf" / "index.db").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (root / ".shelf" / f"index.db{suffix}").unlink(missing_ok=True)

    with Shelf.open(root) as shelf:
        assert _state(shelf) == before  # the start-up sync re-read every record
    assert (root / ".shelf" / "index.db.broken").exists()


def test_index_is_wal_and_has_fts5(shelf):
    db = sqlite3.connect(shelf.layout.index_db)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT name FROM sqlite_master WHERE name='models_fts'").fetchone()


def test_search_by_prefix_tag_and_alias(shelf, make_model):
    _tagged_library(shelf, make_model)
    assert [r.name for r in shelf.search("jugger")] == ["juggernaut_xl_v9.safetensors"]
    assert [r.name for r in shelf.search("anime")] == ["anime-style.safetensors"]
    assert [r.name for r in shelf.search("detail xl")] == ["sdxl/detail-tweaker.safetensors"]
    assert {r.type for r in shelf.search("safetensors", "loras")} == {"loras"}
    assert shelf.search("nothing-like-this") == []


def test_find_by_bare_filename_type_name_and_hash(shelf, make_model):
    _tagged_library(shelf, make_model)
    record = shelf.find("detail-tweaker.safetensors")  # sits in a subfolder
    assert record.name == "sdxl/detail-tweaker.safetensors"
    assert shelf.find("loras/sdxl/detail-tweaker.safetensors").id == record.id
    assert shelf.find(record.hashes["sha256"][:20]).id == record.id
    assert shelf.find(record.hashes["blake3"]).id == record.id


def test_list_orders(shelf, make_model):
    _tagged_library(shelf, make_model)
    by_name = [r.name for r in shelf.list_models(order=SortOrder.NAME)]
    assert by_name == sorted(by_name, key=str.lower)
    assert len(shelf.list_models(limit=2)) == 2


def test_two_processes_share_one_index(root, make_model):
    with Shelf.open(root) as first, Shelf.open(root) as second:
        first.import_model(make_model(), "loras")
        assert len(second.list_models()) == 1  # WAL: the other connection sees the commit
        second.import_model(make_model(), "vae")
        assert len(first.list_models()) == 2


def test_state_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """state.db keeps download sources (issue 15): it and index.db, with their -wal and -shm,
    are 0600 from the start, and older 0644 files are narrowed when opened."""
    root = tmp_path / "library"
    with Shelf.open(root) as shelf:
        shelf.downloads.list()
        shelf.index.count()
        files = sorted((root / ".shelf").glob("*.db*"))
        assert {p.name for p in files} >= {"index.db", "index.db-wal", "state.db", "state.db-shm"}
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {
            p.name: 0o600 for p in files
        }
    for path in files:
        if path.exists():
            path.chmod(0o644)
    with Shelf.open(root):
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files if p.exists())
