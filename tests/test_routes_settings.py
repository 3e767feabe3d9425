"""``/model-shelf/settings``: limits apply to the running engine; credentials are stored owner-only,
never returned in full, never logged."""

from __future__ import annotations

import logging
import stat

import pytest
from aiohttp.test_utils import TestClient
from routes_support import JSON, json_of

from model_shelf.library import Shelf
from model_shelf.library.stored_settings import mask

pytest_plugins = ["routes_fixtures"]

TOKEN = "hf_abcdefghijklmnopqrstuvwxyz0123"
KEY = "civitai-0123456789abcdef"


async def put(client: TestClient, body: dict, status: int = 200) -> dict:
    response = await client.put("/model-shelf/settings", json=body, headers=JSON)
    assert response.status == status, await response.text()
    return await json_of(response)


async def test_secrets_are_stored_0600_and_masked(
    client: TestClient, api_shelf: Shelf, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    view = await put(client, {"hf_token": TOKEN, "civitai_api_key": KEY})
    assert view["hf_token"] == {"set": True, "masked": "hf_…0123", "source": "stored"}
    assert view["civitai_api_key"]["masked"] == "civ…cdef"
    secrets = api_shelf.layout.state_dir / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert TOKEN in secrets.read_text()
    # in use at once, by this process's engine
    assert api_shelf.downloads.settings.hf_token.get_secret_value() == TOKEN
    assert api_shelf.downloads.engine.settings.civitai_api_key.get_secret_value() == KEY
    # never back in full, never in a log
    text = await (await client.get("/model-shelf/settings")).text()
    assert TOKEN not in text and KEY not in text
    assert TOKEN not in caplog.text and KEY not in caplog.text
    # and used by the next process that opens the library
    with Shelf(api_shelf.root) as other:
        assert other.downloads.settings.hf_token.get_secret_value() == TOKEN
    view = await put(client, {"hf_token": ""})
    assert view["hf_token"] == {"set": False, "masked": None, "source": "none"}
    assert view["civitai_api_key"]["set"] is True
    assert TOKEN not in secrets.read_text()


async def test_limits_apply_to_the_running_engine(client: TestClient, api_shelf: Shelf) -> None:
    view = await put(client, {"concurrency": 5, "bandwidth_limit_bytes_per_second": 1_000_000})
    assert view["concurrency"] == 5
    assert api_shelf.downloads.engine.settings.concurrency == 5
    limiter = api_shelf.downloads.engine._limiter
    assert limiter is not None and limiter.bytes_per_second == 1_000_000
    view = await put(client, {"concurrency": None})  # back to the default
    assert view["concurrency"] == api_shelf.base_download_settings.concurrency
    assert view["bandwidth_limit_bytes_per_second"] == 1_000_000


@pytest.mark.parametrize(
    "body",
    [
        {"concurrency": 0},
        {"concurrency": 33},
        {"concurrency": "many"},
        {"bandwidth_limit_bytes_per_second": -1},
        {"hf_token": "x" * 1000},
        {"hf_token": 12},
        {"root": "relative/path"},
        {"colour": "blue"},
    ],
)
async def test_bad_settings(client: TestClient, body: dict) -> None:
    assert (await put(client, body, status=422))["code"] == "INVALID_REQUEST"


async def test_root_is_fixed_in_serve(client: TestClient, api_shelf: Shelf) -> None:
    view = await json_of(await client.get("/model-shelf/settings"))
    assert view["root"] == str(api_shelf.root) and view["root_editable"] is False
    assert (await put(client, {"root": "/elsewhere"}, status=400))["code"] == "UNSUPPORTED"


def test_mask() -> None:
    assert mask(None) is None
    from pydantic import SecretStr

    assert mask(SecretStr("abc")) == "…"
    assert mask(SecretStr("abcdefgh")) == "…gh"
    assert mask(SecretStr(TOKEN)) == "hf_…0123"


async def test_settings_files_are_owner_only_even_when_an_older_version_wrote_them(
    client: TestClient, api_shelf: Shelf
) -> None:
    """Issue #11: settings.json names the hosts this library may reach; team.json its peers."""
    await put(client, {"concurrency": 3, "allowed_fetch_hosts": ["mirror.lan:8080"]})
    state = api_shelf.layout.state_dir
    assert stat.S_IMODE((state / "settings.json").stat().st_mode) == 0o600
    assert api_shelf.downloads.settings.allowed_fetch_hosts == ("mirror.lan:8080",)
    for name in ("settings.json", "team.json"):
        path = state / name
        path.write_text("{}")
        path.chmod(0o644)  # as versions before issue #11 left them
    api_shelf.stored_settings.limits()
    api_shelf.stored_settings.team()
    assert {stat.S_IMODE((state / n).stat().st_mode) for n in ("settings.json", "team.json")} == {
        0o600
    }
