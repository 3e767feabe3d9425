"""``/model-shelf/models``: search, filters, sort, pages, detail, edit, delete, previews."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from conftest import tree_snapshot
from routes_support import JSON, json_of

from model_shelf.library import Shelf
from model_shelf.library.layout import MODEL_TYPES
from model_shelf.library.records import Health

pytest_plugins = ["routes_fixtures"]


@pytest.fixture
def library(add_model, api_shelf: Shelf) -> dict[str, str]:
    """Five models in three types; one tagged, one pickle, one corrupted. name -> id."""
    ids = {}
    ids["anime"] = add_model("styles/anime-style.safetensors", "loras").id
    ids["sdxl"] = add_model("sdxl_base.safetensors", "checkpoints", size=9000).id
    ids["detail"] = add_model("detail-tweaker.safetensors", "loras", size=2048).id
    ids["vae"] = add_model("sdxl_vae.safetensors", "vae").id
    record = api_shelf.get(ids["detail"])
    api_shelf.edit_model(record.id, tags=["Detail", "realism"])
    broken = api_shelf.get(ids["vae"])
    broken.health = Health.CORRUPTED
    api_shelf.catalog.save(broken)
    pickle = Path(api_shelf.root / "checkpoints" / "old.ckpt")
    pickle.write_bytes(b"PK\x03\x04" + bytes(100))
    ids["old"] = api_shelf.import_model(pickle, "checkpoints", name="legacy/old.ckpt").id
    pickle.unlink()
    return ids


async def names(client: TestClient, query: str = "") -> list[str]:
    response = await client.get(f"/model-shelf/models{query}")
    assert response.status == 200, await response.text()
    page = await json_of(response)
    return [f"{m['type']}/{m['name']}" for m in page["items"]]


async def test_list_search_filter_sort(client: TestClient, library: dict[str, str]) -> None:
    assert len(await names(client)) == 5
    # prefix search, every word must match
    assert set(await names(client, "?text=sdx")) == {
        "checkpoints/sdxl_base.safetensors",
        "vae/sdxl_vae.safetensors",
    }
    assert await names(client, "?text=sdx+va") == ["vae/sdxl_vae.safetensors"]
    assert await names(client, "?text=anim") == ["loras/styles/anime-style.safetensors"]
    # filters
    assert await names(client, "?type=checkpoints&sort=name") == [
        "checkpoints/legacy/old.ckpt",
        "checkpoints/sdxl_base.safetensors",
    ]
    assert await names(client, "?tag=detail") == ["loras/detail-tweaker.safetensors"]
    assert await names(client, "?status=corrupted") == ["vae/sdxl_vae.safetensors"]
    assert await names(client, "?status=pickle") == ["checkpoints/legacy/old.ckpt"]
    assert await names(client, "?text=sdxl&status=verified") == [
        "checkpoints/sdxl_base.safetensors"
    ]
    # sort and pages
    by_size = await names(client, "?sort=size")
    assert by_size[0] == "checkpoints/sdxl_base.safetensors"
    page = await json_of(await client.get("/model-shelf/models?sort=name&offset=1&limit=2"))
    assert page["total"] == 5 and page["offset"] == 1 and len(page["items"]) == 2
    every = await names(client, "?sort=name")
    assert [f"{m['type']}/{m['name']}" for m in page["items"]] == every[1:3]
    # badges come with each row
    rows = {m["name"]: m for m in (await json_of(await client.get("/model-shelf/models")))["items"]}
    assert rows["legacy/old.ckpt"]["pickle"] is True
    assert rows["sdxl_vae.safetensors"]["status"] == "corrupted"
    assert rows["detail-tweaker.safetensors"]["tags"] == ["Detail", "realism"]


async def test_type_folders_are_the_librarys(client: TestClient) -> None:
    response = await client.get("/model-shelf/types")
    assert response.status == 200
    assert (await json_of(response))["types"] == list(MODEL_TYPES)


async def test_facets(client: TestClient, library: dict[str, str]) -> None:
    facets = await json_of(await client.get("/api/model-shelf/models/facets"))
    assert facets["total"] == 5
    assert {f["value"]: f["count"] for f in facets["types"]} == {
        "checkpoints": 2,
        "loras": 2,
        "vae": 1,
    }
    assert {f["value"] for f in facets["tags"]} == {"Detail", "realism"}
    statuses = {f["value"]: f["count"] for f in facets["statuses"]}
    assert statuses["corrupted"] == 1 and statuses["pickle"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "?limit=0",
        "?limit=100000",
        "?offset=-1",
        "?sort=random",
        "?status=great",
        "?unknown=1",
        "?limit=abc",
        "?text=" + "x" * 500,
    ],
)
async def test_list_bad_queries_are_422(client: TestClient, query: str) -> None:
    response = await client.get(f"/model-shelf/models{query}")
    assert response.status == 422
    assert (await json_of(response))["code"] == "INVALID_REQUEST"


async def test_unknown_type_and_odd_text(client: TestClient, library: dict[str, str]) -> None:
    response = await client.get("/model-shelf/models?type=../../etc")
    assert response.status == 400
    assert (await json_of(response))["code"] == "UNKNOWN_TYPE"
    for text in ['"', "*", "NEAR(", "a OR b", "'; DROP TABLE models; --", "\u0000"]:
        response = await client.get("/model-shelf/models", params={"text": text})
        assert response.status == 200, (text, await response.text())


async def test_detail_and_previews(
    client: TestClient, library: dict[str, str], api_shelf: Shelf
) -> None:
    record = api_shelf.get(library["sdxl"])
    preview = api_shelf.model_path(record).with_name("sdxl_base.preview.png")
    preview.write_bytes(b"\x89PNG\r\n\x1a\n fake")
    detail = await json_of(await client.get(f"/model-shelf/models/{library['sdxl']}"))
    assert detail["record"]["id"] == library["sdxl"]
    assert detail["record"]["hashes"]["sha256"].startswith("sha256:")
    assert detail["path"] == str(api_shelf.model_path(record))
    assert detail["status"] == "verified"
    assert detail["previews"] == [f"/model-shelf/models/{library['sdxl']}/previews/0"]
    image = await client.get("/api" + detail["previews"][0])
    assert image.status == 200 and await image.read() == preview.read_bytes()
    for bad in ("1", "-1", "..", "x"):
        response = await client.get(f"/model-shelf/models/{library['sdxl']}/previews/{bad}")
        assert response.status == 404


async def test_unknown_ids_are_404(client: TestClient) -> None:
    for method, path, body in [
        ("GET", "/model-shelf/models/0123456789abcdef", None),
        ("GET", "/model-shelf/models/..%2F..%2Fetc%2Fpasswd", None),
        ("PATCH", "/model-shelf/models/nope", {"tags": []}),
        ("DELETE", "/model-shelf/models/nope", {"confirm": True}),
        ("GET", "/model-shelf/models/nope/previews/0", None),
    ]:
        response = await client.request(method, path, json=body, headers=JSON)
        assert response.status == 404, (method, path, await response.text())
        assert (await json_of(response))["code"] in ("MODEL_NOT_FOUND", "NOT_FOUND")


async def test_rename_keeps_identity_and_old_name(
    client: TestClient, library: dict[str, str], api_shelf: Shelf
) -> None:
    model_id = library["detail"]
    old_path = api_shelf.model_path(api_shelf.get(model_id))
    response = await client.patch(
        f"/model-shelf/models/{model_id}", json={"name": "sd15/detailer"}, headers=JSON
    )
    assert response.status == 200, await response.text()
    record = (await json_of(response))["record"]
    assert record["id"] == model_id
    assert record["name"] == "sd15/detailer.safetensors"  # the extension is kept
    assert "detail-tweaker.safetensors" in record["aliases"]
    assert not old_path.exists()
    new_path = api_shelf.root / "loras" / "sd15" / "detailer.safetensors"
    assert new_path.is_file()
    assert api_shelf.find("detail-tweaker.safetensors", "loras").id == model_id


async def test_rename_refuses_clash_and_traversal(
    client: TestClient, library: dict[str, str], api_shelf: Shelf, tmp_path: Path
) -> None:
    before = tree_snapshot(tmp_path)
    model_id = library["detail"]
    cases = {
        "styles/anime-style.safetensors": (409, "NAME_EXISTS"),
        "../../escape.safetensors": (400, "UNSAFE_NAME"),
        "/etc/passwd": (400, "UNSAFE_NAME"),
        "C:\\Windows\\x.safetensors": (400, "UNSAFE_NAME"),
        "sub/.shelf/x.safetensors": (400, "UNSAFE_NAME"),
        "x.safetensors.shelf.json": (400, "UNSAFE_NAME"),
    }
    for name, (status, code) in cases.items():
        response = await client.patch(
            f"/model-shelf/models/{model_id}", json={"name": name}, headers=JSON
        )
        assert response.status == status, (name, await response.text())
        assert (await json_of(response))["code"] == code
    for body in ({"name": ""}, {"name": 5}, {"tags": "x"}, {"aliases": [None]}, {"id": "x"}):
        response = await client.patch(f"/model-shelf/models/{model_id}", json=body, headers=JSON)
        assert response.status == 422, body
    assert tree_snapshot(tmp_path) == before


async def test_tags_and_aliases(client: TestClient, library: dict[str, str]) -> None:
    model_id = library["anime"]
    response = await client.patch(
        f"/model-shelf/models/{model_id}",
        json={"tags": [" Anime ", "anime", "style"], "aliases": ["anime.safetensors"]},
        headers=JSON,
    )
    record = (await json_of(response))["record"]
    assert record["tags"] == ["Anime", "style"]
    assert record["aliases"] == ["anime.safetensors"]
    assert await names(client, "?tag=style") == ["loras/styles/anime-style.safetensors"]
    response = await client.patch(
        f"/model-shelf/models/{model_id}", json={"aliases": ["../x"]}, headers=JSON
    )
    assert (await json_of(response))["code"] == "UNSAFE_NAME"
    response = await client.patch(
        f"/model-shelf/models/{model_id}", json={"tags": ["bad\nline"]}, headers=JSON
    )
    assert response.status == 400


async def test_delete_needs_confirmation(
    client: TestClient, library: dict[str, str], api_shelf: Shelf
) -> None:
    model_id = library["anime"]
    path = api_shelf.model_path(api_shelf.get(model_id))
    response = await client.delete(f"/model-shelf/models/{model_id}", json={}, headers=JSON)
    assert response.status == 400
    assert (await json_of(response))["code"] == "CONFIRMATION_REQUIRED"
    assert path.exists()
    response = await client.delete(
        f"/model-shelf/models/{model_id}", json={"confirm": True}, headers=JSON
    )
    assert response.status == 200
    assert (await json_of(response))["removed"] == "loras/styles/anime-style.safetensors"
    assert not path.exists()
    assert not api_shelf.layout.sidecar_for(path).exists()
    assert "anime-style" in api_shelf.layout.deletions_log.read_text()
    response = await client.get(f"/model-shelf/models/{model_id}")
    assert response.status == 404
