"""Auto-fetch inside a (stand-in) ComfyUI 0.3.64: a ``/prompt`` body goes through the on-prompt
handler Model Shelf registered, then through ComfyUI's validation and execution (stand-ins of
``execution.py``), with the library's download engine running in ComfyUI's event loop and the
models served by a real HTTP server on 127.0.0.1.

Also: two real processes asking for the same missing model share one download.
"""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from comfy_stubs import Comfy, core_nodes, execution, write_model
from downloads_support import LOOPBACK_FETCHES_ENV, MIB, quick_env, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file

from model_shelf.comfy_entry import ComfyRuntime, start
from model_shelf.library import ImportMode, Shelf
from model_shelf.library.autofetch import Availability, LibraryResolver, execute, plan
from model_shelf.library.errors import LibraryNotReadyError
from model_shelf.library.records import SourceRef
from model_shelf.nodes import NODE_CLASS_MAPPINGS as OUR_NODES
from model_shelf.nodes import runtime as node_runtime

pytest_plugins = ["comfy_stubs.fixtures"]

MAPPINGS: dict[str, type] = {**core_nodes.MAPPINGS, **OUR_NODES}
WORKER = Path(__file__).parent / "autofetch_worker.py"


@pytest.fixture
def remote() -> Iterator[RemoteServer]:
    with RemoteServer() as server:
        yield server


