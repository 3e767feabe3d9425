"""The watcher with a real watchdog observer (inotify, and polling), real files, real SQLite.

Tests wait for the watcher's batches (a queue, with a timeout) or for the background hasher to
go idle; none sleeps to let things settle, and none asserts on time (see bench/bench_watch.py
for delays).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import shutil
import time
from collections.abc import Callable, Iterator

import pytest
from comfy_stubs import Comfy
from conftest import QUICK_WATCH

from model_shelf.library import Shelf
from model_shelf.library.comfy_paths import FolderPathsBridge
from model_shelf.library.comfy_settings import ComfySettings
from model_shelf.library.records import HashState, Health
from model_shelf.library.settings import HealthSettings, WatchMode
from model_shelf.library.watch import WatchBatch, Watcher, open_for_writing

pytest_plugins = ["comfy_stubs.fixtures"]

TIMEOUT = 30.0

QUICK = QUICK_WATCH  # the name these tests use


class Batches:
    """The watcher's batches, as a queue the test waits on."""

    def __init__(self, watcher: Watcher) -> None:
        self.queue: queue.Queue[WatchBatch] = queue.Queue()
        self.seen: list[WatchBatch] = []
        watcher.on_batch(self.queue.put)

    def wait_until(self, predicate: Callable[[], object], what: str) -> None:
        """Return once ``predicate()`` is true, checking again after every batch."""
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            try:
                self.seen.append(self.queue.get(timeout=min(remaining, 1.0)))
            except queue.Empty:
                continue

    def wait_for_batch(self, predicate: Callable[[WatchBatch], bool], what: str) -> WatchBatch:
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            try:
                batch = self.queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(batch)
            if predicate(batch):
                return batch


class Recorder:
    """A library listener, like the ComfyUI bridge."""

    def __init__(self) -> None:
        self.changed: list[frozenset[str]] = []
        self.root: list[bool] = []

    def library_changed(self, types: frozenset[str]) -> None:
        self.changed.append(types)

    def root_changed(self, available: bool) -> None:
        self.root.append(available)


def start(shelf: Shelf, settings: HealthSettings = QUICK) -> tuple[Watcher, Batches]:
    watcher = shelf.start_watching(settings)
    batches = Batches(watcher)
    assert watcher.wait_idle(TIMEOUT)  # the catch-up sync is done
    return watcher, batches


@pytest.fixture
def watched(shelf: Shelf) -> Iterator[tuple[Shelf, Watcher, Batches]]:
    watcher, batches = start(shelf)
    try:
        yield shelf, watcher, batches
    finally:
        shelf.stop_watching()


def indexed(shelf: Shelf, model_type: str, name: str) -> bool:
    return shelf.index.location_row(model_type, name) is not None


def test_twenty_files_copied_in_by_hand_are_indexed_and_hashed_once(watched, make_model, tmp_path):
    shelf, watcher, batches = watched
    assert watcher.mode == "native"
    recorder = Recorder()
    watcher.subscribe(recorder)
    sources = [make_model(f"hand-{i:02d}.safetensors", folder=tmp_path / "src") for i in range(20)]

    for src in sources:
        shutil.copy(src, shelf.root / "loras" / src.name)

    batches.wait_until(
        lambda: all(indexed(shelf, "loras", s.name) for s in sources), "20 copied files indexed"
    )
    assert shelf.hasher is not None and shelf.hasher.wait_idle(TIMEOUT)
    records = shelf.list_models("loras")
    assert sorted(r.name for r in records) == sorted(s.name for s in sources)
    assert all(r.hash_state is HashState.HASHED and r.health is Health.OK for r in records)
    assert shelf.verifier.bytes_hashed == sum(s.stat().st_size for s in sources)  # once each
    assert any("loras" in types for types in recorder.changed)


