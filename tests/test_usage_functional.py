"""Usage through the real prompt path of a (stand-in) ComfyUI 0.3.64: ``/prompt`` bodies go
through the on-prompt handlers, validation, the prompt queue and one worker turn, with Model
Shelf started as inside ComfyUI; counts survive a restart and an index rebuild. Models that
cleanup archived come back through the missing-model path from a loopback server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from comfy_stubs import execution
from downloads_support import wait_until
from remote_server import RemoteServer, sha256_of, write_model_file

# The stand-in ComfyUI with Model Shelf started (``running``) and the file server (``remote``):
# fixtures shared with the auto-fetch tests, used here as parameters.
from test_autofetch_functional import MAPPINGS, prompt_body, remote, running  # noqa: F401

from model_shelf.comfy_entry import ComfyRuntime, start
from model_shelf.library import ImportMode
from model_shelf.library.records import SourceRef
from model_shelf.library.usage_log import day_of

pytest_plugins = ["comfy_stubs.fixtures"]

DAY = 86400.0
MIB = 1024 * 1024


def run_body(server: Any, body: dict[str, Any], when: float | None = None) -> execution.Run:
    answer = server.post_prompt(body, MAPPINGS)
    assert "prompt_id" in answer, answer
    clock = (lambda: when) if when is not None else time.time
    run = execution.prompt_worker_once(server, MAPPINGS, clock=clock)
    assert run is not None
    return run


def test_counts_last_use_and_days_are_right_across_a_restart(
    running: tuple[ComfyRuntime, Any],  # noqa: F811
    tmp_path: Path,
    comfy: Any,
) -> None:
    runtime, server = running
    shelf = runtime.shelf
    assert shelf is not None and runtime.bridge is not None and runtime.usage is not None
    source = write_model_file(tmp_path / "in" / "base.safetensors", 4096, seed=1)
    record = shelf.import_model(source, "checkpoints", ImportMode.MOVE)
    runtime.bridge.refresh()
    saved = Path(comfy.folder_paths.get_user_directory()) / "default" / "workflows"
    saved.mkdir(parents=True)
    (saved / "portraits.json").write_text(json.dumps({"id": "wf-1", "nodes": []}))
    now = time.time()
    for when in (now - 12 * DAY, now - 12 * DAY, now - 2 * DAY, now):
        body = prompt_body("base.safetensors")
        body["extra_data"]["extra_pnginfo"]["workflow"]["id"] = "wf-1"
        assert run_body(server, body, when).error is None
    runtime.usage.flush()
    item = next(i for i in shelf.usage(now).items if i.id == record.id)
    assert (item.uses, item.uses_7d, item.uses_30d) == (4, 2, 4)
    assert item.workflows[0].name == "portraits" and item.workflows[0].runs == 4

    runtime.stop()  # ComfyUI restarts: Model Shelf starts again on the same root
    again = start(comfy.folder_paths, comfy.server)
    try:
        assert again.ready.wait(30) and again.shelf is not None and again.usage is not None
        body = prompt_body("base.safetensors")
        del body["client_id"]  # a script's prompt: ComfyUI sends no events to a page
        assert run_body(server, body).error is None
        again.usage.flush()
        again.shelf.rebuild_index()  # the totals live in the record, the days in state.db
        item = next(i for i in again.shelf.usage().items if i.id == record.id)
        assert (item.uses, item.uses_7d, item.uses_30d) == (5, 3, 5)
        assert item.per_day == {day_of(now - 12 * DAY): 2, day_of(now - 2 * DAY): 1, day_of(now): 2}
        assert item.last_used is not None and item.last_used.timestamp() >= now
        assert again.shelf.get(record.id).usage.count == 5
        assert again.shelf.usage().runs == 5
    finally:
        again.stop()


def test_archived_models_come_back_through_the_missing_model_path(
    running: tuple[ComfyRuntime, Any],  # noqa: F811
    remote: RemoteServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    runtime, server = running
    shelf = runtime.shelf
    assert shelf is not None and runtime.bridge is not None
    src = write_model_file(tmp_path / "remote" / "old.safetensors", 2 * MIB, seed=4)
    remote.serve("old.safetensors", src)
    incoming = write_model_file(tmp_path / "in" / "old.safetensors", 2 * MIB, seed=4)
    record = shelf.import_model(
        incoming,
        "checkpoints",
        ImportMode.MOVE,
        sources=[SourceRef(kind="url", url=remote.url("old.safetensors"))],
    )
    result = shelf.cleanup(MIB)
    assert result.archived == [record.display()] and result.freed_bytes >= MIB
    assert not shelf.model_path(record).exists()
    runtime.bridge.refresh()

    run = run_body(server, prompt_body("old.safetensors"))

    assert run.error is None, run.error
    # The same record, whole again (the repair finishes when its download's end is announced).
    back = wait_until(lambda: shelf.index.get(record.id), 30, "the repair to keep the record")
    assert back.archived_at is None and back.health.value == "ok"
    assert sha256_of(shelf.model_path(back)) == sha256_of(src)


def test_a_missing_model_fails_its_node_naming_the_closest_alternatives(
    running: tuple[ComfyRuntime, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    runtime, server = running
    shelf = runtime.shelf
    assert shelf is not None and runtime.bridge is not None
    for name in ("dreamshaper_8.safetensors", "juggernaut_xl.safetensors"):
        source = write_model_file(tmp_path / "in" / name, 4096, seed=len(name))
        shelf.import_model(source, "checkpoints", ImportMode.MOVE)
    runtime.bridge.refresh()
    run = run_body(server, prompt_body("dreamshaper_7.safetensors"))
    assert run.error is not None and "Model Shelf" in run.error["node_type"]
    message = run.error["exception_message"]
    assert "Closest in the library: 'dreamshaper_8.safetensors'" in message
