"""The download queue in ``state.db``: one unfinished task per source, leases, pause/cancel/resume
from any process, migrations."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from model_shelf.library.downloads.tasks import (
    HOST,
    MIGRATIONS,
    ControlRequest,
    DownloadTask,
    TaskState,
    TaskStore,
    new_owner_id,
    owner_is_dead,
    split_credentials,
    with_credentials,
)
from model_shelf.library.errors import TaskNotFoundError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TaskStore]:
    opened = TaskStore(tmp_path / "state.db")
    yield opened
    opened.close()


def task(key: str = "url:https://example.com/m.safetensors", **fields) -> DownloadTask:
    return DownloadTask(source=key.partition(":")[2], source_key=key, source_kind="url", **fields)


def test_schema_is_migrated_in_numbered_steps_and_uses_wal(store, tmp_path):
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    TaskStore(tmp_path / "state.db").close()  # reopening runs no step twice


def test_a_task_round_trips_with_every_field(store):
    original = task(model_type="loras", name="x", priority=3, expected_sha256="sha256:" + "a" * 64)
    original.source_ref = {"kind": "url", "url": "https://example.com/m.safetensors"}
    original.hashes = {"sha256": "sha256:" + "b" * 64}
    store.insert(original)
    assert store.get(original.id) == original


def test_derived_flags_follow_the_state():
    assert task(state=TaskState.DONE).in_terminal_state
    assert task(state=TaskState.CANCELLED).in_terminal_state
    assert not task(state=TaskState.PAUSED).in_terminal_state
    assert task(state=TaskState.VERIFYING).running
    assert not task(state=TaskState.QUEUED).running
    assert task().partial_name.endswith(".part")


def test_one_unfinished_task_per_source(store):
    first, created = store.insert(task())
    again, created_again = store.insert(task())
    assert created and not created_again
    assert again.id == first.id
    store.update(first.id, state=TaskState.DONE)
    third, created_third = store.insert(task())
    assert created_third and third.id != first.id


def test_two_threads_adding_the_same_source_make_one_task(tmp_path):
    path = tmp_path / "state.db"
    TaskStore(path).close()
    results = []
    barrier = threading.Barrier(8)

    def add() -> None:
        local = TaskStore(path)
        barrier.wait()
        results.append(local.insert(task())[0].id)
        local.close()

    threads = [threading.Thread(target=add) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1


def test_claims_go_by_priority_then_age_and_lease_one_owner(store):
    low = store.insert(task("url:a"))[0]
    high = store.insert(task("url:b", priority=9))[0]
    owner = new_owner_id()
    assert store.claim(owner, 30).id == high.id
    assert store.claim(owner, 30).id == low.id
    assert store.claim(new_owner_id(), 30) is None  # both leased


def test_a_waiting_task_is_not_claimed_before_its_time(store):
    waiting = store.insert(task(not_before=time.time() + 3600))[0]
    assert store.claim(new_owner_id(), 30) is None
    store.update(waiting.id, not_before=time.time() - 1)
    assert store.claim(new_owner_id(), 30).id == waiting.id


def test_an_expired_lease_can_be_taken_and_the_old_owner_learns_it_lost(store):
    queued = store.insert(task())[0]
    first, second = new_owner_id(), new_owner_id()
    store.claim(first, lease_seconds=-1.0)  # a lease that has run out (no renewal came)
    store.update(queued.id, first, state=TaskState.DOWNLOADING)
    assert store.claim(second, 30).id == queued.id
    assert store.renew(queued.id, first, 30, 100) is None
    with pytest.raises(TaskNotFoundError):
        store.update(queued.id, first, bytes_done=5)
    assert store.renew(queued.id, second, 30, 100).bytes_done == 100


def test_a_lease_held_by_a_dead_process_on_this_host_is_free_at_once(store):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    owner = f"{HOST}|{dead.stdout.strip()}|deadbeef"
    assert owner_is_dead(owner)
    assert not owner_is_dead(f"{HOST}|{os.getpid()}|other")
    assert not owner_is_dead(f"another-host|{dead.stdout.strip()}|x")  # cannot tell: wait
    crashed = store.insert(task())[0]
    store.claim(owner, lease_seconds=3600)
    store.update(crashed.id, state=TaskState.DOWNLOADING)
    reclaimed = store.claim(new_owner_id(), 30)
    assert reclaimed.id == crashed.id and reclaimed.state is TaskState.DOWNLOADING


def test_pause_and_cancel_of_an_idle_task_apply_at_once(store):
    queued = store.insert(task())[0]
    paused, orphan = store.request(queued.id, ControlRequest.PAUSE)
    assert paused.state is TaskState.PAUSED and not orphan
    resumed, _ = store.request(queued.id, None)
    assert resumed.state is TaskState.QUEUED
    cancelled, orphan = store.request(queued.id, ControlRequest.CANCEL)
    assert cancelled.state is TaskState.CANCELLED and orphan
    assert cancelled.finished_at is not None


def test_pause_and_cancel_of_a_running_task_are_requests_for_its_owner(store):
    queued = store.insert(task())[0]
    owner = new_owner_id()
    store.claim(owner, 30)
    store.update(queued.id, owner, state=TaskState.DOWNLOADING)
    requested, orphan = store.request(queued.id, ControlRequest.PAUSE)
    assert requested.state is TaskState.DOWNLOADING and not orphan
    assert requested.control is ControlRequest.PAUSE
    assert store.renew(queued.id, owner, 30, 0).control is ControlRequest.PAUSE
    store.request(queued.id, None)  # resume before the owner got to it
    assert store.get(queued.id).control is None


def test_resume_queues_a_failed_task_again_and_clears_its_error(store):
    failed = store.insert(task())[0]
    store.update(failed.id, state=TaskState.FAILED, error_code="STORAGE_FULL", error_message="full")
    resumed, _ = store.request(failed.id, None)
    assert resumed.state is TaskState.QUEUED
    assert resumed.error_code is None and resumed.error_message is None


def test_a_finished_task_is_left_alone(store):
    done = store.insert(task())[0]
    store.update(done.id, state=TaskState.DONE)
    for action in (ControlRequest.PAUSE, ControlRequest.CANCEL, None):
        assert store.request(done.id, action)[0].state is TaskState.DONE


def test_unknown_tasks_and_fields_are_refused(store):
    with pytest.raises(TaskNotFoundError) as caught:
        store.get("nope")
    assert caught.value.code == "TASK_NOT_FOUND"
    queued = store.insert(task())[0]
    with pytest.raises(ValueError):
        store.update(queued.id, **{"state = 'done'; --": 1})


def test_an_unreadable_row_is_skipped_not_fatal(store, tmp_path):
    good = store.insert(task("url:good"))[0]
    bad = store.insert(task("url:bad"))[0]
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("UPDATE tasks SET state = 'from-the-future' WHERE id = ?", (bad.id,))
    db.commit()
    db.close()
    assert [t.id for t in store.list()] == [good.id]


def _finished(n: int, state: TaskState = TaskState.DONE) -> DownloadTask:
    stamp = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=n)
    return task(f"url:https://example.com/{n}.safetensors", state=state, finished_at=stamp)


def test_a_page_lists_unfinished_tasks_first_then_the_latest_finished(store):
    for n in range(5):
        store.insert(_finished(n, TaskState.FAILED if n % 2 else TaskState.DONE))
    low = store.insert(task("url:https://example.com/low.safetensors"))[0]
    high = store.insert(task("url:https://example.com/high.safetensors", priority=5))[0]
    items, total = store.page(0, 4)
    assert total == 7
    assert [t.id for t in items[:2]] == [high.id, low.id]
    assert [t.source for t in items[2:]] == [
        "https://example.com/4.safetensors",
        "https://example.com/3.safetensors",
    ]
    rest, _ = store.page(4, 100)
    assert [t.source for t in rest] == [f"https://example.com/{n}.safetensors" for n in (2, 1, 0)]
    assert store.count_by_state() == {"done": 3, "failed": 2, "queued": 2}


def test_pruning_keeps_the_most_recently_finished_and_every_unfinished_task(store):
    finished = [
        store.insert(_finished(n, TaskState.CANCELLED if n == 9 else TaskState.DONE))[0]
        for n in range(10)
    ]
    queued = store.insert(task("url:https://example.com/q.safetensors"))[0]
    assert sorted(store.prune_finished(3)) == sorted(t.id for t in finished[:7])
    left = {t.source for t in store.list()}
    assert left == {f"https://example.com/{n}.safetensors" for n in (7, 8, 9)} | {queued.source}
    assert store.prune_finished(3) == []


def test_a_password_in_a_source_url_is_never_shown():
    shown = task("url:https://user:s3cret@example.com/m.safetensors?x=1").shown_source
    assert shown == "https://example.com/m.safetensors?x=1"
    assert task("hf:org/repo/m.safetensors").shown_source == "org/repo/m.safetensors"
    # issue #11: credentials in the query too (Civitai's ?token=, presigned S3 signatures)
    signed = "url:https://u:pw@host.example/m.safetensors?type=Model&token=abc&X-Amz-Signature=ff"
    assert task(signed).shown_source == (
        "https://host.example/m.safetensors?type=Model&token=…&X-Amz-Signature=…"
    )


def test_userinfo_is_split_from_a_url_and_put_back_for_the_transport_alone():
    clean, found = split_credentials("https://a%20b:p%40ss:w@Host.example:8443/m.safetensors?x=1")
    assert clean == "https://Host.example:8443/m.safetensors?x=1"
    assert found is not None and found.username == "a b" and found.query == ()
    assert found.password is not None and found.password.get_secret_value() == "p@ss:w"
    assert split_credentials("https://token@example.com/m")[1].password is None
    for untouched in ("org/repo/m.safetensors", "civitai:123", "https://example.com/a@b"):
        assert split_credentials(untouched) == (untouched, None)
    back = with_credentials(clean, found)
    assert back == "https://a%20b:p%40ss%3Aw@Host.example:8443/m.safetensors?x=1"
    assert split_credentials(back) == (clean, found)


def test_credential_query_parameters_are_split_off_as_written_and_put_back_last():
    url = "https://host.example/m.safetensors?type=Model&token=a%2Fb&format=st&X-Amz-Signature=ff"
    clean, found = split_credentials(url)
    assert clean == "https://host.example/m.safetensors?type=Model&format=st"
    assert found is not None and found.username is None and found.password is None
    assert [(n, v.get_secret_value()) for n, v in found.query] == [
        ("token", "a%2Fb"),
        ("X-Amz-Signature", "ff"),
    ]
    back = with_credentials(clean, found)
    assert (
        back
        == "https://host.example/m.safetensors?type=Model&format=st&token=a%2Fb&X-Amz-Signature=ff"
    )
    assert split_credentials(back) == (clean, found)
    # The whole query, with a user too; a fragment stays where it is.
    clean, found = split_credentials("https://u:pw@host.example/m?api_key=k1#part")
    assert clean == "https://host.example/m#part"
    assert found is not None and found.username == "u" and len(found.query) == 1
    assert with_credentials(clean, found) == "https://u:pw@host.example/m?api_key=k1#part"
    # No value, or not a credential's name: left in the URL.
    for untouched in ("https://host.example/m?token=&type=Model", "https://h.example/m?x=1"):
        assert split_credentials(untouched) == (untouched, None)


def test_a_file_whose_later_steps_ran_in_another_order_opens(tmp_path):
    """A development build numbered this release's steps otherwise (engines before origin):
    the file opens, with every table and column, instead of failing on a table it has."""
    path = tmp_path / "state.db"
    TaskStore(path).close()
    db = sqlite3.connect(path)
    origin, engines = len(MIGRATIONS) - 2, len(MIGRATIONS) - 1
    assert MIGRATIONS[origin].__name__ == "_migration_task_origin"
    assert MIGRATIONS[engines].__name__ == "_migration_engines"
    db.execute("ALTER TABLE tasks DROP COLUMN origin")  # as if only the engines step had run
    db.execute(f"PRAGMA user_version={origin}")
    db.commit()
    db.close()
    reopened = TaskStore(path)
    try:
        reopened.insert(task())
        assert [t.origin.value for t in reopened.list()] == ["user"]
        assert reopened.engines_running() == 0
    finally:
        reopened.close()


def test_engines_whose_lease_ran_out_are_forgotten(store, tmp_path):
    store.engine_alive("gone-host|1|dead", lease_seconds=-1)  # killed: never said goodbye
    store.engine_alive("this-host|2|live", lease_seconds=60)
    db = sqlite3.connect(tmp_path / "state.db")
    try:
        owners = [row[0] for row in db.execute("SELECT owner FROM engines")]
    finally:
        db.close()
    assert owners == ["this-host|2|live"]