def test_files_copied_by_hand_show_in_comfyui_lists_through_the_bridge(
    comfy: Comfy, shelf, make_model, tmp_path
):
    """The ComfyUI bridge subscribed to the watcher (in place of the change feed)."""
    folder_paths = comfy.folder_paths
    bridge = FolderPathsBridge(shelf, folder_paths, ComfySettings())
    bridge.install()  # installs and attaches the folder_paths wrappers
    watcher, batches = start(shelf)
    watcher.subscribe(bridge)
    try:
        assert folder_paths.get_filename_list("loras") == []  # ComfyUI has cached an empty list
        names = [f"sub/hand-{i:02d}.safetensors" for i in range(20)]
        (shelf.root / "loras" / "sub").mkdir()
        for i, name in enumerate(names):
            src = make_model(f"bridge-{i}.safetensors", folder=tmp_path / "src")
            shutil.copy(src, shelf.root / "loras" / name)
        root = shelf.root / "loras"

        def resolved() -> bool:  # bare filenames resolve only through the bridge's tables
            return all(
                folder_paths.get_full_path("loras", name.rpartition("/")[2]) == str(root / name)
                for name in names
            )

        batches.wait_until(resolved, "every bare filename to resolve through the bridge")
        assert sorted(folder_paths.get_filename_list("loras")) == names
    finally:
        shelf.stop_watching()
        bridge.close()


def test_a_file_written_slowly_is_indexed_only_once_complete(watched, make_model):
    shelf, _, batches = watched
    data = make_model().read_bytes()
    target = shelf.root / "vae" / "slow.safetensors"

    with open(target, "wb") as handle:
        for start_at in range(0, len(data), 256):
            handle.write(data[start_at : start_at + 256])
            handle.flush()
            batch = batches.wait_for_batch(
                lambda b: str(target) in b.waiting, "the watcher to see the file being written"
            )
            assert not indexed(shelf, "vae", "slow.safetensors"), batch
            assert open_for_writing(target) is True

    batches.wait_until(lambda: indexed(shelf, "vae", "slow.safetensors"), "the finished file")
    assert shelf.hasher is not None and shelf.hasher.wait_idle(TIMEOUT)
    record = shelf.find("vae/slow.safetensors")
    assert record.size == len(data) and record.hash_state is HashState.HASHED
    assert record.health is Health.OK


def test_a_folder_model_arriving_piecemeal_is_recorded_once_whole(shelf, make_model, tmp_path):
    _, batches = start(shelf, QUICK.model_copy(update={"settle_seconds": 1.0}))
    try:
        weights = tmp_path / "pipe"
        make_model("diffusion_pytorch_model.safetensors", folder=weights / "unet")
        pipe = shelf.root / "diffusers" / "pipe"
        os.rename(weights, pipe)  # the weights first...
        (pipe / "model_index.json").write_text("{}")  # ...the marker last

        batches.wait_until(lambda: indexed(shelf, "diffusers", "pipe"), "the folder model")
        [record] = shelf.list_models()
        assert record.kind.value == "folder"
        assert sorted(e.path for e in record.files) == [
            "pipe/model_index.json",
            "pipe/unet/diffusion_pytorch_model.safetensors",
        ]
    finally:
        shelf.stop_watching()


def test_rename_keeps_identity_and_reads_nothing(watched, make_model):
    shelf, _, batches = watched
    record = shelf.import_model(make_model(), "loras", name="old.safetensors")
    batches.wait_until(lambda: indexed(shelf, "loras", "old.safetensors"), "the import")
    before = shelf.verifier.bytes_hashed
    (shelf.root / "loras" / "style").mkdir()

    os.rename(shelf.root / "loras" / "old.safetensors", shelf.root / "loras/style/new.safetensors")

    batches.wait_until(lambda: indexed(shelf, "loras", "style/new.safetensors"), "the rename")
    moved = shelf.find("loras/style/new.safetensors")
    assert moved.id == record.id and moved.hashes == record.hashes
    assert moved.hash_state is HashState.HASHED and moved.health is Health.OK
    assert "old.safetensors" in moved.aliases  # old workflows still find it
    assert not (shelf.root / "loras" / "old.safetensors.shelf.json").exists()
    assert (shelf.root / "loras" / "style" / "new.safetensors.shelf.json").exists()
    assert not indexed(shelf, "loras", "old.safetensors")
    assert shelf.hasher is not None and shelf.hasher.wait_idle(TIMEOUT)
    assert shelf.verifier.bytes_hashed == before


