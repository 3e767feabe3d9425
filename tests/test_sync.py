"""Start-up sync: stat only; temps from dead writers go, hand-made changes are picked up."""

import os
import subprocess
import sys

from model_shelf.library import Shelf
from model_shelf.library.fsutil import temp_sibling
from model_shelf.library.records import HashState, Health


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_writers_are_removed_live_ones_kept(root, make_model):
    with Shelf.open(root):
        pass
    folder = root / "checkpoints"
    live = temp_sibling(folder / "live.safetensors")  # ours, this process: alive
    live.write_bytes(b"x" * 10)
    dead = folder / live.name.replace(f"~{os.getpid()}~", f"~{_dead_pid()}~")
    dead.write_bytes(b"x" * 10)

    with Shelf.open(root) as shelf:
        assert not dead.exists()
        assert live.exists()
        assert str(dead) in shelf.last_sync.temps_removed
        assert shelf.list_models() == []
    assert (
        "temporary left by an interrupted import" in (root / ".shelf/deletions.jsonl").read_text()
    )


def test_file_copied_in_by_hand_is_registered_then_hashed(root, make_model):
    with Shelf.open(root):
        pass
    make_model("by-hand.safetensors", folder=root / "loras" / "manual")
    with Shelf.open(root) as shelf:
        [record] = shelf.list_models()
        assert record.name == "manual/by-hand.safetensors"
        assert record.hash_state is HashState.PENDING  # start-up never hashes
        shelf.hash_pending()
        assert shelf.find("by-hand.safetensors").hash_state is HashState.HASHED


def test_deleted_file_becomes_a_ghost_and_comes_back(root, make_model):
    with Shelf.open(root) as shelf:
        record = shelf.import_model(make_model(), "loras")
    path = root / "loras" / record.name
    kept = path.read_bytes()
    path.unlink()
    with Shelf.open(root) as shelf:
        assert shelf.find(record.name).health is Health.MISSING
        assert shelf.last_sync.ghosts == [record.display()]
    path.write_bytes(kept)
    with Shelf.open(root) as shelf:
        assert shelf.find(record.name).health is Health.OK


def test_sidecar_removed_by_hand_drops_the_row_and_reregisters(root, make_model):
    with Shelf.open(root) as shelf:
        record = shelf.import_model(make_model(), "vae")
    (root / "vae" / f"{record.name}.shelf.json").unlink()
    with Shelf.open(root) as shelf:
        [again] = shelf.list_models()
        assert again.name == record.name and again.id != record.id


def test_a_corrupt_file_copied_in_by_hand_is_reported(root, make_model):
    with Shelf.open(root):
        pass
    bad = make_model("broken.safetensors", folder=root / "loras")
    bad.write_bytes(bad.read_bytes()[:40])
    with Shelf.open(root) as shelf:
        [record] = shelf.list_models()
        assert record.health is Health.CORRUPTED
        assert "broken.safetensors" in record.health_detail


def test_model_and_record_renamed_by_hand_keep_identity(root, make_model):
    with Shelf.open(root) as shelf:
        record = shelf.import_model(make_model(), "loras", name="old.safetensors")
    folder = root / "loras"
    (folder / "old.safetensors").rename(folder / "new.safetensors")
    (folder / "old.safetensors.shelf.json").rename(folder / "new.safetensors.shelf.json")
    with Shelf.open(root) as shelf:
        [moved] = shelf.list_models()
        assert (moved.id, moved.name, moved.hashes) == (record.id, "new.safetensors", record.hashes)
        assert moved.files[0].path == "new.safetensors"
        assert moved.health is Health.OK
        assert shelf.last_sync.problems == [] and shelf.last_sync.registered == []
