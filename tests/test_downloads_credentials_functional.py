"""Issue #15: a ``user:password@`` or a ``?token=`` in a download URL never reaches ``state.db``
(nor its WAL, a record, the index, the API): it is kept in the task's own 0600 file, put back in
memory when the transport connects to the source's own origin, and deleted with the task. Rows
that older versions wrote are cleaned on open.

Real loopback servers that require Basic auth or a query token, the real API, real SQLite files
read as raw bytes, and a real downloader process killed with SIGKILL.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from downloads_support import (
    MIB,
    cli_command,
    partial_size,
    quick_env,
    quick_settings,
    sigkill_when,
)
from remote_server import RemoteServer, sha256_of, write_model_file
from routes_support import JSON, json_of, open_events

from model_shelf.library import Shelf
from model_shelf.library.downloads import TaskState
from model_shelf.library.downloads.tasks import MIGRATIONS

pytest_plugins = ["routes_fixtures"]

USER = "mirror user"
PASSWORD = "Pa55w0rd-Mixed-Case"
"""Upper case (a lower-cased password is refused); nothing to percent-encode, so the bytes
looked for are the same in a URL and out of it."""
USERINFO = f"mirror%20user:{PASSWORD}@"
SECRET = PASSWORD.encode()
TOKEN = "Civitai-Token-0123456789abcdef"
"""A download link's ``?token=``: nothing to percent-encode either."""


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


def with_password(url: str) -> str:
    return url.replace("http://", f"http://{USERINFO}", 1)


def with_token(url: str, token: str = TOKEN) -> str:
    """``url`` as Civitai's download links are: a plain parameter, then the token."""
    return f"{url}?type=Model&token={token}"


def state_bytes(root: Path) -> bytes:
    """``state.db`` and its ``-wal`` as they are on disk, whoever has them open."""
    found = b""
    for suffix in ("", "-wal"):
        path = root / ".shelf" / f"state.db{suffix}"
        if path.exists():
            found += path.read_bytes()
    return found


def files_holding(root: Path, secret: bytes) -> list[str]:
    """Every file under ``root`` whose bytes contain ``secret``."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and secret in path.read_bytes()
    )


def credentials_files(root: Path) -> list[Path]:
    folder = root / ".shelf" / "credentials"
    return sorted(folder.glob("*.json")) if folder.exists() else []


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def add_killed_at(root: Path, url: str, held: int, env: dict[str, str]) -> None:
    """``add URL`` in a process of its own, killed (SIGKILL) once ``held`` bytes are on disk."""
    adding = subprocess.Popen(
        cli_command(root, "add", url, "--type", "vae"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sigkill_when(adding, lambda: partial_size(root) >= held, "the bytes before the hold on disk")


def test_the_password_stays_out_of_state_db_and_the_download_still_authenticates(
    root, server, tmp_path
):
    src = write_model_file(tmp_path / "m.safetensors", 2 * MIB, seed=3)
    served = server.serve("m.safetensors", src, require_basic=f"{USER}:{PASSWORD}")
    with Shelf.open(root, quick_settings()) as shelf:
        task = shelf.downloads.add(with_password(server.url("m.safetensors")), "checkpoints")
        assert SECRET not in state_bytes(root)
        (kept,) = credentials_files(root)
        assert kept.stem == task.id and SECRET in kept.read_bytes()
        assert mode(kept) == 0o600 and mode(kept.parent) == 0o700
        (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"
    assert [r.status for r in served.requests] == [200]
    # Done: its credentials are deleted, and no file of the library holds the password (not
    # state.db, its WAL, the model's record, nor a task list).
    assert credentials_files(root) == []
    assert files_holding(root, SECRET) == []
    assert files_holding(root, b"mirror%20user") == []


def test_credentials_survive_a_sigkill_and_authenticate_the_resume_in_a_new_process(
    root, server, tmp_path
):
    src = write_model_file(tmp_path / "m.safetensors", 24 * MIB, seed=4)
    held = 8 * MIB
    served = server.serve(
        "m.safetensors", src, require_basic=f"{USER}:{PASSWORD}", hold_at_byte=held
    )
    env = quick_env()
    add_killed_at(root, with_password(server.url("m.safetensors")), held, env)
    assert SECRET not in state_bytes(root)
    (kept,) = credentials_files(root)
    assert mode(kept) == 0o600

    behaviour = served.behaviour
    behaviour.hold_at_byte = None
    behaviour.release.set()  # the killed process's response ends
    # The URL without its password: the task found by it must bring its own credentials.
    second = subprocess.run(
        cli_command(root, "add", server.url("m.safetensors"), "--type", "vae"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr
    resumed = served.requests[-1]
    assert resumed.status == 206, [(r.status, r.headers.get("Range")) for r in served.requests]
    assert int(resumed.headers["Range"][6:-1]) >= held
    assert all(r.status != 401 for r in served.requests)
    with Shelf.open(root) as shelf:
        (record,) = shelf.index.list("vae")
        assert record.sha256 == f"sha256:{sha256_of(src)}"
    assert credentials_files(root) == []
    assert files_holding(root, SECRET) == []


def test_cancelling_a_task_deletes_its_credentials(root, server, tmp_path):
    with Shelf.open(root, quick_settings()) as shelf:
        first = shelf.downloads.add(with_password(server.url("a.safetensors")), "loras")
        second = shelf.downloads.add(with_password(server.url("b.safetensors")), "loras")
        assert [p.stem for p in credentials_files(root)] == sorted([first.id, second.id])
        assert SECRET not in state_bytes(root)
        shelf.downloads.cancel(first.id)
        assert [p.stem for p in credentials_files(root)] == [second.id]


def old_state_db(path: Path, rows: list[dict[str, object]]) -> None:
    """A ``state.db`` as the version before issue #15 left it: its migrations, its rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    old_steps = MIGRATIONS[:3]
    db.execute("BEGIN")
    for step in old_steps:
        step(db)
    db.execute(f"PRAGMA user_version={len(old_steps)}")
    for row in rows:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        db.execute(f"INSERT INTO tasks ({columns}) VALUES ({marks})", list(row.values()))
    db.execute("COMMIT")
    db.close()