class ComfyLoop:
    """ComfyUI's event loop on a thread (its server's loop, where the download engine runs)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-comfy-loop")

    def __enter__(self) -> asyncio.AbstractEventLoop:
        self.thread.start()
        return self.loop

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def running(
    comfy: Comfy,
    comfy_core: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[ComfyRuntime, Any]]:
    """Model Shelf started in a stand-in ComfyUI whose server has a running loop, as in
    ComfyUI's ``main.py`` (progress hook included). Workflows may fetch from `RemoteServer`
    on 127.0.0.1 because the setting allows it (issue #11), unless the test is parametrized
    with ``{"allow_loopback": False}`` (``indirect=True``)."""
    allow_loopback = getattr(request, "param", {}).get("allow_loopback", True)
    env = quick_env(**(LOOPBACK_FETCHES_ENV if allow_loopback else {}))
    monkeypatch.delenv("MODEL_SHELF_ALLOWED_FETCH_HOSTS", raising=False)
    for name, value in env.items():
        if name.startswith("MODEL_SHELF_"):
            monkeypatch.setenv(name, value)
    settings = Path(comfy.folder_paths.get_user_directory()) / "model-shelf" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"root": str(tmp_path / "library")}))
    core_nodes.ModelSink.received.clear()
    with ComfyLoop() as loop:
        server = comfy.server.PromptServer(loop)
        execution.hijack_progress(server)
        runtime = start(comfy.folder_paths, comfy.server)
        try:
            assert runtime.ready.wait(30) and runtime.shelf is not None
            wait_until(lambda: runtime.shelf.downloads.engine.is_running, 30, "the engine")
            yield runtime, server
        finally:
            runtime.stop()


def prompt_body(ckpt: str, models: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the page's ``queuePrompt`` posts: the API prompt, and the UI workflow in
    ``extra_data.extra_pnginfo`` (with its ``models`` metadata, if any)."""
    workflow: dict[str, Any] = {
        "last_node_id": 2,
        "last_link_id": 1,
        "nodes": [
            {
                "id": 1,
                "type": "CheckpointLoaderSimple",
                "pos": [0, 0],
                "size": [300, 100],
                "flags": {},
                "order": 0,
                "mode": 0,
                "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}],
                "properties": {"Node name for S&R": "CheckpointLoaderSimple"},
                "widgets_values": [ckpt],
            },
            {
                "id": 2,
                "type": "ModelSink",
                "pos": [400, 0],
                "size": [200, 60],
                "flags": {},
                "order": 1,
                "mode": 0,
                "inputs": [{"name": "model", "type": "MODEL", "link": 1}],
                "properties": {},
            },
        ],
        "links": [[1, 1, 0, 2, 0, "MODEL"]],
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }
    if models is not None:
        workflow["models"] = models
    return {
        "client_id": "page-1",
        "prompt": {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
            "2": {"class_type": "ModelSink", "inputs": {"model": ["1", 0]}},
        },
        "extra_data": {"extra_pnginfo": {"workflow": workflow}},
    }


def drain(messages: Any) -> list[tuple[str, Any]]:
    found = []
    while not messages.empty():
        event, data, _sid = messages.get_nowait()
        found.append((event, data))
    return found


def test_a_model_described_by_the_workflow_is_fetched_before_its_loader_runs(
    running: tuple[ComfyRuntime, Any], remote: RemoteServer, tmp_path: Path
) -> None:
    runtime, server = running
    assert runtime.shelf is not None
    src = write_model_file(tmp_path / "remote" / "dreamshaper_8.safetensors", 6 * MIB, seed=3)
    served = remote.serve("dreamshaper_8.safetensors", src)
    models = [
        {
            "name": "dreamshaper_8.safetensors",
            "url": remote.url("dreamshaper_8.safetensors"),
            "directory": "checkpoints",
            "hash": sha256_of(src),
            "hash_type": "SHA256",
        }
    ]
    body = prompt_body("dreamshaper_8.safetensors", models)
    # Without Model Shelf's handler, ComfyUI refuses it: the file is nowhere.
    refused = execution.validate_prompt(copy.deepcopy(body["prompt"]), MAPPINGS)
    assert not refused.valid
    assert refused.node_errors["1"]["errors"][0]["type"] == "value_not_in_list"

    handled = server.trigger_on_prompt(body)

    assert body["prompt"]["1"]["inputs"]["ckpt_name"] == "dreamshaper_8.safetensors"  # untouched
    assert handled["client_id"] == "page-1" and handled["extra_data"] == body["extra_data"]
    link = handled["prompt"]["1"]["inputs"]["ckpt_name"]
    assert isinstance(link, list) and handled["prompt"][link[0]]["class_type"] == (
        "ModelShelfAwaitModel"
    )
    checked = execution.validate_prompt(handled["prompt"], MAPPINGS)
    assert checked.valid, checked.node_errors

    run = execution.execute(handled["prompt"], MAPPINGS, checked.outputs)  # the worker thread

    assert run.error is None, run.error
    library_path = runtime.shelf.root / "checkpoints" / "dreamshaper_8.safetensors"
    assert core_nodes.ModelSink.received == [(str(library_path),)]
    assert sha256_of(library_path) == sha256_of(src)
    assert served.bytes_sent == src.stat().st_size  # one transfer
    events = drain(server.messages)
    progress = [d for e, d in events if e == "progress"]
    assert progress and {d["node"] for d in progress} == {"1"}  # drawn on the loader
    assert progress[-1]["value"] == progress[-1]["max"] == src.stat().st_size
    tasks = [d for e, d in events if e == "model-shelf.task"]
    assert tasks[-1]["state"] == "done"
    assert tasks[-1]["model_name"] == "checkpoints/dreamshaper_8.safetensors"

    # Submitted again: the model is listed now, so the prompt goes through unchanged.
    again = server.trigger_on_prompt(prompt_body("dreamshaper_8.safetensors", models))
    assert again["prompt"]["1"]["inputs"]["ckpt_name"] == "dreamshaper_8.safetensors"
    assert len(again["prompt"]) == 2
    assert len(served.requests) == 1


@pytest.mark.parametrize("running", [{"allow_loopback": False}], indirect=True)
def test_without_the_setting_a_workflow_cannot_make_the_server_fetch_from_this_machine(
    running: tuple[ComfyRuntime, Any], remote: RemoteServer, tmp_path: Path
) -> None:
    """Issue #11: the same workflow as above, its model's URL on 127.0.0.1, on a server that
    was not told to allow it: no request reaches that address, and the run fails saying why,
    which host and which setting (and never the URL's token)."""
    runtime, server = running
    assert runtime.shelf is not None and runtime.shelf.downloads.settings.allowed_fetch_hosts == ()
    src = write_model_file(tmp_path / "remote" / "dreamshaper_8.safetensors", 1 * MIB, seed=3)
    served = remote.serve("dreamshaper_8.safetensors", src)
    models = [
        {
            "name": "dreamshaper_8.safetensors",
            "url": remote.url("dreamshaper_8.safetensors") + "?token=civitai-key-SECRET",
            "directory": "checkpoints",
            "hash": sha256_of(src),
            "hash_type": "SHA256",
        }
    ]
    handled = server.trigger_on_prompt(prompt_body("dreamshaper_8.safetensors", models))
    checked = execution.validate_prompt(handled["prompt"], MAPPINGS)
    assert checked.valid, checked.node_errors
    run = execution.execute(handled["prompt"], MAPPINGS, checked.outputs)

    assert run.error is not None
    # In plain words: the type as the package is known, the message names the user's loader.
    assert run.error["exception_type"] == "model_shelf.library.errors.DownloadFailedError"
    message = run.error["exception_message"]
    assert message.startswith("CheckpointLoaderSimple (node 1): the download of "), message
    assert "FETCH_REFUSED" in message and "loopback" in message, message
    assert "MODEL_SHELF_ALLOWED_FETCH_HOSTS=127.0.0.1:" in message
    assert "SECRET" not in message
    assert served.requests == [] and core_nodes.ModelSink.received == []
    (task,) = runtime.shelf.downloads.list()
    assert task.origin.value == "workflow" and task.error_code == "FETCH_REFUSED"
    assert "SECRET" not in json.dumps([d for _e, d in drain(server.messages)])


def test_a_model_nobody_describes_fails_its_node_with_a_clear_message(
    running: tuple[ComfyRuntime, Any],
) -> None:
    _runtime, server = running
    body = prompt_body("sd_xl_base_1.0.safetensors")
    body["prompt"]["1"]["_meta"] = {"title": "Load Checkpoint"}  # as the page sends it
    handled = server.trigger_on_prompt(body)

    checked = execution.validate_prompt(handled["prompt"], MAPPINGS)
    assert checked.valid, checked.node_errors  # not "Value not in list" ...
    run = execution.execute(handled["prompt"], MAPPINGS, checked.outputs)

    error = run.error  # ... but the run stops before the loader, saying what to do
    # The page titles the error with the node's class and prints the exception's type: both
    # in plain words (not ModelShelfAwaitModel, nor the package's path under custom_nodes).
    assert error is not None and error["node_type"] == "Missing model (Model Shelf)"
    assert error["exception_type"] == "model_shelf.ModelUnavailableError"
    message = error["exception_message"]
    assert message.startswith(
        "Load Checkpoint (node 1): Model 'sd_xl_base_1.0.safetensors' (checkpoints) is not in"
    )
    assert "python -m model_shelf add" in message and "models entry with a url" in message
    assert core_nodes.ModelSink.received == []


def test_aliases_and_bare_names_are_rewritten_to_the_listed_name(
    running: tuple[ComfyRuntime, Any], tmp_path: Path
) -> None:
    runtime, server = running
    assert runtime.shelf is not None and runtime.bridge is not None
    source = write_model(tmp_path / "incoming" / "juggernaut.safetensors")
    record = runtime.shelf.import_model(
        source, "checkpoints", ImportMode.COPY, name="sdxl/juggernaut.safetensors"
    )
    runtime.shelf.edit_model(record.id, aliases=["Juggernaut XL"])
    runtime.bridge.refresh()  # the watcher would, a moment later
    for asked in ("juggernaut.safetensors", "Juggernaut XL", record.sha256):
        assert asked is not None
        handled = server.trigger_on_prompt(prompt_body(asked))
        assert handled["prompt"]["1"]["inputs"]["ckpt_name"] == "sdxl/juggernaut.safetensors"
        assert len(handled["prompt"]) == 2  # nothing injected
        assert execution.validate_prompt(handled["prompt"], MAPPINGS).valid


def test_one_download_for_every_input_naming_the_model_and_ghosts_come_back(
    running: tuple[ComfyRuntime, Any], remote: RemoteServer, tmp_path: Path
) -> None:
    runtime, server = running
    shelf = runtime.shelf
    assert shelf is not None
    # A LoRA the library knew (with its source) whose file was deleted by hand.
    lora_src = write_model_file(tmp_path / "remote" / "detail.safetensors", 1 * MIB, seed=5)
    served_lora = remote.serve("detail.safetensors", lora_src)
    incoming = write_model_file(tmp_path / "incoming" / "detail.safetensors", 1 * MIB, seed=5)
    ghost = shelf.import_model(
        incoming,
        "loras",
        ImportMode.MOVE,
        sources=[SourceRef(kind="url", url=remote.url("detail.safetensors"))],
    )
    shelf.model_path(ghost).unlink()
    # A checkpoint only the metadata knows, used by two loaders.
    ckpt_src = write_model_file(tmp_path / "remote" / "base.safetensors", 2 * MIB, seed=6)
    served_ckpt = remote.serve("base.safetensors", ckpt_src)
    body = prompt_body(
        "base.safetensors",
        [
            {
                "name": "base.safetensors",
                "url": remote.url("base.safetensors"),
                "directory": "checkpoints",
            }
        ],
    )
    body["prompt"]["3"] = {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "base.safetensors"},
    }
    body["prompt"]["4"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["3", 0],
            "clip": ["3", 1],
            "lora_name": "detail.safetensors",
            "strength_model": 1.0,
            "strength_clip": 1.0,
        },
    }
    body["prompt"]["5"] = {"class_type": "ModelSink", "inputs": {"model": ["4", 0]}}

    handled = server.trigger_on_prompt(body)

    injected = [
        k for k, v in handled["prompt"].items() if v["class_type"] == "ModelShelfAwaitModel"
    ]
    assert len(injected) == 2  # one per download, not one per input
    assert (
        handled["prompt"]["1"]["inputs"]["ckpt_name"]
        == (handled["prompt"]["3"]["inputs"]["ckpt_name"])
    )
    checked = execution.validate_prompt(handled["prompt"], MAPPINGS)
    assert checked.valid, checked.node_errors
    run = execution.execute(handled["prompt"], MAPPINGS, checked.outputs)
    assert run.error is None, run.error
    ckpt_path = shelf.root / "checkpoints" / "base.safetensors"
    lora_path = shelf.root / "loras" / "detail.safetensors"
    assert sorted(core_nodes.ModelSink.received) == sorted(
        [(str(ckpt_path),), (f"{ckpt_path}+{lora_path}",)]
    )
    assert served_ckpt.bytes_sent == ckpt_src.stat().st_size
    assert served_lora.bytes_sent == lora_src.stat().st_size
    wait_until(lambda: shelf.index.get(ghost.id), 30, "the repair to keep the record's id")


