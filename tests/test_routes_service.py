"""``/model-shelf/healthz``, ``/model-shelf/metrics`` (Prometheus text) and ``/stats``."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from routes_support import json_of

from model_shelf.library import Shelf

pytest_plugins = ["routes_fixtures"]

SAMPLE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')


async def test_healthz(client: TestClient, api_shelf: Shelf) -> None:
    answer = await json_of(await client.get("/model-shelf/healthz"))
    assert answer == {"status": "ok", "models": 0, "root": str(api_shelf.root)}


async def test_metrics_text_format(client: TestClient, add_model) -> None:
    add_model("a.safetensors")
    await client.get("/model-shelf/models/nope")  # one API error, counted
    response = await client.get("/model-shelf/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    families = set()
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            families.add(line.split()[2])
        elif not line.startswith("#"):
            assert SAMPLE.match(line), line
    assert families >= {
        "model_shelf_tasks",
        "model_shelf_downloaded_bytes_total",
        "model_shelf_hashed_bytes_total",
        "model_shelf_index_models",
        "model_shelf_api_errors_total",
    }
    assert "model_shelf_index_models 1" in text
    assert 'model_shelf_api_errors_total{code="MODEL_NOT_FOUND"} 1' in text


async def test_stats(client: TestClient, add_model) -> None:
    add_model("a.safetensors", size=5000)
    stats = await json_of(await client.get("/api/model-shelf/stats"))
    assert stats["models"] == 1 and stats["bytes"] == 5000
    assert stats["types"] == {"loras": {"models": 1, "bytes": 5000}}
