"""Issue #11: credentials never leave in an answer, a log line, an event or a task's error, even
when a server echoes them back in its error page; the files that hold them are 0600.

The server here is hostile on purpose: every error it answers quotes the request's
``Authorization`` header and query string, the way debug pages and some proxies do.
"""

from __future__ import annotations

import base64
import json
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from downloads_support import quick_settings
from routes_support import JSON, json_of, open_events

from model_shelf.library import Shelf
from model_shelf.library.stored_settings import StoreKeys, TeamSecrets
from model_shelf.server_routes import standalone_app

HF_TOKEN = "hf_SECRETtokenABCDEFGHIJKLMNOP"
CIVITAI_KEY = "civitaiSECRETkey0123456789"
PASSWORD = "p4ssSECRETword"
QUERY_TOKEN = "querySECRETtoken42"
STORE_SECRET = "storeSECRETaccess99"
TEAM_TOKEN = "teamSECRETtoken77"
SECRETS = [HF_TOKEN, CIVITAI_KEY, PASSWORD, QUERY_TOKEN, STORE_SECRET, TEAM_TOKEN]
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()


def leaked(text: str) -> list[str]:
    return [s for s in [*SECRETS, BASIC] if s in text]


async def echo(request: web.Request) -> web.Response:
    """Every request fails, quoting what it was sent (in the body and a header)."""
    told = f"{request.headers.get('Authorization')} {request.query_string}"
    status = 401 if "unauthorized" in request.path else 500
    return web.Response(
        status=status,
        text=f"refused {told}",
        headers={"X-Error-Message": f"bad credentials: {told}"},
    )


@pytest.fixture
async def hostile() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_secrets_never_come_back_from_a_hostile_server(
    aiohttp_client: Any,
    hostile: TestServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    base = str(hostile.make_url("")).rstrip("/")
    settings = quick_settings(
        hf_endpoint=base,
        hf_token=HF_TOKEN,
        civitai_api_base=f"{base}/api/v1",
        civitai_api_key=CIVITAI_KEY,
        max_attempts=1,
    )
    with Shelf.open(tmp_path / "library", settings) as shelf:
        shelf.stored_settings.save_team_secrets(
            TeamSecrets(
                store_keys={
                    "team": StoreKeys(access_key_id="AKID", secret_access_key=STORE_SECRET)
                },
                team_token=TEAM_TOKEN,
            )
        )
        client: TestClient = await aiohttp_client(standalone_app(shelf))
        response = await client.put("/model-shelf/settings", json={"concurrency": 3}, headers=JSON)
        assert response.status == 200  # settings.json written: owner-only like the secrets
        # the plain URLs by another name of the same server: 127.0.0.1 is Hugging Face's here
        host = base.removeprefix("http://").replace("127.0.0.1", "localhost")
        sources = [
            f"http://alice:{PASSWORD}@{host}/unauthorized/m.safetensors?token={QUERY_TOKEN}",
            f"http://{host}/broken/m.safetensors?token={QUERY_TOKEN}&type=Model",
            "hf://org/repo/m.safetensors",  # the token goes to the Hugging Face endpoint
            "https://civitai.com/models/1?modelVersionId=2",  # the key goes to the Civitai API
        ]
        ids = []
        async with open_events(client) as events:
            for source in sources:
                response = await client.post(
                    "/model-shelf/downloads",
                    json={"source": source, "type": "loras"},
                    headers=JSON,
                )
                assert response.status == 201, await response.text()
                ids.append((await json_of(response))["id"])
            for task_id in ids:
                await events.task(task_id, "failed", timeout=60)
            seen = json.dumps(events.seen)
        tasks = [shelf.downloads.get(i) for i in ids]
        assert [t.state.value for t in tasks] == ["failed"] * 4, [t.error_message for t in tasks]
        assert tasks[0].error_code == "AUTH_REQUIRED"
        answers = [
            await (await client.get("/model-shelf/downloads")).text(),
            *[await (await client.get(f"/model-shelf/downloads/{i}")).text() for i in ids],
            await (await client.get("/model-shelf/settings")).text(),
            await (await client.get("/model-shelf/team")).text(),
            await (await client.get("/model-shelf/metrics")).text(),
        ]
        assert leaked(seen) == []
        errors = [f"{t.error_code} {t.error_message} {t.error_detail}" for t in tasks]
        assert "credentials" in errors[0]  # the server's message is still quoted...
        assert leaked("\n".join(answers)) == []  # ...but no secret, anywhere
        assert leaked("\n".join(errors)) == [], errors
        # Ours at every level; others from INFO (HTTP clients' DEBUG traces print raw headers,
        # and the hostile server's access log prints its own request lines).
        ours = [
            r
            for r in caplog.records
            if r.name.startswith("model_shelf")
            or (r.levelno >= logging.INFO and r.name != "aiohttp.access")
        ]
        lines = "\n".join(f"{r.name}: {r.getMessage()}" for r in ours)
        assert leaked(lines) == [], lines
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode) for p in shelf.layout.state_dir.glob("*.json")
        }
        assert modes == {"settings.json": 0o600, "team-secrets.json": 0o600}
        # The rows keep the URL's query (it names the file) but no password (issue #15).
        rows = leaked(json.dumps([t.model_dump(mode="json") for t in tasks], default=str))
        assert rows in ([], [QUERY_TOKEN]) and PASSWORD not in rows