def test_cancelling_the_run_pauses_the_download_and_the_next_run_resumes_it(
    running: tuple[ComfyRuntime, Any], remote: RemoteServer, tmp_path: Path, comfy_core: ModuleType
) -> None:
    runtime, server = running
    shelf = runtime.shelf
    assert shelf is not None
    size = 64 * MIB
    src = write_model_file(tmp_path / "remote" / "big.safetensors", size, seed=8)
    served = remote.serve("big.safetensors", src, hold_at_byte=8 * MIB, drop_after_hold=True)
    models = [
        {
            "name": "big.safetensors",
            "url": remote.url("big.safetensors"),
            "directory": "checkpoints",
        }
    ]
    handled = server.trigger_on_prompt(prompt_body("big.safetensors", models))
    checked = execution.validate_prompt(handled["prompt"], MAPPINGS)
    result: dict[str, execution.Run] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            run=execution.execute(handled["prompt"], MAPPINGS, checked.outputs)
        ),
        name="test-comfy-worker",
    )
    worker.start()
    task = wait_until(lambda: next(iter(shelf.downloads.list()), None), 30, "the task")
    partial = shelf.layout.partial_dir / f"{task.id}.part"
    wait_until(lambda: partial.exists() and partial.stat().st_size >= 4 * MIB, 60, "4 MiB")
    comfy_core.model_management.interrupt_current_processing(True)  # /interrupt
    worker.join(30)
    assert result["run"].interrupted
    paused = wait_until(
        lambda: (t := shelf.downloads.get(task.id)).state.value == "paused" and t, 30, "pause"
    )
    served.behaviour.release.set()
    assert partial.exists() and partial.stat().st_size == paused.bytes_done >= 4 * MIB

    served.behaviour.hold_at_byte = None
    again = server.trigger_on_prompt(prompt_body("big.safetensors", models))
    checked = execution.validate_prompt(again["prompt"], MAPPINGS)
    run = execution.execute(again["prompt"], MAPPINGS, checked.outputs)
    assert run.error is None, run.error
    assert sha256_of(shelf.root / "checkpoints" / "big.safetensors") == sha256_of(src)
    assert served.requests[-1].headers["Range"] == f"bytes={paused.bytes_done}-"
    assert served.bytes_sent < 1.1 * size