def test_a_big_move_import_keeps_the_importers_record_while_watched(watched, tmp_path):
    """Hashing a big file takes longer than the watcher's grace for files that appear whole:
    the importer must still own the record (id, sources), not the watcher's bare one."""
    from conftest import write_big_safetensors

    from model_shelf.library import HashTiming, ImportMode
    from model_shelf.library.records import SourceRef

    shelf, _, batches = watched
    src = write_big_safetensors(tmp_path / "big.safetensors", 1024**3)
    source = SourceRef(kind="url", url="https://example.invalid/big.safetensors")
    record = shelf.import_model(
        src, "checkpoints", ImportMode.MOVE, hashing=HashTiming.NOW, sources=[source]
    )
    batches.wait_until(lambda: indexed(shelf, "checkpoints", "big.safetensors"), "the import")
    assert shelf.hasher is not None and shelf.hasher.wait_idle(TIMEOUT)
    assert shelf.watcher is not None and shelf.watcher.wait_idle(TIMEOUT)

    (shelf.root / "checkpoints" / "sdxl").mkdir()
    os.rename(
        shelf.root / "checkpoints" / "big.safetensors",
        shelf.root / "checkpoints" / "sdxl" / "big.safetensors",
    )
    batches.wait_until(lambda: indexed(shelf, "checkpoints", "sdxl/big.safetensors"), "rename")
    assert shelf.watcher.wait_idle(TIMEOUT) and shelf.hasher.wait_idle(TIMEOUT)

    [kept] = shelf.list_models()
    assert kept.id == record.id
    assert [s.url for s in kept.sources] == [source.url]


def test_a_folder_renamed_with_its_models_and_sidecars_keeps_them(watched, make_model):
    shelf, _, batches = watched
    a = shelf.import_model(make_model(), "loras", name="set/a.safetensors")
    b = shelf.import_model(make_model(), "loras", name="set/b.safetensors")
    before = shelf.verifier.bytes_hashed

    os.rename(shelf.root / "loras" / "set", shelf.root / "loras" / "renamed")

    batches.wait_until(
        lambda: (
            indexed(shelf, "loras", "renamed/a.safetensors")
            and indexed(shelf, "loras", "renamed/b.safetensors")
            and not indexed(shelf, "loras", "set/a.safetensors")
        ),
        "the folder rename",
    )
    assert shelf.find("loras/renamed/a.safetensors").id == a.id
    assert shelf.find("loras/renamed/b.safetensors").id == b.id
    assert shelf.hasher is not None and shelf.hasher.wait_idle(TIMEOUT)
    assert shelf.verifier.bytes_hashed == before


def test_delete_makes_a_ghost_that_is_reported_and_can_be_purged(watched, make_model):
    shelf, watcher, batches = watched
    recorder = Recorder()
    watcher.subscribe(recorder)
    record = shelf.import_model(make_model(), "checkpoints", name="gone.safetensors")

    (shelf.root / "checkpoints" / "gone.safetensors").unlink()

    batches.wait_until(lambda: shelf.find("gone.safetensors").health is Health.MISSING, "the ghost")
    ghost = shelf.find("gone.safetensors")
    assert ghost.id == record.id and "gone.safetensors" in (ghost.health_detail or "")
    assert (shelf.root / "checkpoints" / "gone.safetensors.shelf.json").exists()  # kept
    report = shelf.health()
    assert report.missing.count == 1 and report.missing.items[0].name == ghost.display()
    assert "purge-ghosts" in (report.missing.fix or "")
    assert any("checkpoints" in types for types in recorder.changed)

    assert shelf.purge_ghosts() == ["checkpoints/gone.safetensors"]
    assert not (shelf.root / "checkpoints" / "gone.safetensors.shelf.json").exists()
    assert shelf.list_models() == []


