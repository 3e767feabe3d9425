"""Cross-site requests and "simple" form bodies are refused by every state-changing route;
requests for a host name the server does not answer to (DNS rebinding) by every route."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from conftest import tree_snapshot
from routes_support import JSON, json_of

from model_shelf.library import Shelf
from model_shelf.server_routes import CONTEXT_KEY, route_table, standalone_app
from model_shelf.server_routes.guard import is_peer_route

pytest_plugins = ["routes_fixtures"]


def api_paths(client: TestClient, *, reads: bool = False) -> list[tuple[str, str]]:
    """Every route of the API but the LAN peers' (state-changing ones only, unless ``reads``),
    with its placeholders filled in."""
    ctx = client.app[CONTEXT_KEY]
    found = []
    for route in route_table(ctx):
        if (route.method in ("GET", "HEAD") and not reads) or is_peer_route(route.handler):
            continue
        path = re.sub(r"\{action:[^}]*\}", "pause", route.path)
        path = re.sub(r"\{[^}]*\}", "0123456789ab", path)
        found.append((route.method, path))
    return found


def state_changing_paths(client: TestClient) -> list[tuple[str, str]]:
    """Every non-GET route of the API, with its placeholders filled in."""
    return api_paths(client)


async def test_cross_site_post_is_refused_everywhere(
    client: TestClient, api_shelf: Shelf, tmp_path: Path
) -> None:
    before = tree_snapshot(tmp_path)
    paths = state_changing_paths(client)
    assert len(paths) >= 13  # every route module, ours and later ones
    for method, path in paths:
        headers = {**JSON, "Origin": "http://evil.example"}
        if path.endswith("/upload"):
            headers.update({"Content-Type": "application/octet-stream", "X-Model-Shelf": "1"})
        response = await client.request(method, path, data=b"{}", headers=headers)
        assert response.status == 403, (method, path, await response.text())
        assert (await json_of(response))["code"] == "CROSS_SITE"
    assert tree_snapshot(tmp_path) == before
    assert api_shelf.downloads.list() == []


async def test_the_issue_examples(client: TestClient, api_shelf: Shelf) -> None:
    """A cross-site POST (``Origin: http://evil.example``) and a ``text/plain`` POST."""
    body = '{"source": "http://127.0.0.1:9/model.safetensors"}'
    evil = await client.post(
        "/model-shelf/downloads",
        data=body,
        headers={**JSON, "Origin": "http://evil.example"},
    )
    assert evil.status == 403
    assert (await json_of(evil))["code"] == "CROSS_SITE"
    plain = await client.post(
        "/model-shelf/downloads", data=body, headers={"Content-Type": "text/plain"}
    )
    assert plain.status == 415
    assert (await json_of(plain))["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert api_shelf.downloads.list() == []
    same = await client.post(
        "/model-shelf/downloads",
        data=body,
        headers={**JSON, "Origin": str(client.make_url("")).rstrip("/")},
    )
    assert same.status == 201, await same.text()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port: another application
        {"Origin": "https://127.0.0.1"},
        {"Origin": "http://127.0.0.1:notaport"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_other_sites(client: TestClient, headers: dict[str, str]) -> None:
    response = await client.put(
        "/model-shelf/settings", json={"concurrency": 3}, headers={**JSON, **headers}
    )
    assert response.status == 403


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ],
)
async def test_simple_content_types(client: TestClient, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.put(
        "/model-shelf/settings", data=b'{"concurrency": 3}', headers=headers
    )
    assert response.status == 415
    assert (await json_of(response))["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_same_origin_and_user_initiated_pass(client: TestClient) -> None:
    for headers in (
        {"Sec-Fetch-Site": "same-origin", "Origin": str(client.make_url("")).rstrip("/")},
        {"Sec-Fetch-Site": "none"},
        {},
    ):
        response = await client.put(
            "/model-shelf/settings", json={"concurrency": 3}, headers={**JSON, **headers}
        )
        assert response.status == 200, (headers, await response.text())


async def test_huge_and_malformed_bodies(client: TestClient) -> None:
    huge = b'{"source": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = await client.post("/model-shelf/downloads", data=huge, headers=JSON)
    assert response.status == 413
    assert (await json_of(response))["code"] == "TOO_LARGE"

    async def endless():  # no Content-Length: refused while reading, not after
        for _ in range(64):
            yield b"x" * 65536

    response = await client.post("/model-shelf/downloads", data=endless(), headers=JSON)
    assert response.status == 413
    for body in (b"{", b"[]", b"null", b'{"source": 1}', b"\xff\xfe", b'{"source": "x"} junk'):
        response = await client.post("/model-shelf/downloads", data=body, headers=JSON)
        assert response.status == 422, body
        assert (await json_of(response))["code"] == "INVALID_REQUEST"


async def test_errors_never_echo_secrets(client: TestClient) -> None:
    response = await client.put(
        "/model-shelf/settings", json={"hf_token": "hf_SECRET\x01", "x": 1}, headers=JSON
    )
    assert response.status == 422
    assert "hf_SECRET" not in await response.text()


# -- issue #11: the three browser attacks on every route, and DNS rebinding ---------------------


@pytest.mark.parametrize(
    "attack",
    ["origin-null", "cross-site-text-plain", "cross-site-multipart", "same-origin-multipart"],
)
async def test_form_posts_and_opaque_origins_are_refused_everywhere(
    client: TestClient, api_shelf: Shelf, tmp_path: Path, attack: str
) -> None:
    """What a sandboxed frame (``Origin: null``) and another site's ``<form>`` can send:
    refused by every state-changing route (the upload route included), nothing changed."""
    before = tree_snapshot(tmp_path)
    for method, path in state_changing_paths(client):
        if attack == "origin-null":
            kwargs = {"data": b"{}", "headers": {**JSON, "Origin": "null"}}
        elif attack == "cross-site-text-plain":
            headers = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
            kwargs = {"data": b'{"confirm": true}', "headers": headers}
        else:  # a real multipart body, as a form with a file input sends it
            form = aiohttp.FormData()
            form.add_field("confirm", "true")
            form.add_field("file", b"x" * 64, filename="m.safetensors")
            origin = "http://evil.example" if attack.startswith("cross") else None
            kwargs = {"data": form, "headers": {"Origin": origin} if origin else {}}
        response = await client.request(method, path, **kwargs)
        expected = 415 if attack == "same-origin-multipart" else 403
        assert response.status == expected, (attack, method, path, await response.text())
        code = (await json_of(response))["code"]
        assert code == ("UNSUPPORTED_MEDIA_TYPE" if expected == 415 else "CROSS_SITE")
    assert tree_snapshot(tmp_path) == before
    assert api_shelf.downloads.list() == []


REBOUND = ["evil.example", "evil.example:8765", "EVIL.example.", "127.0.0.1.evil.example", "x"]
"""``Host`` headers a rebinding page sends (its own name, resolved to 127.0.0.1 after loading)."""


async def test_a_host_name_it_does_not_answer_to_is_refused_on_every_route(
    client: TestClient, api_shelf: Shelf, tmp_path: Path
) -> None:
    before = tree_snapshot(tmp_path)
    paths = api_paths(client, reads=True)
    assert len([p for p in paths if p[0] == "GET"]) >= 20
    for host in REBOUND:
        for method, path in paths:
            for prefix in ("", "/api"):
                response = await client.request(
                    method, prefix + path, data=b"{}", headers={**JSON, "Host": host}
                )
                assert response.status == 403, (host, method, path, await response.text())
                error = await json_of(response)
                assert error["code"] == "HOST_NOT_ALLOWED", error
    assert "MODEL_SHELF_API_ALLOWED_HOSTS" in error["message"]
    assert tree_snapshot(tmp_path) == before
    assert api_shelf.downloads.list() == []


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:8765",
        "localhost.",
        "sidebar.localhost:8765",
        "127.0.0.1",
        "127.1.2.3:80",
        "[::1]:8765",
        "192.168.1.20:8765",  # any address: a rebinding page can only send its name
        "[fe80::1]",
    ],
)
async def test_loopback_names_and_addresses_are_answered(client: TestClient, host: str) -> None:
    response = await client.get("/model-shelf/healthz", headers={"Host": host})
    assert response.status == 200, await response.text()
    response = await client.put(
        "/model-shelf/settings", json={"concurrency": 3}, headers={**JSON, "Host": host}
    )
    assert response.status == 200, await response.text()


async def test_the_peer_routes_answer_any_host_name(client: TestClient) -> None:
    """Other machines reach them by this machine's LAN name: only their own checks apply."""
    for path in ("/model-shelf/peer/models", "/model-shelf/blobs/" + "ab" * 32):
        response = await client.get(path, headers={"Host": "shelf-box.lan:8765"})
        assert (await json_of(response))["code"] == "PEER_REFUSED", path


async def test_the_listen_name_the_environment_and_the_settings_allow_names(
    aiohttp_client: Any, api_shelf: Shelf, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_SHELF_API_ALLOWED_HOSTS", "shelf.lan, Other.lan:9000")
    client = await aiohttp_client(standalone_app(api_shelf, host="shelf-box"))

    async def status(host: str) -> int:
        response = await client.get("/model-shelf/healthz", headers={"Host": host})
        return response.status

    assert await status("shelf-box:8765") == 200  # serve --host shelf-box
    assert await status("shelf.lan") == 200
    assert await status("other.lan:8765") == 200  # the port is not compared
    assert await status("team.lan") == 403
    response = await client.put(
        "/model-shelf/settings", json={"allowed_hosts": ["team.lan"]}, headers=JSON
    )
    assert response.status == 200, await response.text()
    view = await json_of(response)
    assert view["allowed_hosts"] == ["other.lan", "shelf-box", "shelf.lan", "team.lan"]
    assert await status("team.lan") == 200
    assert api_shelf.stored_settings.limits().allowed_hosts == ("team.lan",)
    # stored in the library: a server started on it later answers to it too
    later = await aiohttp_client(standalone_app(api_shelf))
    response = await later.get("/model-shelf/healthz", headers={"Host": "team.lan"})
    assert response.status == 200
    response = await client.put(
        "/model-shelf/settings", json={"allowed_hosts": ["bad host/"]}, headers=JSON
    )
    assert response.status == 422
