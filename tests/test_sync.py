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


# -- the incremental sync (issue #5) ---------------------------------------------------------


def _age(root, seconds=3600):
    """Date every folder and file back, as a library untouched since its last start."""
    import time as _time

    past = _time.time() - seconds
    for folder, _dirs, files in os.walk(root):
        if ".shelf" in folder.split(os.sep):
            continue
        for name in files:
            os.utime(os.path.join(folder, name), (past, past))
        os.utime(folder, (past, past))


def test_an_unchanged_library_looks_inside_no_folder(root, make_model):
    with Shelf.open(root) as shelf:
        for i in range(3):
            shelf.import_model(make_model(), "loras", name=f"sub{i}/m.safetensors")
    _age(root)
    with Shelf.open(root) as shelf:
        shelf.sync(full=True)  # records the aged mtimes
        report = shelf.sync()
        assert report.folders_seen > 3 and report.folders_examined == 0
        assert len(shelf.list_models()) == 3


def test_only_the_changed_folder_is_examined(root, make_model):
    with Shelf.open(root) as shelf:
        shelf.import_model(make_model(), "loras", name="a/m.safetensors")
        shelf.import_model(make_model(), "loras", name="b/m.safetensors")
    _age(root)
    with Shelf.open(root) as shelf:
        shelf.sync(full=True)
    make_model("new.safetensors", folder=root / "loras" / "b")
    with Shelf.open(root) as shelf:
        report = shelf.last_sync
        assert report.registered == ["loras/b/new.safetensors"]
        assert report.folders_examined == 1


def test_a_model_renamed_while_closed_keeps_its_record_and_hashes(root, make_model):
    with Shelf.open(root) as shelf:
        record = shelf.import_model(make_model(), "checkpoints", name="before.safetensors")
    os.rename(
        root / "checkpoints" / "before.safetensors", root / "checkpoints" / "after.safetensors"
    )
    with Shelf.open(root) as shelf:
        assert shelf.last_sync.moved == [
            "checkpoints/before.safetensors -> checkpoints/after.safetensors"
        ]
        moved = shelf.find("checkpoints/after.safetensors")
        assert moved.id == record.id and moved.hashes == record.hashes
        assert moved.hash_state is HashState.HASHED and moved.health is Health.OK
        assert not (root / "checkpoints" / "before.safetensors.shelf.json").exists()
        assert shelf.verifier.bytes_hashed == 0


def test_content_rewritten_in_place_is_found_by_the_sweep(root, make_model):
    with Shelf.open(root) as shelf:
        record = shelf.import_model(make_model(), "vae", name="v.safetensors")
    _age(root)
    with Shelf.open(root) as shelf:
        shelf.sync(full=True)
    path = root / "vae" / "v.safetensors"
    folder_mtime = os.stat(path.parent).st_mtime_ns
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    with open(path, "r+b") as handle:  # in place: the folder's mtime does not move
        handle.write(bytes(data))
    assert os.stat(path.parent).st_mtime_ns == folder_mtime
    with Shelf.open(root) as shelf:
        assert shelf.last_sync.changed == []  # the start-up sync cannot see it...
        sweep = shelf.reconciler.sweep()
        assert sweep.changed_ids == [record.id]  # ...the sweep does, and no byte is read
        assert shelf.verifier.bytes_hashed == 0


def test_a_folder_with_a_live_temporary_is_examined_again_next_time(root, make_model):
    with Shelf.open(root):
        pass
    live = temp_sibling(root / "loras" / "writing.safetensors")
    live.write_bytes(b"x")
    _age(root)
    with Shelf.open(root) as shelf:
        shelf.sync(full=True)
        assert shelf.sync().folders_examined == 1  # kept "unclean" while the writer lives
    live.unlink()


def test_model_and_sidecar_renamed_together_by_hand_keep_the_record(root, make_model):
    with Shelf.open(root) as shelf:
        record = shelf.import_model(make_model(), "checkpoints", name="two.safetensors")
        record.aliases.append("nickname")
        shelf.catalog.save(record)
        folder = root / "checkpoints"
        (folder / "two.safetensors").rename(folder / "deux.safetensors")
        (folder / "two.safetensors.shelf.json").rename(folder / "deux.safetensors.shelf.json")

        report = shelf.sync()

        assert report.reread == ["checkpoints/deux.safetensors"] and report.registered == []
        [kept] = shelf.list_models()
        assert (kept.name, kept.id, kept.aliases) == ("deux.safetensors", record.id, ["nickname"])


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
