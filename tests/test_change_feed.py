"""Tests for library/change_feed.py: real folders, a real shared SQLite index, ticks by hand."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from comfy_stubs import write_model

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.change_feed import ChangeFeed
from model_shelf.library.layout import MODEL_TYPES


class Recorder:
    """A listener that keeps what it hears on a queue."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, object]] = queue.Queue()

    def library_changed(self, types: frozenset[str]) -> None:
        self.events.put(("changed", types))

    def root_changed(self, available: bool) -> None:
        self.events.put(("root", available))

    def drain(self) -> list[tuple[str, object]]:
        found = []
        while not self.events.empty():
            found.append(self.events.get_nowait())
        return found


def import_one(shelf: Shelf, tmp_path: Path, name: str, model_type: str = "loras") -> None:
    source = write_model(tmp_path / "incoming" / name)
    shelf.import_model(source, model_type, ImportMode.COPY, name=name)


def test_quiet_library_reports_nothing(shelf: Shelf) -> None:
    listener = Recorder()
    feed = ChangeFeed(shelf, [listener])
    feed.baseline()
    assert feed.poll() == frozenset() and feed.poll() == frozenset()
    assert listener.drain() == []


def test_another_process_writing_the_index_is_reported_by_type(
    shelf: Shelf, tmp_path: Path
) -> None:
    listener = Recorder()
    feed = ChangeFeed(shelf, [listener])
    feed.baseline()
    with Shelf(shelf.root) as other:  # its own connection: to SQLite, another process
        import_one(other, tmp_path, "style.safetensors")
        before = shelf.last_sync
        assert feed.poll() == frozenset({"loras"})
        assert feed.poll() == frozenset()
        assert shelf.last_sync is before  # the shared index was current: no sync needed
        record = other.find("style.safetensors")
        record.tags = ["anime"]
        other.catalog.save(record)
        assert feed.poll() == frozenset({"loras"})
    assert listener.drain() == [
        ("changed", frozenset({"loras"})),
        ("changed", frozenset({"loras"})),
    ]


def test_a_file_copied_in_by_hand_is_recorded_after_a_quiet_tick(
    shelf: Shelf, tmp_path: Path
) -> None:
    feed = ChangeFeed(shelf, [])
    feed.baseline()
    write_model(shelf.root / "vae" / "sub" / "hand.safetensors")
    assert feed.poll() == frozenset({"vae"})  # seen at once (listings refresh)...
    assert shelf.list_models("vae") == []  # ...recorded only once things are quiet
    assert feed.poll() == frozenset({"vae"})
    assert [r.name for r in shelf.list_models("vae")] == ["sub/hand.safetensors"]
    assert feed.poll() == frozenset()


def test_our_own_record_writes_do_not_cause_a_sync(shelf: Shelf, tmp_path: Path) -> None:
    import_one(shelf, tmp_path, "used.safetensors")
    feed = ChangeFeed(shelf, [])
    feed.baseline()
    record = shelf.find("used.safetensors")
    record.usage.count += 1
    # As the usage recorder does: same process, its own thread (so its own connection).
    writer = threading.Thread(target=shelf.catalog.save, args=(record,))
    writer.start()
    writer.join()
    before = shelf.last_sync
    feed.poll()
    feed.poll()
    assert shelf.last_sync is before


def test_root_going_and_coming_back(shelf: Shelf, tmp_path: Path) -> None:
    import_one(shelf, tmp_path, "a.safetensors")
    listener = Recorder()
    feed = ChangeFeed(shelf, [listener])
    feed.baseline()
    root = shelf.root
    root.rename(tmp_path / "away")
    assert feed.poll() == frozenset()
    assert feed.poll() == frozenset()
    assert listener.drain() == [("root", False)]
    (tmp_path / "away").rename(root)
    assert feed.poll() == frozenset(MODEL_TYPES)
    assert listener.drain() == [("root", True), ("changed", frozenset(MODEL_TYPES))]
    assert shelf.find("a.safetensors").name == "a.safetensors"  # index reopened and usable
    assert feed.poll() == frozenset()


def test_a_failing_listener_does_not_stop_the_others(shelf: Shelf, tmp_path: Path) -> None:
    class Broken:
        def library_changed(self, types: frozenset[str]) -> None:
            raise RuntimeError("listener bug")

        def root_changed(self, available: bool) -> None:
            raise RuntimeError("listener bug")

    listener = Recorder()
    feed = ChangeFeed(shelf, [Broken(), listener])
    feed.baseline()
    import_one(shelf, tmp_path, "x.safetensors", "vae")
    assert feed.poll() == frozenset({"vae"})
    assert listener.drain() == [("changed", frozenset({"vae"}))]


def test_thread_reports_changes_and_stops(shelf: Shelf, tmp_path: Path) -> None:
    listener = Recorder()
    feed = ChangeFeed(shelf, [listener], interval=0.05)
    feed.start()
    try:
        with Shelf(shelf.root) as other:
            import_one(other, tmp_path, "late.safetensors", "checkpoints")
        assert listener.events.get(timeout=5) == ("changed", frozenset({"checkpoints"}))
    finally:
        feed.stop()
