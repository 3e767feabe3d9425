"""mDNS discovery between two real libraries over loopback multicast (it works on this
machine's ``lo``; on a host without loopback multicast this test would fail, not skip, so that
CI says so). Library A serves its API on a loopback port and announces it; library B browses,
finds A, and downloads a shared model from it; when A withdraws, B forgets it."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from downloads_support import MIB, quick_settings, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file
from routes_support import ThreadedApp

from model_shelf.library import Shelf
from model_shelf.library.downloads import TaskState
from model_shelf.server_routes import standalone_app

TOKEN = "discovery-test-token-0123456"


def test_two_libraries_find_each_other_and_share_by_mdns(tmp_path: Path):
    src = write_model_file(tmp_path / "src" / "found.safetensors", 2 * MIB, 9)
    with (
        Shelf.open(tmp_path / "a", quick_settings()) as a,
        Shelf.open(tmp_path / "b", quick_settings()) as b,
    ):
        for shelf in (a, b):
            shelf.team.set_token(TOKEN)
        assert a.team.discovery("127.0.0.1", 1) is None  # opt-in: off until asked
        a.import_model(src, "loras")
        a.team.share(["found.safetensors"])

        async def make() -> web.Application:
            return standalone_app(a, run_downloads=False)

        with ThreadedApp(make, "test-peer-a") as app, RemoteServer() as origin:
            a.team.set_discovery(True)
            b.team.set_discovery(True)
            port = int(app.url.rsplit(":", 1)[1])
            announcer = a.team.discovery("127.0.0.1", port)
            browser = b.team.discovery("127.0.0.1", 1)  # B serves nothing here; it browses
            assert announcer is not None and browser is not None
            announcer.start()
            browser.start()
            try:
                wait_until(lambda: app.url in b.team.peer_urls(), 30, "B to find A")
                served = origin.serve("found.safetensors", src)
                task = b.downloads.add(origin.url("found.safetensors"), sha256=sha256_of(src))
                (done,) = b.downloads.run_foreground([task.id])
                assert done.state is TaskState.DONE, done.error_message
                assert done.byte_sources == {"peer": 2 * MIB}
                assert served.requests == []
            finally:
                announcer.stop()
            wait_until(lambda: app.url not in b.team.peer_urls(), 30, "B to forget A")
            browser.stop()
