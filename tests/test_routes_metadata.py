"""The metadata routes (issue #12) over a real app and a loopback Civitai."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from downloads_support import quick_settings
from enrich_server import EnrichServer, png_bytes
from model_files import write_model_file
from routes_support import JSON, json_of

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.settings import EnrichSettings
from model_shelf.server_routes import standalone_app


@pytest.fixture
def server() -> Iterator[EnrichServer]:
    with EnrichServer() as running:
        yield running


@pytest.fixture
def shelf(tmp_path: Path, server: EnrichServer) -> Iterator[Shelf]:
    settings = quick_settings(civitai_api_base=server.civitai_base, hf_endpoint=server.base_url)
    enrich = EnrichSettings(requests_per_second=20, timeout_seconds=5)
    with Shelf.open(tmp_path / "library", settings, enrich_settings=enrich) as opened:
        yield opened


async def test_enrich_grid_thumbnail_and_user_values(
    aiohttp_client, shelf: Shelf, server: EnrichServer, tmp_path: Path
):
    source = write_model_file(tmp_path / "in" / "card.safetensors", 4096, seed=1)
    record = shelf.import_model(source, "loras", ImportMode.MOVE)
    image = server.add_image("c.png", png_bytes())
    images = [{"url": image, "nsfwLevel": 1, "width": 64, "height": 48, "type": "image"}]
    server.add_version(11, 1, record.name, record.sha256, record.size, images=images)
    client = await aiohttp_client(standalone_app(shelf, run_downloads=False))

    grid = await json_of(await client.get("/model-shelf/metadata"))
    assert grid["models"][0]["status"] == "not_fetched"
    assert grid["models"][0]["message"] == "metadata not fetched yet"

    answer = await client.post("/model-shelf/metadata/enrich", json={}, headers=JSON)
    report = await json_of(answer)
    assert report["trust"] == {"verified": 1} and report["previews"] == 1

    grid = await json_of(await client.get("/model-shelf/metadata"))
    card = grid["models"][0]
    assert card["trust"] == "verified" and card["base_model"] == "SDXL 1.0"
    assert card["trained_words"] == ["shelfstyle"]
    assert grid["base_models"] == {"SDXL 1.0": 1}
    thumb = await client.get(card["thumbnail"])
    assert thumb.status == 200 and thumb.content_type == "image/webp"

    edited = await client.put(
        f"/model-shelf/models/{record.id}/metadata", json={"base_model": "Pony"}, headers=JSON
    )
    assert (await json_of(edited))["base_model"] == "Pony"
    view = await json_of(await client.get(f"/model-shelf/models/{record.id}/metadata"))
    assert view["base_model"] == "Pony" and view["trust"] == "verified"

    bad = await client.put(
        f"/model-shelf/models/{record.id}/metadata", json={"base_model": 5}, headers=JSON
    )
    assert bad.status == 422
    missing = await client.post("/model-shelf/models/nope/update", json={}, headers=JSON)
    assert missing.status == 404
    none_newer = await client.post(f"/model-shelf/models/{record.id}/update", json={}, headers=JSON)
    assert (await json_of(none_newer))["code"] == "UNSUPPORTED"