def old_row(task_id: str, url: str, state: str, **fields: object) -> dict[str, object]:
    return {
        "id": task_id,
        "source": url,
        "source_key": f"url:{url}",
        "source_kind": "url",
        "model_type": "checkpoints",
        "state": state,
        "url": url,
        "source_ref": json.dumps({"kind": "url", "url": url}),
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        **fields,
    }


def test_an_older_state_db_is_cleaned_on_open_and_its_task_still_authenticates(
    root, server, tmp_path
):
    src = write_model_file(tmp_path / "m.safetensors", 2 * MIB, seed=5)
    served = server.serve("m.safetensors", src, require_basic=f"{USER}:{PASSWORD}")
    queued_url = with_password(server.url("m.safetensors"))
    done_url = with_password(server.url("old.safetensors"))
    state_db = root / ".shelf" / "state.db"
    old_state_db(
        state_db,
        [
            old_row("a1b2c3d4e5f6", queued_url, "queued"),
            old_row("0f0f0f0f0f0f", done_url, "done", finished_at="2026-01-01T00:00:00+00:00"),
        ],
    )
    assert SECRET in state_db.read_bytes()

    with Shelf.open(root, quick_settings()) as shelf:
        assert SECRET not in state_bytes(root)
        # Kept for the task that still needs them; dropped for the one that is done.
        (kept,) = credentials_files(root)
        assert kept.stem == "a1b2c3d4e5f6" and mode(kept) == 0o600
        task = shelf.downloads.get("a1b2c3d4e5f6")
        assert task.source == task.url == server.url("m.safetensors")
        assert task.source_key == f"url:{server.url('m.safetensors')}"
        assert task.source_ref == {"kind": "url", "url": server.url("m.safetensors")}
        (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    assert [r.status for r in served.requests] == [200]
    assert credentials_files(root) == []
    assert files_holding(root, SECRET) == []


def test_adding_the_url_again_with_the_right_password_resumes_the_refused_task(
    root, server, tmp_path
):
    src = write_model_file(tmp_path / "m.safetensors", 1 * MIB, seed=6)
    served = server.serve("m.safetensors", src, require_basic=f"{USER}:{PASSWORD}")
    wrong = server.url("m.safetensors").replace("http://", "http://mirror%20user:guess@", 1)
    with Shelf.open(root, quick_settings()) as shelf:
        refused = shelf.downloads.add(wrong, "checkpoints")
        (failed,) = shelf.downloads.run_foreground([refused.id])
        assert failed.state is TaskState.FAILED and failed.error_code == "AUTH_REQUIRED"
        again = shelf.downloads.add(with_password(server.url("m.safetensors")), "checkpoints")
        assert again.id == refused.id
        (done,) = shelf.downloads.run_foreground([again.id])
    assert done.state is TaskState.DONE, done.error_message
    assert [r.status for r in served.requests][-1] == 200
    assert credentials_files(root) == []


# -- a credential in the query: ?token= ------------------------------------------------------


async def test_a_query_token_authenticates_and_reaches_no_file_no_answer_and_no_log(
    client: TestClient, remote: RemoteServer, api_shelf: Shelf, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.DEBUG, logger="model_shelf")
    src = write_model_file(tmp_path / "m.safetensors", 2 * MIB, seed=7)
    served = remote.serve("m.safetensors", src, require_query=("token", TOKEN))
    root = api_shelf.root
    async with open_events(client) as events:
        response = await client.post(
            "/model-shelf/downloads",
            json={"source": with_token(remote.url("m.safetensors")), "type": "checkpoints"},
            headers=JSON,
        )
        assert response.status == 201, await response.text()
        task = await json_of(response)
        done = await events.task(task["id"], "done", "failed")
    assert done["state"] == "done", done
    assert [r.status for r in served.requests] == [200]
    assert f"token={TOKEN}" in served.requests[0].path  # sent, to the source's own server
    stored = api_shelf.downloads.get(task["id"])
    # The dedupe key, the source, the URL and the source reference keep the file's own query.
    plain = f"{remote.url('m.safetensors')}?type=Model"
    assert (stored.source, stored.url, stored.source_key) == (plain, plain, f"url:{plain}")
    assert stored.source_ref is not None and stored.source_ref["url"] == plain
    detail = await client.get(f"/model-shelf/models/{stored.model_id}")
    assert detail.status == 200 and TOKEN not in await detail.text()
    assert [s["url"] for s in (await json_of(detail))["record"]["sources"]] == [plain]
    listed = await client.get("/model-shelf/downloads")
    assert listed.status == 200 and TOKEN not in await listed.text()
    # Done: no file under the root holds it (state.db and its WAL, the record, index.db, the
    # credentials file, deleted with the task), nor did any of our log lines.
    assert credentials_files(root) == []
    assert files_holding(root, TOKEN.encode()) == []
    assert TOKEN not in "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("model_shelf")
    )


