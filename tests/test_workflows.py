"""Workflows that carry their own models: stamp, lock, fetch-lock (library, CLI and HTTP), with
real library roots and models downloaded from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from downloads_support import (
    LOOPBACK_FETCHES,
    LOOPBACK_FETCHES_ENV,
    MIB,
    cli_command,
    quick_env,
    quick_settings,
)
from remote_server import RemoteServer, sha256_of, write_model_file
from routes_support import JSON, json_of

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.autofetch import Availability, LibraryResolver, plan
from model_shelf.library.errors import InvalidWorkflowError
from model_shelf.library.records import SourceRef
from model_shelf.library.workflows import (
    Lockfile,
    ModelEntry,
    lock,
    model_entries,
    read_document,
    read_lockfile,
    stamp,
    widget_models,
)

pytest_plugins = ["routes_fixtures"]

LOOPBACK = {"allowed_fetch_hosts": LOOPBACK_FETCHES}
"""A lockfile is someone else's, like a workflow: its sources on `remote` need the setting."""

REMOTE_MODELS = {  # name -> (type, size, seed)
    "base.safetensors": ("checkpoints", 3 * MIB, 1),
    "detail.safetensors": ("loras", 1 * MIB, 2),
    "upscale.safetensors": ("upscale_models", 1 * MIB, 3),
}


def ui_node(node_id: int, node_type: str, widgets: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": node_type,
        "pos": [0, 100 * node_id],
        "size": [300, 80],
        "flags": {},
        "order": node_id,
        "mode": extra.pop("mode", 0),
        "properties": extra.pop("properties", {"Node name for S&R": node_type}),
        "widgets_values": widgets,
        **extra,
    }


def ui_workflow() -> dict[str, Any]:
    """A workflow as the page saves it (schema 0.4), with a subgraph."""
    return {
        "last_node_id": 6,
        "last_link_id": 0,
        "nodes": [
            ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
            ui_node(
                2,
                "LoraLoader",
                ["detail.safetensors", 0.8, 1.0],
                properties={
                    "models": [
                        {
                            "name": "detail.safetensors",
                            "url": "https://old.example/detail.safetensors",
                            "directory": "loras",
                        },
                        {
                            "name": "other.safetensors",
                            "url": "https://x.example/o",
                            "directory": "loras",
                        },
                    ]
                },
            ),
            ui_node(3, "VAELoader", ["local.safetensors"]),
            ui_node(4, "CheckpointLoaderSimple", ["missing.safetensors"], mode=4),  # bypassed
            ui_node(5, "SomePack Upscaler", ["upscale.safetensors", 2.0, "lanczos"]),
        ],
        "links": [],
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "definitions": {
            "subgraphs": [
                {
                    "id": "5a2b1c3d-0000-4000-8000-000000000001",
                    "name": "detailer",
                    "nodes": [ui_node(7, "LoraLoaderModelOnly", ["detail.safetensors", 0.5])],
                    "links": [],
                }
            ]
        },
        "version": 0.4,
    }


def api_prompt() -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "2": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["1", 0],
                "clip": ["1", 1],
                "lora_name": "detail.safetensors",
                "strength_model": 0.8,
                "strength_clip": 1.0,
            },
        },
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "local.safetensors"}},
    }


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[RemoteServer]:
    with RemoteServer() as server:
        for name, (_type, size, seed) in REMOTE_MODELS.items():
            server.serve(name, write_model_file(tmp_path / "remote" / name, size, seed))
        yield server


@pytest.fixture
def library(tmp_path: Path, remote: RemoteServer) -> Iterator[Shelf]:
    """A library whose models came from `remote` (so they have sources), plus one local file."""
    with Shelf.open(tmp_path / "library", quick_settings()) as shelf:
        tasks = [
            shelf.downloads.add(remote.url(name), model_type)
            for name, (model_type, _size, _seed) in REMOTE_MODELS.items()
        ]
        ended = shelf.downloads.run_foreground([t.id for t in tasks])
        assert {t.state.value for t in ended} == {"done"}
        local = write_model_file(tmp_path / "incoming" / "local.safetensors", 1 * MIB, seed=9)
        shelf.import_model(local, "vae", ImportMode.MOVE)
        yield shelf


