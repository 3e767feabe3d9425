"""``/model-shelf/downloads`` against a real file server on 127.0.0.1, with progress events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiohttp.test_utils import TestClient
from remote_server import RemoteServer, write_model_file
from routes_support import JSON, json_of, open_events

from model_shelf.library import Shelf
from model_shelf.library.downloads.tasks import DownloadTask, TaskState

pytest_plugins = ["routes_fixtures"]

MIB = 1024 * 1024


async def add(client: TestClient, **body: object) -> dict:
    response = await client.post("/model-shelf/downloads", json=body, headers=JSON)
    assert response.status == 201, await response.text()
    return await json_of(response)


async def act(client: TestClient, task_id: str, action: str) -> dict:
    response = await client.post(
        f"/model-shelf/downloads/{task_id}/{action}", json={}, headers=JSON
    )
    assert response.status == 200, await response.text()
    return await json_of(response)


async def test_download_progress_pause_resume_done(
    client: TestClient, remote: RemoteServer, api_shelf: Shelf, tmp_path: Path
) -> None:
    size = 8 * MIB
    served = remote.serve(
        "model.safetensors",
        write_model_file(tmp_path / "remote" / "model.safetensors", size),
        throttle_bytes_per_second=4 * MIB,
    )
    async with open_events(client) as events:
        task = await add(client, source=remote.url("model.safetensors"), type="loras")
        assert task["state"] in ("queued", "downloading")
        moving = await events.wait_for(
            lambda e, d: (
                e == "model-shelf.task" and d["task_id"] == task["id"] and d["bytes_done"] >= MIB
            )
        )
        assert moving["total_bytes"] == size and moving["speed_bytes_per_second"] > 0
        page = await json_of(await client.get("/model-shelf/downloads"))
        listed = page["items"]
        assert (page["total"], page["offset"]) == (1, 0)
        assert [t["id"] for t in listed] == [task["id"]]
        assert listed[0]["bytes_done"] >= MIB and listed[0]["total_bytes"] == size

        await act(client, task["id"], "pause")
        paused = await events.task(task["id"], "paused", seen=False)
        assert paused["bytes_done"] < size
        await act(client, task["id"], "resume")
        done = await events.task(task["id"], "done")
        assert done["model_name"] == "loras/model.safetensors"
        await events.wait_for(lambda e, d: e == "model-shelf.library-changed", seen=True)
    page = await json_of(await client.get("/model-shelf/models?text=model"))
    assert [m["name"] for m in page["items"]] == ["model.safetensors"]
    assert (api_shelf.root / "loras" / "model.safetensors").stat().st_size == size
    # resumed with Range: about one transfer in all, not two
    assert served.full_transfers < 1.5
    stats = await json_of(await client.get("/model-shelf/stats"))
    assert stats["bytes_downloaded"] >= MIB
    # the same source again: the library has it, nothing is fetched twice
    again = await add(client, source=remote.url("model.safetensors"), type="loras")
    assert again["state"] == "done"


async def test_cancel_retry_and_all(
    client: TestClient, remote: RemoteServer, api_shelf: Shelf, tmp_path: Path
) -> None:
    for n in range(2):
        remote.serve(
            f"m{n}.safetensors",
            write_model_file(tmp_path / "remote" / f"m{n}.safetensors", 2 * MIB, seed=n),
            hold_at_byte=MIB,
        )
    async with open_events(client) as events:
        first = await add(client, source=remote.url("m0.safetensors"), type="loras")
        second = await add(client, source=remote.url("m1.safetensors"), type="loras")
        paused = await json_of(
            await client.post("/model-shelf/downloads/all/pause", json={}, headers=JSON)
        )
        assert {t["id"] for t in paused} == {first["id"], second["id"]}
        for task in (first, second):
            state = (await json_of(await client.get(f"/model-shelf/downloads/{task['id']}")))[
                "state"
            ]
            if state != "paused":
                await events.task(task["id"], "paused")
        cancelled = await act(client, first["id"], "cancel")
        assert cancelled["state"] == "cancelled"
        assert not (api_shelf.layout.partial_dir / f"{first['id']}.part").exists()
        for served in remote.files.values():
            served.behaviour.hold_at_byte = None
            served.behaviour.release.set()
        retried = await act(client, first["id"], "retry")  # a cancelled task starts afresh
        assert retried["id"] != first["id"]
        await json_of(await client.post("/model-shelf/downloads/all/resume", json={}, headers=JSON))
        await events.task(retried["id"], "done")
        await events.task(second["id"], "done")


async def test_bad_downloads(client: TestClient, api_shelf: Shelf) -> None:
    cases = [
        ({"source": "not a source"}, 400, "INVALID_SOURCE"),
        ({"source": "http://example.com/x.safetensors"}, 400, "INSECURE_URL"),
        ({"source": "https://example.com/x.safetensors", "type": "../x"}, 400, "UNKNOWN_TYPE"),
        ({"source": "https://example.com/x.safetensors", "name": "../../x"}, 400, "UNSAFE_NAME"),
        ({"source": "https://example.com/x.safetensors", "sha256": "abc"}, 400, "INVALID_SOURCE"),
        ({"source": ""}, 422, "INVALID_REQUEST"),
        ({"source": ["x"]}, 422, "INVALID_REQUEST"),
        ({"source": "https://example.com/x", "priority": 10**9}, 422, "INVALID_REQUEST"),
    ]
    for body, status, code in cases:
        response = await client.post("/model-shelf/downloads", json=body, headers=JSON)
        assert response.status == status, (body, await response.text())
        assert (await json_of(response))["code"] == code
    assert api_shelf.downloads.list() == []
    for path in ("/model-shelf/downloads/nope/pause", "/model-shelf/downloads/nope/retry"):
        response = await client.post(path, json={}, headers=JSON)
        assert response.status == 404
        assert (await json_of(response))["code"] == "TASK_NOT_FOUND"
    response = await client.post("/model-shelf/downloads/nope/explode", json={}, headers=JSON)
    assert response.status == 404
    assert (await json_of(await client.get("/model-shelf/downloads/nope")))["code"] == (
        "TASK_NOT_FOUND"
    )


async def test_the_task_list_is_paged_and_its_finished_history_bounded(
    client: TestClient, api_shelf: Shelf
) -> None:
    store = api_shelf.downloads.store
    for n in range(30):
        store.insert(
            DownloadTask(
                source=f"https://example.com/{n}.safetensors",
                source_key=f"url:https://example.com/{n}.safetensors",
                source_kind="url",
                state=TaskState.DONE,
                finished_at=datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=n),
            )
        )
    page = await json_of(await client.get("/model-shelf/downloads?offset=0&limit=10"))
    assert (page["total"], page["offset"], page["limit"], len(page["items"])) == (30, 0, 10, 10)
    assert page["items"][0]["source"] == "https://example.com/29.safetensors"  # newest first
    last = await json_of(await client.get("/model-shelf/downloads?offset=25&limit=10"))
    assert [t["source"] for t in last["items"]][-1] == "https://example.com/0.safetensors"
    for bad in ("limit=0", "limit=100000", "offset=-1", "limit=x", "extra=1"):
        response = await client.get(f"/model-shelf/downloads?{bad}")
        assert response.status == 422, bad
        assert (await json_of(response))["code"] == "INVALID_REQUEST"

    # Each new download forgets the oldest finished ones beyond the setting.
    api_shelf.downloads.settings = api_shelf.downloads.settings.model_copy(
        update={"finished_tasks_kept": 5}
    )
    task = await add(client, source="http://127.0.0.1:9/new.safetensors", type="loras")
    page = await json_of(await client.get("/model-shelf/downloads"))
    assert page["total"] == 6
    assert page["items"][0]["id"] == task["id"]
    assert [t["source"] for t in page["items"][1:]] == [
        f"https://example.com/{n}.safetensors" for n in (29, 28, 27, 26, 25)
    ]