def test_the_handler_never_breaks_a_prompt(
    running: tuple[ComfyRuntime, Any], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    _runtime, server = running
    for body in ({"number": 1}, {"prompt": "not a graph"}, {"prompt": {}}):
        assert server.trigger_on_prompt(copy.deepcopy(body)) == body

    def broken(*args: object) -> None:
        raise RuntimeError("bug in planning")

    monkeypatch.setattr("model_shelf.nodes.await_model.plan", broken)
    body = prompt_body("anything.safetensors")
    assert server.trigger_on_prompt(copy.deepcopy(body)) == body
    assert any("auto-fetch failed" in r.getMessage() and r.exc_info for r in caplog.records)


# -- two processes, one download ---------------------------------------------------------------


def test_two_processes_asking_for_one_missing_model_download_it_once(
    tmp_path: Path, remote: RemoteServer
) -> None:
    root = tmp_path / "library"
    Shelf.open(root).close()
    size = 32 * MIB
    src = write_model_file(tmp_path / "remote" / "shared.safetensors", size, seed=11)
    served = remote.serve("shared.safetensors", src, hold_at_byte=4 * MIB)
    body = prompt_body(
        "shared.safetensors",
        [
            {
                "name": "shared.safetensors",
                "url": remote.url("shared.safetensors"),
                "directory": "checkpoints",
                "hash": sha256_of(src),
            }
        ],
    )
    body_path = tmp_path / "body.json"
    body_path.write_text(json.dumps(body))
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(root), str(body_path)],
            env=quick_env(**LOOPBACK_FETCHES_ENV),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        queued = [w.stdout.readline().split() for w in workers if w.stdout is not None]
        assert [q[0] for q in queued] == ["queued", "queued"], queued
        assert queued[0][1:] == queued[1][1:]  # the same task for both
        wait_until(lambda: served.bytes_sent >= 4 * MIB, 60, "the held bytes")
        time.sleep(0)  # both are waiting now: one holds the lease, the other watches
        served.behaviour.hold_at_byte = None
        served.behaviour.release.set()
        done = [w.stdout.readline().split() for w in workers if w.stdout is not None]
        assert done == [["done", "checkpoints/shared.safetensors"]] * 2, done
        for worker in workers:
            assert worker.wait(60) == 0, worker.stderr.read() if worker.stderr else ""
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
    assert len(served.requests) == 1
    assert served.bytes_sent == size  # one full transfer
    with Shelf.open(root) as shelf:
        assert sha256_of(shelf.root / "checkpoints" / "shared.safetensors") == sha256_of(src)


