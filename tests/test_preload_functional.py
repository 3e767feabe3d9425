"""Preload suggestions from the team (issue #14 over issue #13's stores): a model this library
used often and no longer holds, which the team store holds, is suggested with where it is and
where it came from; the sidebar's one click (``POST /model-shelf/usage/preload``) brings it
back from the store, checked by sha256, without a byte from its origin.

A real S3 server (SeaweedFS on loopback, see `seaweed`), two real libraries, the second one's
API served on a loopback port with its download engine running, and a real origin server that
counts every byte it sends.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from downloads_support import MIB, quick_settings, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file
from routes_support import ThreadedApp
from seaweed import Seaweed, add_store, make_bucket

from model_shelf.library import Shelf
from model_shelf.library.downloads import TaskState
from model_shelf.library.records import SourceRef
from model_shelf.library.usage_log import RunEntry, RunUse
from model_shelf.server_routes import standalone_app

DAY = 24 * 3600.0


@pytest.fixture(scope="module")
def bucket(weed: Seaweed) -> str:
    make_bucket(weed.endpoint, "team")
    return "team/preload"


@pytest.fixture
def origin() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, json.loads(answer.read())


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def test_a_model_used_here_and_held_by_the_team_store_is_suggested_and_fetched_from_it(
    weed, bucket, origin, tmp_path
):
    src = write_model_file(tmp_path / "origin" / "detail.safetensors", 7 * MIB, seed=21)
    digest = f"sha256:{sha256_of(src)}"
    served = origin.serve("detail.safetensors", src)
    source = origin.url("detail.safetensors")
    # Machine A: has the model (from its origin) and pushes it to the team store.
    with Shelf.open(tmp_path / "machine-a", quick_settings()) as first:
        add_store(first, weed, bucket)
        first.import_model(src, "loras", sources=[SourceRef(kind="url", url=source)])
        (pushed,) = first.team.push(["detail.safetensors"])
        assert pushed.uploaded_bytes == 7 * MIB

    # Machine B: used the same model in three runs, then removed it to free space.
    root = tmp_path / "machine-b"
    with Shelf.open(root, quick_settings()) as shelf:
        add_store(shelf, weed, bucket)
        had = shelf.import_model(src, "loras")
        now = time.time()
        for n in range(3):
            when = now - (n + 1) * DAY
            shelf.usage_log.add_run(
                RunEntry(f"run-{n}", when, when + 5, "success", [RunUse(had.id, had.display())])
            )
        shelf.remove_model(had.id)
        assert shelf.index.list("loras") == []

        async def make() -> web.Application:
            return standalone_app(shelf)

        with ThreadedApp(make, "test-preload-b") as app:
            suggested = get_json(f"{app.url}/model-shelf/usage/preload")
            (suggestion,) = [s for s in suggested if s["sha256"] == digest]
            assert suggestion["name"] == "loras/detail.safetensors"
            assert suggestion["uses"] == 3
            assert suggestion["last_used"] is not None  # the newest of the three runs
            assert suggestion["where"] == "store team"
            assert suggestion["source"] == source
            assert suggestion["model_id"] is None
            assert suggestion["reason"] == (
                "used 3 times here, not in this library; store team has it"
            )

            status, answer = post_json(
                f"{app.url}/model-shelf/usage/preload", {"name": suggestion["name"]}
            )
            assert status == 202
            task_id = answer["task_id"]
            done = wait_until(
                lambda: (t := shelf.downloads.get(task_id)).in_terminal_state and t,
                timeout=120,
                what="the preload download",
            )
        assert done.state is TaskState.DONE, done.error_message
        assert done.byte_sources == {"store": 7 * MIB}
        record = shelf.find("loras/detail.safetensors")
        assert record.hashes["sha256"] == digest
        assert sha256_of(shelf.model_path(record)) == digest.removeprefix("sha256:")
        # Back in the library: no longer a suggestion.
        assert all(s.sha256 != digest for s in shelf.preload_suggestions())
    assert served.requests == [] and served.bytes_sent == 0  # the origin was never asked