def test_a_query_token_goes_to_no_other_origin_after_a_redirect(root, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 1 * MIB, seed=8)
    with RemoteServer() as elsewhere:
        target = elsewhere.serve("m.safetensors", src)
        moved = server.serve(
            "m.safetensors",
            src,
            require_query=("token", TOKEN),
            failures=[(302, {"Location": elsewhere.url("m.safetensors")})],
        )
        with Shelf.open(root, quick_settings()) as shelf:
            task = shelf.downloads.add(with_token(server.url("m.safetensors")), "checkpoints")
            assert TOKEN.encode() not in state_bytes(root)
            (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    assert [r.status for r in moved.requests] == [302]
    assert [r.status for r in target.requests] == [200]
    assert TOKEN not in target.requests[0].path
    assert files_holding(root, TOKEN.encode()) == []


def test_a_query_token_survives_a_sigkill_and_authenticates_the_resume_in_a_new_process(
    root, server, tmp_path
):
    src = write_model_file(tmp_path / "m.safetensors", 24 * MIB, seed=9)
    held = 8 * MIB
    served = server.serve("m.safetensors", src, require_query=("token", TOKEN), hold_at_byte=held)
    env = quick_env()
    add_killed_at(root, with_token(server.url("m.safetensors")), held, env)
    assert TOKEN.encode() not in state_bytes(root)
    (kept,) = credentials_files(root)
    assert mode(kept) == 0o600 and TOKEN.encode() in kept.read_bytes()

    behaviour = served.behaviour
    behaviour.hold_at_byte = None
    behaviour.release.set()  # the killed process's response ends
    # Without its token: the task found by it (the same key) must bring its own.
    second = subprocess.run(
        cli_command(root, "add", f"{server.url('m.safetensors')}?type=Model", "--type", "vae"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr
    assert TOKEN not in second.stdout + second.stderr
    resumed = served.requests[-1]
    assert resumed.status == 206, [(r.status, r.headers.get("Range")) for r in served.requests]
    assert int(resumed.headers["Range"][6:-1]) >= held
    assert f"token={TOKEN}" in resumed.path
    assert all(r.status != 401 for r in served.requests)
    with Shelf.open(root) as shelf:
        (record,) = shelf.index.list("vae")
        assert record.sha256 == f"sha256:{sha256_of(src)}"
    assert credentials_files(root) == []
    assert files_holding(root, TOKEN.encode()) == []


def test_an_older_state_db_loses_its_query_tokens_on_open(root, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 1 * MIB, seed=10)
    served = server.serve("m.safetensors", src, require_query=("token", TOKEN))
    first, twin = "a1b2c3d4e5f6", "b1b2c3d4e5f6"
    state_db = root / ".shelf" / "state.db"
    old_state_db(
        state_db,
        [
            old_row(first, with_token(server.url("m.safetensors")), "queued"),
            # The same file, queued with another token: after the step, one key each still.
            old_row(twin, with_token(server.url("m.safetensors"), "Other-Token-42"), "paused"),
        ],
    )
    assert TOKEN.encode() in state_db.read_bytes()

    plain = f"{server.url('m.safetensors')}?type=Model"
    with Shelf.open(root, quick_settings()) as shelf:
        assert TOKEN.encode() not in state_bytes(root)
        assert b"Other-Token-42" not in state_bytes(root)
        assert [p.stem for p in credentials_files(root)] == [first, twin]
        task = shelf.downloads.get(first)
        assert task.source == task.url == plain and task.source_key == f"url:{plain}"
        assert task.source_ref == {"kind": "url", "url": plain}
        assert shelf.downloads.get(twin).source_key == f"url:{plain}#{twin}"
        (done,) = shelf.downloads.run_foreground([first])
    assert done.state is TaskState.DONE, done.error_message
    assert [r.status for r in served.requests] == [200]
    assert files_holding(root, TOKEN.encode()) == []
