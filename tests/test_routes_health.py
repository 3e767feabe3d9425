"""``/model-shelf/health``: the report, disk usage and the one-click fixes."""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp.test_utils import TestClient
from routes_support import JSON, json_of, open_events

from model_shelf.library import Shelf

pytest_plugins = ["routes_fixtures"]


async def post(client: TestClient, path: str, body: dict | None = None, status: int = 200):
    response = await client.post(f"/model-shelf/health{path}", json=body or {}, headers=JSON)
    assert response.status == status, await response.text()
    return await json_of(response)


async def test_report_and_disk(client: TestClient, add_model, api_shelf: Shelf) -> None:
    add_model("a.safetensors", "loras", size=10_000)
    add_model("b.safetensors", "vae", size=20_000)
    report = await json_of(await client.get("/model-shelf/health"))
    assert report["models"] == 2 and report["ok"] is True
    assert {s for s in report} >= {"corrupted", "missing", "duplicates", "orphans", "disk"}
    disk = await json_of(await client.get("/model-shelf/health/disk"))
    assert {t["type"]: t["bytes"] for t in disk["types"]} == {"loras": 10_000, "vae": 20_000}
    assert disk["free_bytes"] > 0


async def test_verify_finds_corruption_and_repair_needs_a_source(
    client: TestClient, add_model, api_shelf: Shelf
) -> None:
    record = add_model("bad.safetensors", "loras", size=8192)
    path = api_shelf.model_path(record)
    stat = path.stat()
    with open(path, "r+b") as handle:  # flip bytes in place, keep size and mtime
        handle.seek(4000)
        handle.write(b"\xff" * 16)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    results = await post(client, "/verify", {"ids": [record.id]})
    assert results[0]["health"] == "corrupted"
    report = await json_of(await client.get("/model-shelf/health"))
    assert report["corrupted"]["count"] == 1 and report["ok"] is False
    repairs = await post(client, "/repair", {"ids": [record.id]})
    assert repairs[0]["ok"] is False and "no source" in repairs[0]["detail"]
    assert (await post(client, "/verify", {"ids": ["nope"]}, status=404))["code"] == (
        "MODEL_NOT_FOUND"
    )


async def test_verify_all_in_background(client: TestClient, add_model) -> None:
    add_model("a.safetensors")
    async with open_events(client) as events:
        started = await post(client, "/verify", {}, status=202)
        assert started["started"] is True
        await events.wait_for(lambda e, d: e == "model-shelf.library-changed")


async def test_dedupe_purge_clean(
    client: TestClient, add_model, api_shelf: Shelf, tmp_path: Path
) -> None:
    first = add_model("one.safetensors", "loras")
    copy = api_shelf.model_path(first).with_name("two.safetensors")
    copy.write_bytes(api_shelf.model_path(first).read_bytes())
    api_shelf.sync(full=True)
    api_shelf.verify(["loras/two.safetensors"])
    groups = await post(client, "/dedupe", {})
    assert groups and groups[0]["keep"] == "loras/one.safetensors"
    merged = await post(client, "/dedupe", {"apply": True})
    assert merged["merged"] == {"loras/one.safetensors": ["loras/two.safetensors"]}
    assert not copy.exists()

    ghost = add_model("ghost.safetensors", "vae")
    api_shelf.model_path(ghost).unlink()
    api_shelf.sync(full=True)
    assert (await post(client, "/purge-ghosts", {"names": ["vae/other"]}))["purged"] == []
    assert (await post(client, "/purge-ghosts", {}))["purged"] == ["vae/ghost.safetensors"]

    cleaned = await post(client, "/clean", {})
    assert cleaned == {"removed": [], "bytes_freed": 0}
    for body in ({"apply": "yes"}, {"keep": "x"}, {"names": [1]}, {"ids": "x"}):
        response = await client.post("/model-shelf/health/dedupe", json=body, headers=JSON)
        assert response.status == 422


async def test_names_without_extension_resolve_in_dedupe(
    client: TestClient, add_model, api_shelf: Shelf
) -> None:
    """``keep`` goes through the one name resolver: a name typed without its extension (and
    without its type folder) finds the model when unique, and lists the candidates when not."""
    first = add_model("one.safetensors", "loras")
    copy = api_shelf.model_path(first).with_name("two.safetensors")
    copy.write_bytes(api_shelf.model_path(first).read_bytes())
    add_model("two.ckpt", "vae", size=4096)
    api_shelf.sync(full=True)
    api_shelf.verify(["loras/two.safetensors"])

    ambiguous = await post(client, "/dedupe", {"apply": True, "keep": ["two"]}, status=409)
    assert ambiguous["code"] == "AMBIGUOUS_MODEL"
    assert "loras/two.safetensors" in ambiguous["message"]
    assert "vae/two.ckpt" in ambiguous["message"]
    assert copy.exists()  # refused before any change

    merged = await post(client, "/dedupe", {"apply": True, "keep": ["loras/two"]})
    assert merged["merged"] == {"loras/two.safetensors": ["loras/one.safetensors"]}
    missing = await post(client, "/dedupe", {"apply": True, "keep": ["thre"]}, status=404)
    assert missing["code"] == "MODEL_NOT_FOUND"


async def test_report_reads_kept_figures_and_sweeps_on_request(
    client: TestClient, add_model, api_shelf: Shelf
) -> None:
    """The report comes from kept figures (and says when the last sweep ran); a sweep (a
    write: another site cannot start one) looks at every file first."""
    record = add_model("a.safetensors", "loras", size=10_000)
    path = api_shelf.model_path(record)
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))  # touched in place: only a sweep notices

    kept = await json_of(await client.get("/model-shelf/health"))
    assert kept["swept_at"] is None and kept["changed"]["count"] == 0
    for refused in (  # a GET or a form post from another page starts no sweep
        client.get("/model-shelf/health?sweep=1"),
        client.post("/model-shelf/health/sweep", data="{}", headers={"Origin": "null"}),
    ):
        await refused
    assert (await json_of(await client.get("/model-shelf/health")))["swept_at"] is None
    response = await client.post("/model-shelf/health/sweep", json={}, headers=JSON)
    swept = await json_of(response)
    assert swept["swept_at"] is not None
    assert [i["name"] for i in swept["changed"]["items"]] == ["loras/a.safetensors"]
    again = await json_of(await client.get("/model-shelf/health"))
    assert again["swept_at"] == swept["swept_at"] and again["changed"]["count"] == 1
    bad = await client.post("/model-shelf/health/sweep", json={"now": True}, headers=JSON)
    assert bad.status == 422
    assert (await json_of(bad))["code"] == "INVALID_REQUEST"