def test_moved_out_is_a_ghost_and_moved_back_in_under_another_type_keeps_identity(
    watched, make_model, tmp_path
):
    shelf, _, batches = watched
    record = shelf.import_model(make_model(), "checkpoints", name="wander.safetensors")
    before = shelf.verifier.bytes_hashed
    outside = tmp_path / "elsewhere" / "wander.safetensors"
    outside.parent.mkdir()

    os.rename(shelf.root / "checkpoints" / "wander.safetensors", outside)
    batches.wait_until(
        lambda: shelf.find("wander.safetensors").health is Health.MISSING, "moved out"
    )

    os.rename(outside, shelf.root / "diffusion_models" / "wandered.safetensors")
    batches.wait_until(lambda: indexed(shelf, "diffusion_models", "wandered.safetensors"), "in")

    back = shelf.find("diffusion_models/wandered.safetensors")
    assert back.id == record.id and back.health is Health.OK
    assert back.hash_state is HashState.HASHED and back.hashes == record.hashes
    assert not indexed(shelf, "checkpoints", "wander.safetensors")
    assert shelf.hasher is not None and shelf.hasher.wait_idle(TIMEOUT)
    assert shelf.verifier.bytes_hashed == before


def test_move_between_type_folders_keeps_identity(watched, make_model):
    shelf, _, batches = watched
    record = shelf.import_model(make_model(), "checkpoints", name="unet.safetensors")
    before = shelf.verifier.bytes_hashed

    os.rename(
        shelf.root / "checkpoints" / "unet.safetensors",
        shelf.root / "diffusion_models" / "unet.safetensors",
    )

    batches.wait_until(lambda: indexed(shelf, "diffusion_models", "unet.safetensors"), "the move")
    moved = shelf.find("diffusion_models/unet.safetensors")
    assert moved.id == record.id and moved.hashes == record.hashes
    assert not indexed(shelf, "checkpoints", "unet.safetensors")
    assert shelf.verifier.bytes_hashed == before


def test_content_changed_in_place_is_verified_and_found_corrupted(watched, make_model):
    shelf, _, batches = watched
    record = shelf.import_model(make_model(), "loras", name="flip.safetensors")
    path = shelf.root / "loras" / "flip.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF

    path.write_bytes(bytes(data))

    batches.wait_until(
        lambda: shelf.find("flip.safetensors").health is Health.CORRUPTED,
        "the background verification",
    )
    corrupted = shelf.find("flip.safetensors")
    assert "flip.safetensors" in (corrupted.health_detail or "")
    assert corrupted.id == record.id and corrupted.hashes == record.hashes


def test_a_sidecar_changed_by_another_process_refreshes_the_index(watched, make_model):
    shelf, _, batches = watched
    record = shelf.import_model(make_model(), "loras", name="tagged.safetensors")
    edited = record.model_copy(update={"tags": ["portrait"]})

    shelf.records.write(edited)  # as another process (or a hand edit) would: no index update

    batches.wait_until(lambda: shelf.find("tagged.safetensors").tags == ["portrait"], "refresh")


def test_names_changed_by_another_process_are_reported_to_listeners(watched, make_model):
    shelf, watcher, batches = watched
    recorder = Recorder()
    watcher.subscribe(recorder)
    shelf.import_model(make_model(), "loras", name="named.safetensors")
    batches.wait_until(lambda: frozenset({"loras"}) in recorder.changed, "the import reported")
    recorder.changed.clear()

    with Shelf(shelf.root) as other:  # its own connections, as another process has
        record = other.find("named.safetensors")
        record.aliases.append("nickname.safetensors")
        other.catalog.save(record)  # the index row matches the sidecar at once

    batches.wait_until(lambda: frozenset({"loras"}) in recorder.changed, "the alias reported")
    assert shelf.find("nickname.safetensors").name == "named.safetensors"


def test_sidecar_removed_by_hand_drops_the_row_and_records_the_file_again(watched, make_model):
    shelf, _, batches = watched
    record = shelf.import_model(make_model(), "vae", name="v.safetensors")

    (shelf.root / "vae" / "v.safetensors.shelf.json").unlink()

    batches.wait_until(
        lambda: (
            (row := shelf.index.location_row("vae", "v.safetensors")) is not None
            and row.id != record.id
        ),
        "a new record",
    )


