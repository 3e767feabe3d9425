"""Preload suggestions from the team (issue #14 over issue #13's stores and peers): a model
this library used often and no longer holds, which a team store or a LAN peer holds, is
suggested with who holds it and where it came from (its origin URL, else its sha256); the
sidebar's one click (``POST /model-shelf/usage/preload``) brings it back from the store or
peer, checked by sha256, without a byte from its origin.

A real S3 server (SeaweedFS on loopback, see `seaweed`), real libraries serving their API on
loopback ports (the one preloading with its download engine running), and a real origin server
that counts every byte it sends.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import PEER_TOKEN
from downloads_support import MIB, quick_settings, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file
from routes_support import ThreadedApp
from seaweed import Seaweed, add_store, make_bucket

from model_shelf.library import Shelf
from model_shelf.library.downloads import DownloadTask, TaskState
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


def used_then_removed(shelf: Shelf, src: Path, runs: int) -> None:
    """This library had the model, used it in ``runs`` runs (the usage log), then removed it."""
    had = shelf.import_model(src, "loras")
    now = time.time()
    for n in range(runs):
        when = now - (n + 1) * DAY
        shelf.usage_log.add_run(
            RunEntry(f"{had.id}-{n}", when, when + 5, "success", [RunUse(had.id, had.display())])
        )
    shelf.remove_model(had.id)


def fetched_with_one_click(shelf: Shelf, app: ThreadedApp, name: str) -> DownloadTask:
    """What the sidebar's Fetch button does, to the end of the download it queues."""
    status, answer = post_json(f"{app.url}/model-shelf/usage/preload", {"name": name})
    assert status == 202
    return wait_until(
        lambda: (t := shelf.downloads.get(answer["task_id"])).in_terminal_state and t,
        timeout=120,
        what=f"the preload download of {name}",
    )


def test_models_used_here_and_held_by_the_team_store_are_suggested_and_fetched_from_it(
    weed, bucket, origin, tmp_path
):
    src = write_model_file(tmp_path / "origin" / "detail.safetensors", 7 * MIB, seed=21)
    digest = f"sha256:{sha256_of(src)}"
    served = origin.serve("detail.safetensors", src)
    source = origin.url("detail.safetensors")
    # Imported from a disk: no origin anywhere; only the store can give it back.
    local = write_model_file(tmp_path / "disk" / "local.safetensors", 3 * MIB, seed=22)
    local_digest = f"sha256:{sha256_of(local)}"
    # Machine A: has both models and pushes them to the team store.
    with Shelf.open(tmp_path / "machine-a", quick_settings()) as first:
        add_store(first, weed, bucket)
        first.import_model(src, "loras", sources=[SourceRef(kind="url", url=source)])
        first.import_model(local, "loras")
        pushed = first.team.push(["detail.safetensors", "local.safetensors"])
        assert sum(p.uploaded_bytes for p in pushed) == 10 * MIB

    # Machine B: used them in runs, then removed them to free space.
    with Shelf.open(tmp_path / "machine-b", quick_settings()) as shelf:
        add_store(shelf, weed, bucket)
        used_then_removed(shelf, src, runs=3)
        used_then_removed(shelf, local, runs=2)
        assert shelf.index.list("loras") == []

        async def make() -> web.Application:
            return standalone_app(shelf)

        with ThreadedApp(make, "test-preload-b") as app:
            suggested = get_json(f"{app.url}/model-shelf/usage/preload")
            by_sha256 = {s["sha256"]: s for s in suggested}
            suggestion = by_sha256[digest]
            assert suggestion["name"] == "loras/detail.safetensors"
            assert suggestion["uses"] == 3
            assert suggestion["last_used"] is not None  # the newest of the three runs
            assert suggestion["where"] == "store team"
            assert suggestion["source"] == source
            assert suggestion["model_id"] is None
            assert suggestion["reason"] == (
                "used 3 times here, not in this library; store team has it"
            )
            no_origin = by_sha256[local_digest]
            assert no_origin["name"] == "loras/local.safetensors"
            assert no_origin["source"] == local_digest and no_origin["where"] == "store team"

            done = fetched_with_one_click(shelf, app, "loras/detail.safetensors")
            assert done.state is TaskState.DONE, done.error_message
            assert done.byte_sources == {"store": 7 * MIB}
            restored = fetched_with_one_click(shelf, app, "loras/local.safetensors")
            assert restored.state is TaskState.DONE, restored.error_message
            assert restored.byte_sources == {"store": 3 * MIB}

        for name, expected in (("detail", digest), ("local", local_digest)):
            record = shelf.find(f"loras/{name}.safetensors")
            assert record.hashes["sha256"] == expected
            assert f"sha256:{sha256_of(shelf.model_path(record))}" == expected
        # Back in the library: no longer suggestions.
        assert shelf.preload_suggestions() == []
    assert served.requests == [] and served.bytes_sent == 0  # the origin was never asked


def test_a_digest_that_no_store_or_peer_holds_fails_with_its_own_code(tmp_path):
    with Shelf.open(tmp_path / "library", quick_settings()) as shelf:
        task = shelf.downloads.add("sha256:" + "ab" * 32, "loras")
        assert task.expected_sha256 == "sha256:" + "ab" * 32
        (failed,) = shelf.downloads.run_foreground([task.id])
    assert failed.state is TaskState.FAILED
    assert failed.error_code == "MODEL_UNAVAILABLE"
    assert "no team store or LAN peer could send" in (failed.error_message or "")


def test_a_model_used_here_and_shared_by_a_lan_peer_is_suggested_and_fetched_from_it(
    peer, origin, tmp_path
):
    shelf_a, peer_app = peer
    src = write_model_file(tmp_path / "origin" / "style.safetensors", 5 * MIB, seed=23)
    digest = f"sha256:{sha256_of(src)}"
    served = origin.serve("style.safetensors", src)
    source = origin.url("style.safetensors")
    shelf_a.import_model(src, "loras", sources=[SourceRef(kind="url", url=source)])
    shelf_a.team.share(["style.safetensors"])
    with Shelf.open(tmp_path / "machine-b", quick_settings()) as shelf:
        shelf.team.set_token(PEER_TOKEN)
        shelf.team.add_peer(peer_app.url)
        used_then_removed(shelf, src, runs=4)

        async def make() -> web.Application:
            return standalone_app(shelf)

        with ThreadedApp(make, "test-preload-b") as app:
            (suggestion,) = get_json(f"{app.url}/model-shelf/usage/preload")
            assert suggestion["sha256"] == digest and suggestion["uses"] == 4
            assert suggestion["where"] == f"peer {peer_app.url}"
            assert suggestion["source"] == source
            done = fetched_with_one_click(shelf, app, "loras/style.safetensors")
        assert done.state is TaskState.DONE, done.error_message
        assert done.byte_sources == {"peer": 5 * MIB}
        record = shelf.find("loras/style.safetensors")
        assert f"sha256:{sha256_of(shelf.model_path(record))}" == digest
    assert served.requests == [] and served.bytes_sent == 0