def test_a_plan_without_comfyui(shelf: Shelf, tmp_path: Path) -> None:
    """The library-only resolver: what scripts (and the worker above) use."""
    source = write_model(tmp_path / "incoming" / "here.safetensors")
    shelf.import_model(source, "vae", ImportMode.COPY, name="sub/here.safetensors")
    body = prompt_body("x.safetensors")
    body["prompt"]["3"] = {"class_type": "VAELoader", "inputs": {"vae_name": "here.safetensors"}}
    body["prompt"]["4"] = {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}}
    body["prompt"]["5"] = {
        "class_type": "VAELoader",
        "inputs": {"vae_name": "sub/here.safetensors"},
    }
    made = execute(plan(body, shelf, LibraryResolver(shelf)), shelf)
    by_node = {p.input.node_id: p for p in made.inputs}
    assert by_node["1"].availability is Availability.UNAVAILABLE
    assert by_node["3"].availability is Availability.RESOLVED
    assert by_node["3"].name == "sub/here.safetensors"
    assert "4" not in by_node  # not a file name: ComfyUI's to judge
    assert by_node["5"].availability is Availability.PRESENT
    assert made.fetches == []


def test_start_binds_the_nodes_and_registers_the_handler_once(
    running: tuple[ComfyRuntime, Any],
) -> None:
    runtime, server = running
    assert len(server.on_prompt_handlers) == 1
    assert node_runtime.current().shelf is runtime.shelf
    runtime.stop()
    with pytest.raises(LibraryNotReadyError):
        node_runtime.current()
    body = prompt_body("anything.safetensors")
    assert server.trigger_on_prompt(copy.deepcopy(body)) == body  # stopped: hands off