def test_polling_mode_indexes_and_follows_renames(shelf, make_model, tmp_path):
    settings = QUICK.model_copy(update={"watch_mode": WatchMode.POLLING})
    watcher, batches = start(shelf, settings)
    try:
        assert watcher.mode == "polling"
        src = make_model("polled.safetensors", folder=tmp_path / "src")
        shutil.copy(src, shelf.root / "loras" / "polled.safetensors")
        batches.wait_until(lambda: indexed(shelf, "loras", "polled.safetensors"), "the copy")
        assert shelf.hasher is not None and shelf.hasher.wait_idle(TIMEOUT)
        record = shelf.find("loras/polled.safetensors")
        before = shelf.verifier.bytes_hashed

        os.rename(shelf.root / "loras/polled.safetensors", shelf.root / "loras/renamed.safetensors")

        batches.wait_until(lambda: indexed(shelf, "loras", "renamed.safetensors"), "the rename")
        assert shelf.find("loras/renamed.safetensors").id == record.id
        assert shelf.verifier.bytes_hashed == before
    finally:
        shelf.stop_watching()


def test_inotify_limit_falls_back_to_polling_and_says_how_to_raise_it(
    shelf, make_model, tmp_path, caplog
):
    def exhausted():
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    watcher = Watcher(shelf.layout, shelf.reconciler, None, QUICK, native_observer=exhausted)
    batches = Batches(watcher)
    with caplog.at_level(logging.WARNING, logger="model_shelf.watch"):
        watcher.start()
    try:
        assert watcher.mode == "polling"
        [line] = [r.getMessage() for r in caplog.records if "inotify" in r.getMessage()]
        assert "fs.inotify.max_user_watches" in line and "sysctl -w" in line
        src = make_model("fallback.safetensors", folder=tmp_path / "src")
        shutil.copy(src, shelf.root / "vae" / "fallback.safetensors")
        batches.wait_until(lambda: indexed(shelf, "vae", "fallback.safetensors"), "the copy")
    finally:
        watcher.stop()


def test_files_added_while_closed_are_caught_up_at_start(shelf, make_model):
    make_model("early.safetensors", folder=shelf.root / "loras")
    start(shelf)
    try:
        assert indexed(shelf, "loras", "early.safetensors")
        assert shelf.hasher is not None and shelf.hasher.wait_idle(TIMEOUT)
        assert shelf.find("early.safetensors").hash_state is HashState.HASHED
    finally:
        shelf.stop_watching()


def test_root_going_away_and_coming_back_is_reported(shelf, make_model, tmp_path):
    watcher, batches = start(shelf)
    recorder = Recorder()
    watcher.subscribe(recorder)
    aside = tmp_path / "unmounted"
    try:
        shelf.root.rename(aside)
        batches.wait_until(lambda: recorder.root == [False], "the root to go away")
        aside.rename(shelf.root)
        batches.wait_until(lambda: recorder.root == [False, True], "the root to come back")
        src = make_model("after.safetensors", folder=tmp_path / "src")
        shutil.copy(src, shelf.root / "loras" / "after.safetensors")
        batches.wait_until(lambda: indexed(shelf, "loras", "after.safetensors"), "watching again")
    finally:
        shelf.stop_watching()


def test_watchdogs_stop_race_is_not_shown_as_an_error(caplog):
    # watchdog logs this when an event arrives while its emitter stops (seen when quitting
    # `serve` right after a download landed); harmless, so it must not be a user's last line.
    inotify_log = logging.getLogger("watchdog.observers.inotify")
    with caplog.at_level(logging.ERROR, logger="watchdog.observers.inotify"):
        inotify_log.error("InotifyEmitter.queue_events() called when the thread is inactive")
        inotify_log.error("a real inotify problem")
    assert [r.getMessage() for r in caplog.records] == ["a real inotify problem"]
