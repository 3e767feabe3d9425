"""The download engine against real HTTP servers on 127.0.0.1 that drop, stall, lie and change.

Each test starts a real `RemoteServer` (its own thread and loop) and a real library; the engine
runs either in the foreground (``run_foreground``, as the CLI does), on a thread of its own (as
inside ComfyUI), or in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from downloads_support import (
    MIB,
    EngineThread,
    pause_while_silent,
    quick_settings,
    wait_until,
)
from remote_server import RemoteServer, sha256_of, write_model_file

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.downloads import TaskState, throttle


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


@pytest.fixture
def shelf(root: Path) -> Iterator[Shelf]:
    with Shelf.open(root, quick_settings()) as opened:
        yield opened


def model(tmp_path: Path, size: int, seed: int = 0, name: str = "model.safetensors") -> Path:
    return write_model_file(tmp_path / "remote" / f"{seed}-{name}", size, seed)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_lands_in_the_library_with_its_digests_and_source(shelf, server, tmp_path):
    src = model(tmp_path, 8 * MIB)
    server.serve("lora.safetensors", src)

    task = shelf.downloads.add(server.url("lora.safetensors"), "loras")
    (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE, done.error_message
    record = shelf.find("loras/lora.safetensors")
    assert record.hashes["sha256"] == f"sha256:{sha256_of(src)}" == done.hashes["sha256"]
    assert set(record.hashes) == {"sha256", "blake3", "xxh3_128"}
    assert record.sources[0].url == server.url("lora.safetensors")
    assert (shelf.root / "loras" / "lora.safetensors").read_bytes() == src.read_bytes()
    assert files_in(shelf.layout.partial_dir) == []


def test_a_file_named_like_a_windows_device_downloads_under_a_safe_name(shelf, server, tmp_path):
    """``CON.safetensors`` became ``CON.safetensors_`` (no model extension: NOT_A_MODEL)."""
    server.serve("CON.safetensors", model(tmp_path, 64 * 1024))
    task = shelf.downloads.add(server.url("CON.safetensors"), "loras")
    (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    assert shelf.find("loras/CON_.safetensors").name == "CON_.safetensors"


def test_a_connection_dropped_every_64_mib_resumes_each_time(shelf, server, tmp_path):
    src = model(tmp_path, 200 * MIB)
    served = server.serve("big.safetensors", src, drop_every_bytes=64 * MIB)

    task = shelf.downloads.add(server.url("big.safetensors"), "checkpoints")
    (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE, done.error_message
    assert [r.status for r in served.requests] == [200, 206, 206, 206]
    assert served.bytes_sent == src.stat().st_size  # not one byte fetched twice
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"


def test_503_with_retry_after_twice_then_success(shelf, server, tmp_path):
    src = model(tmp_path, 4 * MIB)
    served = server.serve(
        "m.safetensors", src, failures=[(503, {"Retry-After": "1"}), (503, {"Retry-After": "1"})]
    )
    task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
    waits = []
    (done,) = shelf.downloads.run_foreground(
        [task.id], lambda e: e.message and waits.append(e.message)
    )

    assert done.state is TaskState.DONE, done.error_message
    assert [r.status for r in served.requests] == [503, 503, 200]
    assert done.attempts == 2
    # The server's Retry-After (1 s), not our millisecond backoff, set the wait.
    said = [w for w in waits if "HTTP 503" in w]
    assert said and all("in 1.0 s" in w for w in said)


def test_a_file_changed_between_attempts_starts_over_and_is_the_new_file(shelf, server, tmp_path):
    old = model(tmp_path, 48 * MIB, seed=1)
    new = model(tmp_path, 40 * MIB, seed=2)
    served = server.serve("m.safetensors", old, hold_at_byte=16 * MIB, drop_after_hold=True)
    task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")

    with EngineThread(shelf) as engine:
        wait_until(lambda: served.bytes_sent >= 16 * MIB, what="the first 16 MiB")
        server.replace("m.safetensors", new)  # a new ETag, a new Last-Modified
        served.behaviour.hold_at_byte = None
        served.behaviour.release.set()  # ...and the first connection breaks
        done = engine.wait_for(task.id, "done", "failed")

    assert done.state is TaskState.DONE, done.error_message
    second = served.requests[1]
    assert second.headers["Range"] == f"bytes={16 * MIB}-"
    assert "If-Range" in second.headers and second.status == 200  # the validator failed
    assert done.hashes["sha256"] == f"sha256:{sha256_of(new)}"
    placed = shelf.root / "checkpoints" / "m.safetensors"
    assert placed.read_bytes() == new.read_bytes()


def test_wrong_expected_sha256_fails_and_nothing_enters_the_library(shelf, server, tmp_path):
    src = model(tmp_path, 4 * MIB)
    server.serve("m.safetensors", src)
    wrong = "0" * 64

    task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints", sha256=wrong)
    (failed,) = shelf.downloads.run_foreground([task.id])

    assert failed.state is TaskState.FAILED
    assert failed.error_code == "HASH_MISMATCH"
    assert f"sha256:{wrong}" in failed.error_message
    assert sha256_of(src) in failed.error_message
    assert shelf.list_models() == []
    assert files_in(shelf.root / "checkpoints") == []
    assert files_in(shelf.layout.state_dir / "quarantine") == [f"{task.id}-m.safetensors"]


def test_a_short_body_is_retried_and_never_accepted(shelf, server, tmp_path):
    src = model(tmp_path, 4 * MIB)
    served = server.serve("m.safetensors", src, short_by_bytes=1000, short_times=1)

    task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
    (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE, done.error_message
    assert [r.status for r in served.requests] == [200, 206]
    assert served.requests[1].headers["Range"] == f"bytes={src.stat().st_size - 1000}-"
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"


def test_a_server_that_always_sends_short_fails_after_its_attempts(root, server, tmp_path):
    src = model(tmp_path, 2 * MIB)
    served = server.serve("m.safetensors", src, short_by_bytes=1000, ignore_range=True)
    with Shelf.open(root, quick_settings(max_attempts=3)) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        (failed,) = shelf.downloads.run_foreground([task.id])

        assert failed.state is TaskState.FAILED
        assert failed.error_code == "REMOTE_ERROR"
        assert "closed before the end" in failed.error_message
        assert len(served.requests) == 3
        assert shelf.list_models() == []


def test_size_larger_than_free_space_fails_before_a_byte_is_written(shelf, server, tmp_path):
    src = model(tmp_path, 1 * MIB)
    served = server.serve("huge.safetensors", src, content_length=10 * 1024**4)  # "10 TB"

    task = shelf.downloads.add(server.url("huge.safetensors"), "checkpoints")
    (failed,) = shelf.downloads.run_foreground([task.id])

    assert failed.state is TaskState.FAILED
    assert failed.error_code == "STORAGE_FULL"
    assert "not enough free space" in failed.error_message
    partial = shelf.layout.partial_dir / f"{task.id}.part"
    assert not partial.exists() or partial.stat().st_size == 0
    assert served.bytes_sent <= 1 * MIB  # what sat in socket buffers; nothing was written


def test_cancel_removes_the_partial_file_and_pause_keeps_it(shelf, server, tmp_path):
    src = model(tmp_path, 32 * MIB)
    served = server.serve("m.safetensors", src, hold_at_byte=8 * MIB)
    task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
    partial = shelf.layout.partial_dir / f"{task.id}.part"

    with EngineThread(shelf) as engine:
        # The first 4 MiB block is on disk; the server holds the rest back after 8 MiB.
        wait_until(lambda: partial.exists() and partial.stat().st_size >= 4 * MIB)
        shelf.downloads.pause(task.id)
        paused = engine.wait_for(task.id, "paused")
        served.behaviour.release.set()
        # Every byte that had arrived is kept (those still in kernel buffers are lost).
        assert 4 * MIB <= paused.bytes_done == partial.stat().st_size <= 8 * MIB

        served.behaviour.hold_at_byte = None
        shelf.downloads.resume(task.id)
        done = engine.wait_for(task.id, "done", "failed")
    assert done.state is TaskState.DONE, done.error_message
    first, second = served.requests
    assert first.bytes_sent < src.stat().st_size  # the pause cut the transfer short
    assert second.headers["Range"] == f"bytes={paused.bytes_done}-"
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"

    served.behaviour.hold_at_byte = 8 * MIB
    served.behaviour.release.clear()
    other = shelf.downloads.add(server.url("m.safetensors") + "?copy=2", "checkpoints", "copy")
    other_partial = shelf.layout.partial_dir / f"{other.id}.part"
    with EngineThread(shelf) as engine:
        wait_until(lambda: other_partial.exists() and other_partial.stat().st_size >= 4 * MIB)
        shelf.downloads.cancel(other.id)
        served.behaviour.release.set()
        cancelled = engine.wait_for(other.id, "cancelled")
    assert not other_partial.exists()
    assert cancelled.bytes_done == 0
    journal = (shelf.layout.state_dir / "deletions.jsonl").read_text().splitlines()
    assert "download cancelled" in json.loads(journal[-1])["reason"]


def test_a_stalled_connection_is_dropped_and_resumed(root, server, tmp_path):
    src = model(tmp_path, 16 * MIB)
    held_at = 5 * MIB + 12345  # mid-block and mid-page: every byte before it must be kept
    served = server.serve("m.safetensors", src, hold_at_byte=held_at)
    with Shelf.open(root, quick_settings(stall_timeout_seconds=0.3)) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        with EngineThread(shelf) as engine:
            wait_until(
                lambda: any("stopped sending" in (e.message or "") for e in engine.events),
                what="the stall to be noticed",
            )
            served.behaviour.hold_at_byte = None
            served.behaviour.release.set()
            done = engine.wait_for(task.id, "done", "failed")
    assert done.state is TaskState.DONE, done.error_message
    assert served.requests[1].headers["Range"] == f"bytes={held_at}-"
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"


def test_the_circuit_breaker_stops_asking_a_failing_host(root, server, tmp_path):
    src = model(tmp_path, 1 * MIB)
    served = server.serve("m.safetensors", src, failures=[(500, {})] * 50)
    settings = quick_settings(
        breaker_failure_threshold=3, breaker_cooldown_seconds=600, max_attempts=20
    )
    with Shelf.open(root, settings) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        with EngineThread(shelf) as engine:
            waiting = wait_until(
                lambda: (
                    (t := shelf.downloads.get(task.id)).wait_reason
                    and t.wait_reason.startswith("HOST_UNAVAILABLE")
                    and t.state is TaskState.QUEUED
                    and t
                ),
                what="the host to be paused",
            )
            assert len(served.requests) == 3
            assert "not asking it again until" in waiting.wait_reason
            assert waiting.not_before is not None
            shelf.downloads.cancel(task.id)
            engine.wait_for(task.id, "cancelled")
    assert len(served.requests) == 3


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on exit: nothing listens there


def test_offline_tasks_wait_and_say_why_while_local_work_goes_on(shelf, make_model):
    url = f"http://127.0.0.1:{_refused_port()}/m.safetensors"
    task = shelf.downloads.add(url, "checkpoints")
    with EngineThread(shelf) as engine:
        waiting = wait_until(
            lambda: (
                (t := shelf.downloads.get(task.id)).wait_reason
                and t.wait_reason.startswith("OFFLINE")
                and t
            ),
            what="the task to say it is offline",
        )
        assert "cannot reach 127.0.0.1" in waiting.wait_reason
        assert waiting.state in (TaskState.DOWNLOADING, TaskState.QUEUED)
        assert waiting.attempts == 0  # waiting for the network spends no attempts
        # Everything local keeps working meanwhile.
        record = shelf.import_model(make_model(), "loras", ImportMode.COPY)
        assert [r.id for r in shelf.list_models()] == [record.id]
        shelf.downloads.cancel(task.id)
        engine.wait_for(task.id, "cancelled")


def test_expected_sha256_already_in_the_library_downloads_nothing(shelf, server, make_model):
    record = shelf.import_model(make_model(), "loras", ImportMode.COPY)
    served = server.serve("same.safetensors", shelf.model_path(record))

    task = shelf.downloads.add(server.url("same.safetensors"), "loras", sha256=record.sha256)

    assert task.state is TaskState.DONE
    assert task.model_id == record.id
    assert served.requests == []


def test_a_download_identical_to_a_model_we_have_is_not_kept_twice(shelf, server, make_model):
    record = shelf.import_model(make_model(), "loras", ImportMode.COPY)
    served = server.serve("again.safetensors", shelf.model_path(record))

    task = shelf.downloads.add(server.url("again.safetensors"), "loras")
    (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE
    assert done.model_id == record.id
    assert len(served.requests) == 1
    assert [r.id for r in shelf.list_models()] == [record.id]
    assert files_in(shelf.layout.partial_dir) == []
    journal = (shelf.layout.state_dir / "deletions.jsonl").read_text()
    assert "downloaded copy of loras/" in journal


def test_the_same_source_added_twice_is_one_task(shelf, server, tmp_path):
    server.serve("m.safetensors", model(tmp_path, 1 * MIB))
    first = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
    second = shelf.downloads.add(server.url("m.safetensors") + "#again", "checkpoints")
    assert second.id == first.id
    (done,) = shelf.downloads.run_foreground([first.id])
    third = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
    assert third.id == done.id and third.state is TaskState.DONE


def test_higher_priority_downloads_first(root, server, tmp_path):
    for name in ("low", "high"):
        server.serve(f"{name}.safetensors", model(tmp_path, 1 * MIB, name=name))
    with Shelf.open(root, quick_settings(concurrency=1)) as shelf:
        low = shelf.downloads.add(server.url("low.safetensors"), "loras")
        high = shelf.downloads.add(server.url("high.safetensors"), "loras", priority=5)
        shelf.downloads.run_foreground([low.id, high.id])
        order = sorted(shelf.downloads.list(), key=lambda t: t.finished_at.timestamp())
    assert [t.id for t in order] == [high.id, low.id]


def test_filename_comes_from_content_disposition_made_safe(shelf, server, tmp_path):
    src = model(tmp_path, 1 * MIB)
    server.serve(
        "download", src, content_disposition='attachment; filename="../../evil:name.safetensors"'
    )
    task = shelf.downloads.add(server.url("download"), "loras")
    (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    assert done.model_name == "loras/evil_name.safetensors"


def test_progress_events_carry_bytes_speed_and_eta(shelf, server, tmp_path):
    src = model(tmp_path, 64 * MIB)
    server.serve("m.safetensors", src, throttle_bytes_per_second=256 * MIB)
    task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
    events = []
    shelf.downloads.run_foreground([task.id], events.append)

    running = [e for e in events if e.state is TaskState.DOWNLOADING and e.bytes_done]
    assert running, events
    done = [e.bytes_done for e in running]
    assert done == sorted(done)
    assert any(e.speed_bytes_per_second > 0 and e.eta_seconds is not None for e in running)
    assert all(e.total_bytes == src.stat().st_size for e in running)
    assert events[-1].state is TaskState.DONE
    assert events[-1].to_dict()["state"] == "done"


async def test_the_engine_runs_inside_an_existing_event_loop(root, server, tmp_path):
    src = model(tmp_path, 4 * MIB)
    server.serve("m.safetensors", src)
    shelf = await asyncio.to_thread(Shelf.open, root, quick_settings())
    try:
        task = await asyncio.to_thread(
            shelf.downloads.add, server.url("m.safetensors"), "checkpoints"
        )
        finished = asyncio.Event()
        shelf.downloads.subscribe(lambda e: e.state is TaskState.DONE and finished.set())
        engine = asyncio.create_task(shelf.downloads.run())
        await asyncio.wait_for(finished.wait(), 60)
        await shelf.downloads.stop()
        await engine
        done = await asyncio.to_thread(shelf.downloads.get, task.id)
    finally:
        await asyncio.to_thread(shelf.close)
    assert done.state is TaskState.DONE
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"


def test_attempts_stay_bounded_when_waits_give_the_slot_back(root, server, tmp_path):
    served = server.serve("m.safetensors", model(tmp_path, 1 * MIB), failures=[(500, {})] * 10)
    # Every wait is longer than a worker may hold its slot: the task goes back to the queue
    # between attempts, and still fails after three.
    with Shelf.open(root, quick_settings(max_attempts=3, hold_max_seconds=0)) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        (failed,) = shelf.downloads.run_foreground([task.id])
    assert failed.state is TaskState.FAILED
    assert (failed.error_code, failed.attempts) == ("REMOTE_ERROR", 3)
    assert "HTTP 500" in failed.error_message
    assert len(served.requests) == 3


def test_without_a_type_the_file_content_decides(shelf, server, make_model):
    server.serve("style.safetensors", make_model())  # LoRA keys
    task = shelf.downloads.add(server.url("style.safetensors"))
    (done,) = shelf.downloads.run_foreground([task.id])
    assert done.model_name == "loras/style.safetensors", done.error_message


def test_unknown_type_keeps_the_bytes_until_added_again_with_a_type(shelf, server, tmp_path):
    served = server.serve("mystery.safetensors", model(tmp_path, 2 * MIB))
    task = shelf.downloads.add(server.url("mystery.safetensors"))
    (failed,) = shelf.downloads.run_foreground([task.id])
    assert failed.error_code == "UNKNOWN_TYPE" and "--type" in failed.error_message
    assert files_in(shelf.layout.partial_dir) == [f"{task.id}.part"]

    again = shelf.downloads.add(server.url("mystery.safetensors"), "upscale_models")
    assert again.id == task.id
    (done,) = shelf.downloads.run_foreground([task.id])
    assert done.model_name == "upscale_models/mystery.safetensors", done.error_message
    assert len(served.requests) == 1  # the bytes were kept, not fetched again


def test_a_crash_inside_the_install_step_keeps_the_complete_bytes(shelf, server, tmp_path):
    src = model(tmp_path, 4 * MIB)
    served = server.serve("m.safetensors", src)
    task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
    # What a kill between "renamed to its real name" and "imported" leaves behind:
    staged = shelf.layout.partial_dir / task.id / "m.safetensors"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(src.read_bytes())
    shelf.downloads.store.update(
        task.id, state=TaskState.VERIFYING, expected_size=src.stat().st_size, etag='"x"'
    )

    (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE, done.error_message
    assert served.requests == []  # verified and installed from what was on disk
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"
    assert files_in(shelf.layout.partial_dir) == []


def test_the_bandwidth_limit_paces_a_download_and_it_still_completes(root, server, tmp_path):
    src = model(tmp_path, 3 * MIB)
    server.serve("m.safetensors", src)
    limit = 1 * MIB
    with Shelf.open(root, quick_settings(bandwidth_limit_bytes_per_second=limit)) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        started = time.monotonic()
        (done,) = shelf.downloads.run_foreground([task.id])
        elapsed = time.monotonic() - started

    assert done.state is TaskState.DONE, done.error_message
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"
    # A lower bound only (a slow machine takes longer, never shorter): 3 MiB at 1 MiB/s, less
    # the burst the limiter forgives and the last read, which nothing follows to wait for (a
    # read is at most a burst's worth).
    assert elapsed >= 3 - 2 * throttle.BURST_SECONDS


def test_progress_never_steps_back_across_reconnects(shelf, server, tmp_path):
    src = model(tmp_path, 48 * MIB)
    server.serve("m.safetensors", src, drop_every_bytes=10 * MIB)  # not on a block boundary
    seen: list[int] = []
    task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
    unsubscribe = shelf.downloads.subscribe(
        lambda event: seen.append(event.bytes_done) if event.task_id == task.id else None
    )
    try:
        (done,) = shelf.downloads.run_foreground([task.id])
    finally:
        unsubscribe()

    assert done.state is TaskState.DONE, done.error_message
    assert seen[-1] == src.stat().st_size
    # A bar that jumps back after every reconnect looks like a download starting over.
    assert seen == sorted(seen), seen


def test_pausing_answers_with_the_bytes_already_on_disk(root, server, tmp_path):
    src = model(tmp_path, 32 * MIB)
    served = server.serve("m.safetensors", src, hold_at_byte=8 * MIB)
    # No heartbeat during the test: the stored row never learns the count by itself.
    with Shelf.open(root, quick_settings(poll_interval_seconds=60)) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        partial = shelf.layout.partial_dir / f"{task.id}.part"
        with EngineThread(shelf) as engine:
            wait_until(lambda: partial.exists() and partial.stat().st_size == 8 * MIB)
            answer = shelf.downloads.pause(task.id)
            # What the sidebar shows at once: the engine's count (the stored row still says 0;
            # the second block may be on disk a moment before it is counted).
            assert 4 * MIB <= answer.bytes_done <= 8 * MIB
            paused = engine.wait_for(task.id, "paused", timeout=10)
            served.behaviour.release.set()
    assert paused.bytes_done == 8 * MIB
    published = [e.bytes_done for e in engine.events if e.task_id == task.id]
    assert published == sorted(published), published


def test_a_stop_asked_while_the_engine_takes_a_task_is_not_lost(root):
    # The engine's wake-up was cleared after taking tasks: a stop signalled while a claim
    # waited in its thread (here: another process holds the queue's write lock) was dropped,
    # and the engine slept a whole poll interval before seeing it.
    with Shelf.open(root, quick_settings(poll_interval_seconds=600)) as shelf:
        lock = sqlite3.connect(shelf.layout.state_db, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            with EngineThread(shelf) as engine:
                wait_until(
                    lambda: any(t.name.startswith("shelf-download") for t in threading.enumerate())
                )
                stopping = asyncio.run_coroutine_threadsafe(shelf.downloads.stop(), engine.loop)
                wait_until(lambda: shelf.downloads.engine.is_stopping)
                lock.execute("ROLLBACK")
                stopping.result(60)  # without the fix: a 600 s poll interval
        finally:
            if lock.in_transaction:
                lock.execute("ROLLBACK")
            lock.close()


def test_a_pause_ends_a_silent_read_on_a_connection_close_response(root, server, tmp_path):
    # http.client forgets the socket of a response that will close the connection: the pause
    # must still reach it (else it waits for the stall timeout, a minute here).
    src = model(tmp_path, 16 * MIB)
    server.serve("m.safetensors", src, hold_at_byte=8 * MIB, close_connection=True)
    with Shelf.open(root, quick_settings(stall_timeout_seconds=60)) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        with EngineThread(shelf) as engine:
            paused = pause_while_silent(shelf, engine, task.id, held_at=8 * MIB)
            server.files["m.safetensors"].behaviour.release.set()
    assert paused.bytes_done == 8 * MIB


def test_a_user_and_password_in_the_url_are_sent_as_basic_auth(shelf, server, tmp_path):
    src = model(tmp_path, 1 * MIB)
    served = server.serve("m.safetensors", src)
    url = server.url("m.safetensors").replace("http://", "http://mirror%20user:s3cr%40t@")
    task = shelf.downloads.add(url, "checkpoints")
    (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    expected = "Basic " + base64.b64encode(b"mirror user:s3cr@t").decode()
    assert served.requests[0].headers["Authorization"] == expected


def test_downloads_from_an_ipv6_address(root, tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    src = model(tmp_path, 2 * MIB)
    with RemoteServer(host="::1") as server, Shelf.open(root, quick_settings()) as shelf:
        server.serve("m.safetensors", src)
        assert server.url("m.safetensors").startswith("http://[::1]:")
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"


def test_a_pause_stops_the_read_even_while_the_engines_loop_is_busy(root, server, tmp_path):
    # Inside ComfyUI the pause comes from a worker thread, and the event loop may be slow to
    # run anything (the worker holds the interpreter while it cleans up after a prompt). The
    # read must stop at the pause, not when the loop gets to it.
    src = model(tmp_path, 96 * MIB)
    served = server.serve("m.safetensors", src, throttle_bytes_per_second=16 * MIB)
    with Shelf.open(root, quick_settings()) as shelf:
        task = shelf.downloads.add(server.url("m.safetensors"), "checkpoints")
        with EngineThread(shelf) as engine:
            wait_until(lambda: served.bytes_sent >= 4 * MIB)
            busy = threading.Event()
            engine.call_soon(lambda: (busy.set(), time.sleep(1.5)))  # the loop is busy
            busy.wait(10)
            shelf.downloads.pause(task.id)
            sent_at_pause = served.bytes_sent
            paused = engine.wait_for(task.id, "paused")
    # Without the read stopping at once, 1.5 s more at 16 MiB/s would have been read.
    assert paused.bytes_done <= sent_at_pause
