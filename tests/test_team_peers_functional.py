"""LAN peers: two real libraries, each serving its API on a loopback port (`standalone_app`).

The peer is registered directly (``peers add URL``), not found by mDNS: this tests the transfer
between instances; `test_team_discovery` covers mDNS. A peer serves only the models its owner
shares, only with the team token, only to local-network addresses; a download with a known
sha256 asks it first, rejects wrong bytes by hash (and marks the peer bad), and when a peer
vanishes mid-file, resumes the same partial file from the next source.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import PEER_TOKEN
from downloads_support import MIB, quick_settings
from remote_server import RemoteServer, sha256_of, write_model_file
from routes_support import ThreadedApp

from model_shelf.library import Shelf
from model_shelf.library.downloads import TaskState
from model_shelf.library.errors import PeerRefusedError
from model_shelf.library.team.peers import check_peer_request, is_local_network
from model_shelf.server_routes.schemas import TaskView

TOKEN = PEER_TOKEN


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


def shared_model(shelf: Shelf, tmp_path: Path, size: int, seed: int, name: str) -> Path:
    src = write_model_file(tmp_path / "src" / name, size, seed)
    shelf.import_model(src, "loras")
    shelf.team.share([name])
    return src


def machine_b(tmp_path: Path, peer_url: str) -> Shelf:
    shelf = Shelf.open(tmp_path / "machine-b", quick_settings())
    shelf.team.set_token(TOKEN)
    shelf.team.add_peer(peer_url)
    return shelf


def get(url: str, token: str | None = TOKEN, **headers: str) -> tuple[int, bytes]:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_download_with_a_known_sha256_comes_from_the_peer(peer, server, tmp_path):
    shelf_a, app = peer
    src = shared_model(shelf_a, tmp_path, 6 * MIB, 1, "style.safetensors")
    served = server.serve("style.safetensors", src)
    with machine_b(tmp_path, app.url) as shelf:
        task = shelf.downloads.add(server.url("style.safetensors"), sha256=sha256_of(src))
        (done,) = shelf.downloads.run_foreground([task.id])
        assert done.state is TaskState.DONE, done.error_message
        assert done.byte_sources == {"peer": 6 * MIB}
        assert done.bytes_saved == 6 * MIB
        assert served.requests == []
        # Type and name came from the peer: the library has it where A has it.
        record = shelf.find("loras/style.safetensors")
        assert record.hashes["sha256"] == f"sha256:{sha256_of(src)}"
        assert {m.entry.name for m in shelf.remote_models()} == {"loras/style.safetensors"}


def test_a_peer_serves_only_shared_models_with_the_token_and_ranges(peer, tmp_path):
    shelf_a, app = peer
    src = shared_model(shelf_a, tmp_path, 2 * MIB, 2, "shared.safetensors")
    private = write_model_file(tmp_path / "src" / "private.safetensors", MIB, 3)
    shelf_a.import_model(private, "loras")
    blob = f"{app.url}/model-shelf/blobs/{sha256_of(src)}"
    status, body = get(blob, Range="bytes=100-199")
    assert status == 206 and body == src.read_bytes()[100:200]
    status, body = get(blob, token="a-wrong-token-of-enough-length")
    assert status == 403 and json.loads(body)["code"] == "PEER_REFUSED"
    status, body = get(blob, token=None)
    assert status == 403
    status, body = get(f"{app.url}/model-shelf/blobs/{sha256_of(private)}")
    assert status == 404 and json.loads(body)["code"] == "MODEL_NOT_FOUND"
    status, body = get(f"{app.url}/model-shelf/blobs/not-a-digest")
    assert status == 400
    status, body = get(f"{app.url}/model-shelf/peer/models")
    assert [e["name"] for e in json.loads(body)] == ["loras/shared.safetensors"]


def test_only_local_network_addresses_and_the_token_pass():
    for address in ("127.0.0.1", "::1", "192.168.1.20", "10.1.2.3", "fe80::1", "fd00::5"):
        assert is_local_network(address), address
    for address in ("8.8.8.8", "2001:4860::8888", "", None, "not-an-ip"):
        assert not is_local_network(address), address
    assert is_local_network("::ffff:192.168.0.9")
    check_peer_request("192.168.1.2", f"Bearer {TOKEN}", TOKEN)
    with pytest.raises(PeerRefusedError, match="local network"):
        check_peer_request("8.8.8.8", f"Bearer {TOKEN}", TOKEN)
    with pytest.raises(PeerRefusedError, match="no team token"):
        check_peer_request("127.0.0.1", f"Bearer {TOKEN}", None)
    with pytest.raises(PeerRefusedError, match="wrong or missing"):
        check_peer_request("127.0.0.1", "Basic abc", TOKEN)


def test_a_peer_that_sends_wrong_bytes_is_rejected_by_hash_and_marked_bad(peer, server, tmp_path):
    shelf_a, app = peer
    src = shared_model(shelf_a, tmp_path, 4 * MIB, 4, "rotten.safetensors")
    on_peer = shelf_a.model_path(shelf_a.find("rotten.safetensors"))
    with open(on_peer, "r+b") as handle:  # the peer's copy rotted after it was recorded
        handle.seek(3 * MIB)
        handle.write(b"\x00" * 64)
    served = server.serve("rotten.safetensors", src)
    with machine_b(tmp_path, app.url) as shelf:
        task = shelf.downloads.add(server.url("rotten.safetensors"), "loras", sha256=sha256_of(src))
        (done,) = shelf.downloads.run_foreground([task.id])
        assert done.state is TaskState.DONE, done.error_message
        assert done.byte_sources == {"internet": 4 * MIB}
        assert served.bytes_sent == 4 * MIB
        assert app.url in shelf.team.directory.bad()
        assert shelf.team.peer_urls() == []  # not asked again by this process
        path = shelf.model_path(shelf.find("loras/rotten.safetensors"))
        assert sha256_of(path) == sha256_of(src)


class VanishingPeer:
    """A peer that shares one file and closes the connection half-way through sending it."""

    def __init__(self, src: Path, name: str) -> None:
        self.src = src
        self.name = name
        self.sha256 = sha256_of(src)
        self.app = ThreadedApp(self._make, "test-vanishing-peer")

    async def _make(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/model-shelf/peer/models/{sha}", self._entry)
        app.router.add_get("/model-shelf/blobs/{sha}", self._blob)
        return app

    async def _entry(self, request: web.Request) -> web.Response:
        size = self.src.stat().st_size
        entry = {"sha256": f"sha256:{self.sha256}", "name": f"loras/{self.name}"}
        return web.json_response({**entry, "type": "loras", "filename": self.name, "size": size})

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        data = self.src.read_bytes()
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        assert request.transport is not None
        request.transport.close()  # gone mid-file (the machine slept, the cable came out)
        return response


def test_a_peer_that_vanishes_mid_file_hands_over_to_the_next_source(server, tmp_path):
    src = write_model_file(tmp_path / "src" / "half.safetensors", 8 * MIB, 5)
    served = server.serve("half.safetensors", src)
    vanishing = VanishingPeer(src, "half.safetensors")
    with vanishing.app, machine_b(tmp_path, vanishing.app.url) as shelf:
        task = shelf.downloads.add(server.url("half.safetensors"), sha256=vanishing.sha256)
        (done,) = shelf.downloads.run_foreground([task.id])
        assert done.state is TaskState.DONE, done.error_message
        assert done.byte_sources == {"peer": 4 * MIB, "internet": 4 * MIB}
        (request,) = served.requests
        assert request.headers["Range"] == f"bytes={4 * MIB}-"
        path = shelf.model_path(shelf.find("loras/half.safetensors"))
        assert sha256_of(path) == vanishing.sha256


def test_the_team_routes_show_settings_masked_and_tasks_their_sources(peer, server, tmp_path):
    shelf_a, app = peer
    src = shared_model(shelf_a, tmp_path, MIB, 6, "routes.safetensors")
    status, body = get(f"{app.url}/model-shelf/team", token=None)
    team = json.loads(body)
    assert status == 200 and team["token"] == "tea…0123" and TOKEN not in body.decode()
    assert team["shared"] == 1 and team["stores"] == []
    status, body = get(f"{app.url}/model-shelf/team/remote", token=None)
    assert status == 200 and json.loads(body) == []  # A asks no one
    server.serve("routes.safetensors", src)
    with machine_b(tmp_path, app.url) as shelf:
        task = shelf.downloads.add(server.url("routes.safetensors"), sha256=sha256_of(src))
        (done,) = shelf.downloads.run_foreground([task.id])
        view = TaskView.of(done)
    assert view.byte_sources == {"peer": MIB} and view.bytes_saved == MIB