def sha_hex(tmp_path: Path, name: str) -> str:
    return sha256_of(tmp_path / "remote" / name)


def selected_by_the_page(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The frontend's ``getSelectedModelsMetadata``: entries whose name is a widget value."""
    values = {v for v in node.get("widgets_values", []) if isinstance(v, str) and v.strip()}
    return [m for m in node.get("properties", {}).get("models", []) if m["name"] in values]


# -- stamp ---------------------------------------------------------------------------------------


def test_stamp_writes_what_the_page_and_other_users_need(
    library: Shelf, remote: RemoteServer, tmp_path: Path
) -> None:
    original = ui_workflow()
    report = stamp(original, library)

    assert original == ui_workflow()  # a stamped copy; the input is left alone
    assert report.stamped == [
        "checkpoints/base.safetensors",
        "loras/detail.safetensors",
        "upscale_models/upscale.safetensors",
    ]
    assert report.no_source == ["vae/local.safetensors"]
    assert report.not_in_library == ["checkpoints/missing.safetensors"]
    nodes = {n["id"]: n for n in report.workflow["nodes"]}
    assert selected_by_the_page(nodes[1]) == [
        {
            "name": "base.safetensors",
            "url": remote.url("base.safetensors"),
            "directory": "checkpoints",
            "hash": sha_hex(tmp_path, "base.safetensors"),
            "hash_type": "sha256",
        }
    ]
    lora = nodes[2]["properties"]["models"]  # the stale entry replaced, the other kept
    assert [m["url"] for m in lora] == ["https://x.example/o", remote.url("detail.safetensors")]
    assert selected_by_the_page(nodes[5])[0]["directory"] == "upscale_models"  # any node
    assert "models" not in nodes[3]["properties"]  # no source: nothing to point at
    inner = report.workflow["definitions"]["subgraphs"][0]["nodes"][0]
    assert selected_by_the_page(inner)[0]["name"] == "detail.safetensors"
    for entry in model_entries(report.workflow):  # all valid zModelFile entries
        assert ModelEntry.model_validate(entry.model_dump()).url.startswith("http")
    assert stamp(report.workflow, library).workflow == report.workflow  # idempotent


def test_a_stamped_workflow_fetches_its_models_on_another_machine(
    library: Shelf, remote: RemoteServer, tmp_path: Path
) -> None:
    stamped = stamp(ui_workflow(), library).workflow
    body = {"prompt": api_prompt(), "extra_data": {"extra_pnginfo": {"workflow": stamped}}}
    with Shelf.open(tmp_path / "elsewhere", quick_settings()) as other:
        made = plan(body, other, LibraryResolver(other))
    by_node = {p.input.node_id: p for p in made.inputs}
    assert by_node["1"].availability is Availability.FETCH
    fetch = by_node["1"].fetch
    assert fetch is not None and fetch.source == remote.url("base.safetensors")
    assert fetch.sha256 == f"sha256:{sha_hex(tmp_path, 'base.safetensors')}"
    assert by_node["2"].availability is Availability.FETCH
    assert by_node["3"].availability is Availability.UNAVAILABLE  # it had no source to stamp


def test_only_ui_workflows_can_be_stamped(library: Shelf) -> None:
    with pytest.raises(InvalidWorkflowError, match="use lock"):
        stamp(api_prompt(), library)
    with pytest.raises(InvalidWorkflowError, match="not a ComfyUI workflow"):
        stamp({"hello": "world"}, library)


def test_documents_are_recognised_in_every_shape() -> None:
    workflow = ui_workflow()
    assert read_document(workflow).workflow is workflow
    body = {"prompt": api_prompt(), "extra_data": {"extra_pnginfo": {"workflow": workflow}}}
    document = read_document(body)
    assert document.prompt == api_prompt() and document.workflow is workflow
    assert read_document(api_prompt()).workflow is None
    found = {(w.value, w.model_type) for w in widget_models(workflow)}
    assert ("missing.safetensors", "checkpoints") in found  # bypassed nodes still count
    assert ("upscale.safetensors", None) in found  # a pack's node: type from elsewhere
    assert ("lanczos", None) not in found


# -- lock and fetch-lock ---------------------------------------------------------------------------


def test_lock_lists_the_exact_models(library: Shelf, remote: RemoteServer, tmp_path: Path) -> None:
    report = lock(ui_workflow(), library)
    assert report.missing == ["checkpoints/missing.safetensors"]
    models = [(m.type, m.name, m.size) for m in report.lockfile.models]
    assert models == [
        ("checkpoints", "base.safetensors", 3 * MIB),
        ("loras", "detail.safetensors", 1 * MIB),
        ("upscale_models", "upscale.safetensors", 1 * MIB),
        ("vae", "local.safetensors", 1 * MIB),
    ]
    base = report.lockfile.models[0]
    assert base.sha256 == f"sha256:{sha_hex(tmp_path, 'base.safetensors')}"
    assert base.sources == [remote.url("base.safetensors")]
    assert report.lockfile.models[3].sources == []
    # from an API prompt (or a /prompt body): what actually runs
    from_prompt = lock({"prompt": api_prompt()}, library).lockfile
    assert [m.name for m in from_prompt.models] == [
        "base.safetensors",
        "detail.safetensors",
        "local.safetensors",
    ]
    text = report.lockfile.model_dump_json()
    assert read_lockfile(json.loads(text)) == report.lockfile


def test_fetch_lock_gets_the_same_files_elsewhere_once(
    library: Shelf, remote: RemoteServer, tmp_path: Path
) -> None:
    lockfile = lock(ui_workflow(), library).lockfile
    sent = {name: f.bytes_sent for name, f in remote.files.items()}
    with Shelf.open(tmp_path / "elsewhere", quick_settings(**LOOPBACK)) as other:
        results = other.fetch_lock(lockfile)
        states = {r.model: r.state for r in results}
        assert states == {
            "checkpoints/base.safetensors": "done",
            "loras/detail.safetensors": "done",
            "upscale_models/upscale.safetensors": "done",
            "vae/local.safetensors": "unavailable",
        }
        for model in lockfile.models[:3]:
            assert other.find(f"{model.type}/{model.name}").sha256 == model.sha256
        again = other.fetch_lock(lockfile)
        assert [r.state for r in again[:3]] == ["present"] * 3
    for name, served in remote.files.items():  # one transfer each, none for "present"
        assert served.bytes_sent - sent[name] == served.size


def test_fetch_lock_refuses_a_different_file(
    library: Shelf, remote: RemoteServer, tmp_path: Path
) -> None:
    lockfile = Lockfile.model_validate(
        {
            "models": [
                {
                    "name": "base.safetensors",
                    "type": "checkpoints",
                    "size": 3 * MIB,
                    "sha256": "ab" * 32,  # hand-written: hex without its prefix
                    "sources": [remote.url("base.safetensors")],
                }
            ]
        }
    )
    with Shelf.open(tmp_path / "elsewhere", quick_settings(**LOOPBACK)) as other:
        (result,) = other.fetch_lock(lockfile)
        assert result.state == "failed" and "HASH_MISMATCH" in (result.message or "")
        assert other.list_models() == []
    with pytest.raises(InvalidWorkflowError, match="lockfile"):
        read_lockfile({"version": 2, "models": []})


# -- the CLI ---------------------------------------------------------------------------------------


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(root, *args),
        env=quick_env(**LOOPBACK_FETCHES_ENV),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_stamp_lock_and_fetch_lock(
    library: Shelf, remote: RemoteServer, tmp_path: Path
) -> None:
    workflow_path = tmp_path / "workflow.json"
    workflow_path.write_text(json.dumps(ui_workflow()))
    stamped_path = tmp_path / "stamped.json"

    stamped = cli(library.root, "stamp", str(workflow_path), "-o", str(stamped_path))
    assert stamped.returncode == 0, stamped.stderr
    assert (
        "3 models stamped" in stamped.stdout and "no source vae/local.safetensors" in stamped.stdout
    )
    assert json.loads(workflow_path.read_text()) == ui_workflow()  # -o: the input is kept
    assert json.loads(stamped_path.read_text()) == stamp(ui_workflow(), library).workflow
    in_place = cli(library.root, "stamp", str(workflow_path), "--json")
    assert json.loads(in_place.stdout)["stamped"][0] == "checkpoints/base.safetensors"
    assert json.loads(workflow_path.read_text()) == json.loads(stamped_path.read_text())

    lock_path = tmp_path / "workflow.lock.json"
    locked = cli(library.root, "lock", str(workflow_path), "-o", str(lock_path))
    assert locked.returncode == 1  # incomplete: one model is not in the library
    assert "checkpoints/missing.safetensors is not in the library" in locked.stderr
    assert "locked 4 models" in locked.stdout
    printed = cli(library.root, "lock", str(stamped_path))
    assert json.loads(printed.stdout) == json.loads(lock_path.read_text())

    elsewhere = tmp_path / "elsewhere"
    queued = cli(elsewhere, "fetch-lock", str(lock_path), "--no-wait", "--json")
    assert queued.returncode == 2  # the local-only model cannot be fetched
    assert [r["state"] for r in json.loads(queued.stdout)] == ["queued"] * 3 + ["unavailable"]
    assert "error [FETCH_FAILED]: vae/local.safetensors" in queued.stderr
    fetched = cli(elsewhere, "fetch-lock", str(lock_path))
    lines = fetched.stdout.splitlines()
    assert lines[0].split() == ["done", "checkpoints/base.safetensors"], fetched.stdout
    assert cli(elsewhere, "show", "upscale.safetensors").returncode == 0

    bad = cli(library.root, "stamp", str(tmp_path / "nope.json"))
    assert bad.returncode == 2 and bad.stderr.startswith("error [INVALID_WORKFLOW]: cannot read")


# -- the HTTP API ----------------------------------------------------------------------------------


@pytest.fixture
def with_sources(api_shelf: Shelf, add_model: Any) -> Shelf:
    add_model(
        "base.safetensors",
        "checkpoints",
        sources=[SourceRef(kind="url", url="https://example.com/base.safetensors")],
    )
    add_model("local.safetensors", "vae")
    return api_shelf


async def test_routes_stamp_and_lock(client: Any, with_sources: Shelf) -> None:
    workflow = ui_workflow()
    response = await client.post(
        "/api/model-shelf/workflows/stamp", json={"workflow": workflow}, headers=JSON
    )
    assert response.status == 200
    view = await json_of(response)
    assert view["stamped"] == ["checkpoints/base.safetensors"]
    assert view["no_source"] == ["vae/local.safetensors"]
    node = view["workflow"]["nodes"][0]
    assert node["properties"]["models"][0]["url"] == "https://example.com/base.safetensors"

    response = await client.post(
        "/model-shelf/workflows/lock", json={"workflow": {"prompt": api_prompt()}}, headers=JSON
    )
    view = await json_of(response)
    assert [m["name"] for m in view["lockfile"]["models"]] == [
        "base.safetensors",
        "local.safetensors",
    ]
    assert view["missing"] == ["loras/detail.safetensors"]


async def test_routes_refuse_what_they_should(client: Any, with_sources: Shelf) -> None:
    url = "/api/model-shelf/workflows/stamp"
    body = {"workflow": ui_workflow()}
    cases = [
        ({"json": body, "headers": {**JSON, "Origin": "https://evil.example"}}, 403, "CROSS_SITE"),
        ({"data": json.dumps(body), "headers": {"Content-Type": "text/plain"}}, 415, None),
        ({"json": {"workflow": []}, "headers": JSON}, 422, "INVALID_REQUEST"),
        ({"json": {"workflow": {"a": 1}}, "headers": JSON}, 400, "INVALID_WORKFLOW"),
    ]
    for kwargs, status, code in cases:
        response = await client.post(url, **kwargs)
        assert response.status == status, await response.text()
        if code is not None:
            assert (await json_of(response))["code"] == code
    big = copy.deepcopy(body)
    big["workflow"]["extra"]["notes"] = "x" * (300 * 1024)  # larger than other routes take
    response = await client.post(url, json=big, headers=JSON)
    assert response.status == 200
