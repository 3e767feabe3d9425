"""``/model-shelf/import`` (a server-side path) and ``/model-shelf/upload`` (streamed)."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp.test_utils import TestClient
from conftest import tree_snapshot
from remote_server import write_model_file
from routes_support import JSON, json_of

from model_shelf.library import Shelf

pytest_plugins = ["routes_fixtures"]

UPLOAD = {"Content-Type": "application/octet-stream", "X-Model-Shelf": "1"}
MIB = 1024 * 1024


async def test_import_copy_and_link(client: TestClient, api_shelf: Shelf, tmp_path: Path) -> None:
    source = write_model_file(tmp_path / "outside" / "model.safetensors", 64 * 1024)
    outside_before = tree_snapshot(tmp_path / "outside")
    response = await client.post(
        "/model-shelf/import",
        json={"path": str(source), "type": "loras", "name": "sub/copied.safetensors"},
        headers=JSON,
    )
    assert response.status == 201, await response.text()
    record = (await json_of(response))["record"]
    assert (record["type"], record["name"]) == ("loras", "sub/copied.safetensors")
    assert record["hashes"]["sha256"] == "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    response = await client.post(
        "/model-shelf/import",
        json={"path": str(source), "type": "checkpoints", "mode": "link"},
        headers=JSON,
    )
    assert response.status == 201, await response.text()
    linked = api_shelf.root / "checkpoints" / "model.safetensors"
    assert linked.stat().st_ino == source.stat().st_ino
    assert tree_snapshot(tmp_path / "outside") == outside_before  # the source is untouched


async def test_import_refusals(client: TestClient, api_shelf: Shelf, tmp_path: Path) -> None:
    source = write_model_file(tmp_path / "outside" / "model.safetensors", 4096)
    (tmp_path / "outside" / "notes.txt").write_text("not a model")
    before = tree_snapshot(tmp_path)
    cases = [
        ({"path": str(source), "type": "loras", "mode": "move"}, 422, "INVALID_REQUEST"),
        ({"path": "model.safetensors", "type": "loras"}, 422, "INVALID_REQUEST"),
        ({"path": str(tmp_path / "nothing.safetensors"), "type": "loras"}, 404, "SOURCE_NOT_FOUND"),
        ({"path": str(tmp_path / "outside" / "notes.txt"), "type": "loras"}, 422, "NOT_A_MODEL"),
        ({"path": str(source), "type": "../../etc"}, 400, "UNKNOWN_TYPE"),
        ({"path": str(source), "type": "loras", "name": "../../x"}, 400, "UNSAFE_NAME"),
        ({"path": str(source), "type": "loras", "name": "/abs/x"}, 400, "UNSAFE_NAME"),
        ({"path": str(source) + "\x00", "type": "loras"}, 422, "INVALID_REQUEST"),
        ({"path": str(source), "type": 7}, 422, "INVALID_REQUEST"),
    ]
    for body, status, code in cases:
        response = await client.post("/model-shelf/import", json=body, headers=JSON)
        assert response.status == status, (body, await response.text())
        assert (await json_of(response))["code"] == code
    assert tree_snapshot(tmp_path) == before


async def test_import_of_the_whole_disk_or_the_library_folder_is_refused(
    client: TestClient, api_shelf: Shelf, tmp_path: Path
) -> None:
    """The fuzz run's find (issue 11): ``{"path": "/", "type": "loras"}`` walked the whole disk
    (``/proc`` too, whose folders vanish: a FileNotFoundError, a 500) to copy it all in; the
    library's own parent folder was copied into the library."""
    write_model_file(tmp_path / "outside" / "model.safetensors", 4096)
    before = tree_snapshot(tmp_path)
    for path in ["/", str(tmp_path), str(api_shelf.root)]:
        response = await client.post(
            "/model-shelf/import", json={"path": path, "type": "loras"}, headers=JSON
        )
        assert response.status == 422, (path, await response.text())
        assert (await json_of(response))["code"] == "NOT_A_MODEL"
    assert tree_snapshot(tmp_path) == before
    assert api_shelf.list_models() == []


async def _chunks(path: Path, size: int = MIB) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(size):
            yield chunk


async def test_upload_is_streamed_hashed_once_and_placed(
    client: TestClient, api_shelf: Shelf, tmp_path: Path
) -> None:
    size = 192 * MIB
    source = write_model_file(tmp_path / "drop" / "big.safetensors", size, seed=3)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        response = await client.post(
            "/model-shelf/upload?type=checkpoints&name=big.safetensors",
            data=_chunks(source),
            headers={**UPLOAD, "Content-Length": str(size)},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status == 201, await response.text()
    record = (await json_of(response))["record"]
    assert record["hashes"]["sha256"] == f"sha256:{digest}"
    assert record["hash_state"] == "hashed"
    placed = api_shelf.root / "checkpoints" / "big.safetensors"
    assert placed.stat().st_size == size
    # Never the whole body in memory: a few write batches at most (client side included).
    assert peak < 64 * MIB, (
        f"peak Python memory {peak / MIB:.0f} MiB for a {size // MIB} MiB upload"
    )
    assert list(api_shelf.layout.partial_dir.iterdir()) == []  # the temporary folder is gone


async def test_upload_refusals_leave_nothing(
    client: TestClient, api_shelf: Shelf, tmp_path: Path
) -> None:
    body = write_model_file(tmp_path / "drop" / "x.safetensors", 4096).read_bytes()
    before = tree_snapshot(tmp_path)
    cases = [
        ("?type=loras&name=x.safetensors", {"Content-Type": "application/octet-stream"}, 415),
        ("?type=loras&name=x.safetensors", {**UPLOAD, "Content-Type": "text/plain"}, 415),
        ("?type=loras&name=x.safetensors", {**UPLOAD, "Content-Type": "multipart/form-data"}, 415),
        ("?type=loras&name=../../x.safetensors", UPLOAD, 400),
        ("?type=loras&name=/etc/x.safetensors", UPLOAD, 400),
        ("?type=loras&name=notes.txt", UPLOAD, 422),
        ("?type=../loras&name=x.safetensors", UPLOAD, 400),
        ("?type=loras", UPLOAD, 422),
        ("?type=loras&name=x.safetensors&extra=1", UPLOAD, 422),
    ]
    for query, headers, status in cases:
        response = await client.post(f"/model-shelf/upload{query}", data=body, headers=headers)
        assert response.status == status, (query, await response.text())
    # a body that is not a model: refused after arrival, and the temporary removed
    response = await client.post(
        "/model-shelf/upload?type=loras&name=fake.safetensors", data=b"x" * 5000, headers=UPLOAD
    )
    assert response.status == 422, await response.text()
    assert (await json_of(response))["code"] == "CORRUPT_FILE"
    assert tree_snapshot(tmp_path) == before
    assert list(api_shelf.layout.partial_dir.iterdir()) == []


async def test_upload_name_clash(client: TestClient, api_shelf: Shelf, tmp_path: Path) -> None:
    first = write_model_file(tmp_path / "a.safetensors", 4096, seed=1).read_bytes()
    second = write_model_file(tmp_path / "b.safetensors", 4096, seed=2).read_bytes()
    url = "/model-shelf/upload?type=loras&name=same.safetensors"
    assert (await client.post(url, data=first, headers=UPLOAD)).status == 201
    response = await client.post(url, data=second, headers=UPLOAD)
    assert response.status == 409
    assert (await json_of(response))["code"] == "NAME_EXISTS"
    assert (api_shelf.root / "loras" / "same.safetensors").read_bytes() == first
    assert list(api_shelf.layout.partial_dir.iterdir()) == []
