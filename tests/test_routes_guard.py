"""Cross-site requests and "simple" form bodies are refused by every state-changing route."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from conftest import tree_snapshot
from routes_support import JSON, json_of

from model_shelf.library import Shelf
from model_shelf.server_routes import CONTEXT_KEY, route_table

pytest_plugins = ["routes_fixtures"]


def state_changing_paths(client: TestClient) -> list[tuple[str, str]]:
    """Every non-GET route of the API, with its placeholders filled in."""
    ctx = client.app[CONTEXT_KEY]
    found = []
    for route in route_table(ctx):
        if route.method in ("GET", "HEAD"):
            continue
        path = re.sub(r"\{action:[^}]*\}", "pause", route.path)
        path = re.sub(r"\{[^}]*\}", "0123456789ab", path)
        found.append((route.method, path))
    return found


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
