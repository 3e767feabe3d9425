"""Usage from ComfyUI's execution events (the stand-in prompt queue and executor of 0.3.64 and
the newest release), and the advice built on it: cleanup plans, alternatives for a missing
model, preload suggestions, failing loads in the health report, the CLI and the routes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from comfy_stubs import Comfy, core_nodes, execution
from conftest import run_cli
from remote_server import write_model_file

from model_shelf.library import ImportMode, ModelRecord, Shelf
from model_shelf.library.autofetch import Availability, LibraryResolver, plan
from model_shelf.library.comfy_paths import FolderPathsBridge
from model_shelf.library.comfy_runs import RunReport, install_run_hooks
from model_shelf.library.comfy_settings import ComfySettings
from model_shelf.library.errors import InvalidSizeError
from model_shelf.library.preload import RemoteListing
from model_shelf.library.records import SourceRef
from model_shelf.library.units import parse_size
from model_shelf.library.usage import UsageRecorder
from model_shelf.library.usage_log import RunEntry, RunUse, day_of

pytest_plugins = ["comfy_stubs.fixtures"]

DAY = 86400.0
MIB = 1024 * 1024


@pytest.fixture
def add(shelf: Shelf, tmp_path: Path) -> Callable[..., ModelRecord]:
    """Import a real file of ``size`` bytes as ``type/name``; ``source`` records a URL."""
    counter = iter(range(1_000_000))

    def add_one(
        name: str,
        model_type: str = "checkpoints",
        size: int = 4096,
        source: bool = True,
        seed: int | None = None,
    ) -> ModelRecord:
        n = next(counter)
        path = write_model_file(
            tmp_path / "in" / f"{n}-{name}", size, seed=n if seed is None else seed
        )
        sources = [SourceRef(kind="url", url=f"https://example.invalid/{name}")] if source else []
        return shelf.import_model(path, model_type, ImportMode.MOVE, name=name, sources=sources)

    return add_one


def loader_prompt(ckpt: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "ModelSink", "inputs": {"model": ["1", 0]}},
    }


class Broken(core_nodes.CheckpointLoaderSimple):
    """A checkpoint loader whose file cannot be loaded (ComfyUI raises from its loader)."""

    def load_checkpoint(self, ckpt_name: str) -> tuple[str, str, str]:
        raise RuntimeError(f"Error while deserializing header: {ckpt_name}")


@pytest.fixture
def queue_runs(
    comfy: Comfy, comfy_core: ModuleType, shelf: Shelf
) -> Iterator[tuple[Any, UsageRecorder, FolderPathsBridge]]:
    """The stand-in server's prompt queue with our hooks, feeding a recorder (no thread), and
    the library bridged into ``folder_paths`` (call ``refresh`` after adding models)."""
    recorder = UsageRecorder(shelf)
    bridge = FolderPathsBridge(shelf, comfy.folder_paths, ComfySettings(), recorder)
    bridge.install()
    hook = install_run_hooks(comfy.server.PromptServer.instance.prompt_queue)
    assert hook is not None
    hook.listener = recorder
    yield comfy.server.PromptServer.instance, recorder, bridge
    hook.listener = None
    bridge.close()


def run_queued(
    server: Any,
    prompt: dict[str, Any],
    *,
    when: float | None = None,
    mappings: dict[str, type] | None = None,
    extra: dict[str, Any] | None = None,
    sensitive: bool = False,
    cached: dict[str, tuple[Any, ...]] | None = None,
) -> execution.Run:
    """Put a validated prompt on the queue as ``/prompt`` does, and run one worker turn."""
    number = server.number
    server.number += 1
    item: tuple[Any, ...] = (number, f"p{number}", prompt, dict(extra or {}), ["2"])
    if sensitive:
        item = (*item, {"api_key_comfy_org": "secret"})
    server.prompt_queue.put(item)
    clock = (lambda: when) if when is not None else time.time
    run = execution.prompt_worker_once(
        server, mappings or core_nodes.MAPPINGS, cached=cached, clock=clock
    )
    assert run is not None
    return run


def test_runs_count_per_day_with_workflows_and_run_times(
    queue_runs: tuple[Any, UsageRecorder, FolderPathsBridge],
    add: Callable[..., ModelRecord],
    shelf: Shelf,
) -> None:
    server, recorder, bridge = queue_runs
    base = add("base.safetensors")
    bridge.refresh()
    now = time.time()
    workflow = {"extra_pnginfo": {"workflow": {"id": "wf-portraits", "nodes": []}}}
    for when in (now - 20 * DAY, now - 10 * DAY, now - 3 * DAY, now):
        run_queued(server, loader_prompt("base.safetensors"), when=when, extra=workflow)
    # A script's prompt: no client id (ComfyUI sends the page nothing), newest queue shape.
    run_queued(server, loader_prompt("base.safetensors"), when=now, sensitive=True)
    # A cached loader does not run, but the run still used its model.
    run_queued(server, loader_prompt("base.safetensors"), when=now, cached={"1": ("x",) * 3})
    recorder.flush()

    report = shelf.usage(now)
    item = next(i for i in report.items if i.id == base.id)
    assert item.uses == 6 and item.runs == 6
    assert (item.uses_7d, item.uses_30d) == (4, 6)
    assert item.per_day == {
        day_of(now - 20 * DAY): 1,
        day_of(now - 10 * DAY): 1,
        day_of(now - 3 * DAY): 1,
        day_of(now): 3,
    }
    assert item.last_used is not None and abs(item.last_used.timestamp() - now) < 1
    assert item.workflows[0].key == "wf-portraits" and item.workflows[0].runs == 4
    assert item.workflows[1].key.startswith("prompt:") and item.workflows[1].runs == 2
    assert item.mean_run_seconds is not None and item.mean_run_seconds >= 0
    assert report.days[-1].uses == 3 and report.days[-1].runs == 3
    assert shelf.find("base.safetensors").usage.count == 6  # the record keeps the total
    history = server.prompt_queue.history["p4"]
    assert len(history["prompt"]) == 5  # the sensitive part was dropped by ComfyUI's worker


def test_a_loader_that_keeps_failing_is_flagged_and_not_counted_as_a_use(
    queue_runs: tuple[Any, UsageRecorder, FolderPathsBridge],
    add: Callable[..., ModelRecord],
    shelf: Shelf,
) -> None:
    server, recorder, bridge = queue_runs
    bad = add("bad.safetensors")
    bridge.refresh()
    broken = {**core_nodes.MAPPINGS, "CheckpointLoaderSimple": Broken}
    for _ in range(3):
        run = run_queued(server, loader_prompt("bad.safetensors"), mappings=broken)
        assert run.error is not None and "deserializing" in run.error["exception_message"]
    recorder.flush()

    item = next(i for i in shelf.usage().items if i.id == bad.id)
    assert item.uses == 0 and item.failures_30d == 3
    report = shelf.health()
    assert report.failing_loads is not None and report.failing_loads.count == 1
    assert report.failing_loads.items[0].name == "checkpoints/bad.safetensors"
    assert not report.ok
    doctor = run_cli(shelf.root, "doctor")
    assert doctor.returncode == 1 and "Failing to load" in doctor.stdout


def test_the_queue_hooks_chain_with_other_packs_and_install_once(
    comfy: Comfy, comfy_core: ModuleType, shelf: Shelf, add: Callable[..., ModelRecord]
) -> None:
    server = comfy.server.PromptServer.instance
    queue = server.prompt_queue
    seen: list[str] = []
    earlier = queue.task_done

    def other_pack(item_id: int, history_result: Any, status: Any = None, **kw: Any) -> None:
        seen.append("other")
        earlier(item_id, history_result, status, **kw)

    queue.task_done = other_pack
    hook = install_run_hooks(queue)
    assert hook is not None and install_run_hooks(queue) is hook
    recorder = UsageRecorder(shelf)
    hook.listener = recorder
    add("base.safetensors")
    bridge = FolderPathsBridge(shelf, comfy.folder_paths, ComfySettings(), recorder)
    bridge.install()
    run_queued(server, loader_prompt("base.safetensors"))
    hook.listener = None  # stopped: a pass-through again ...
    run_queued(server, loader_prompt("base.safetensors"))
    recorder.flush()
    assert seen == ["other", "other"]
    # ... where the resolved path still counts, as a use outside any observed run.
    assert shelf.find("base.safetensors").usage.count == 2
    assert shelf.usage_log.run_count() == 1
    assert len(queue.history) == 2
    assert install_run_hooks(object()) is None  # not ComfyUI's queue: left alone
    bridge.close()


def test_paths_resolved_outside_runs_still_count_and_inside_runs_once(
    shelf: Shelf, add: Callable[..., ModelRecord]
) -> None:
    record = add("lora.safetensors", "loras")
    recorder = UsageRecorder(shelf)
    recorder.note("loras", "lora.safetensors")  # a pack resolving a path on its own
    recorder.run_started("p1", time.time())
    recorder.note("loras", "lora.safetensors")  # two lookups in one run ...
    recorder.note("loras", "lora.safetensors")
    recorder.run_finished(
        RunReport("p1", {}, [], {}, time.time(), time.time(), "success")
    )  # ... one use
    recorder.flush()
    assert shelf.get(record.id).usage.count == 2
    assert shelf.usage().items[0].runs == 1


def test_cleanup_plan_frees_the_target_and_spares_recent_and_unrecoverable_models(
    shelf: Shelf, add: Callable[..., ModelRecord]
) -> None:
    now = time.time()
    recent = add("recent.safetensors", size=3 * MIB)
    old = add("old.safetensors", size=2 * MIB)
    never = add("never.safetensors", size=1 * MIB)
    lonely = add("lonely.safetensors", size=4 * MIB, source=False)
    first = add("copy-a.safetensors", size=MIB // 2, seed=99)
    second = add("copy-b.safetensors", size=MIB // 2, seed=99)
    shelf.usage_log.add_run(
        RunEntry("r1", now - 2 * DAY, now - 2 * DAY + 5, "success", [RunUse(recent.id, "x")])
    )
    shelf.usage_log.add_run(
        RunEntry("r2", now - 20 * DAY, now - 20 * DAY + 5, "success", [RunUse(old.id, "x")])
    )
    shelf.verify()  # duplicates are merged only when both copies are verified

    target = 2 * MIB + 1  # more than the duplicate and the never-used models together
    plan = shelf.cleanup_plan(target, now)
    names = [i.name for i in plan.items]
    assert names == [
        second.display(),  # the extra copy first (its name stays, as an alias)
        never.display(),  # never used, biggest first
        first.display(),
        old.display(),  # used, but not this week
    ]
    assert plan.enough and plan.planned_bytes >= target
    assert recent.display() not in names and plan.recent_kept >= 1
    assert lonely.display() in plan.not_refetchable

    result = shelf.cleanup(target, now=now)
    assert result.freed_bytes >= target
    assert result.deduplicated == [second.display()]
    assert sorted(result.archived) == sorted([never.display(), first.display(), old.display()])
    for record in (never, old, first):
        stub = shelf.get(record.id)
        assert stub.archived_at is not None and stub.sources
        assert not shelf.model_path(stub).exists()
    assert shelf.find("copy-b.safetensors").id == first.id  # an alias of the (archived) copy
    assert shelf.model_path(recent).exists() and shelf.model_path(lonely).exists()
    assert [s.count for s in [shelf.health().missing]] == [0]  # stubs are not problems
    journal = (shelf.layout.deletions_log).read_text().splitlines()
    assert any("archived, re-downloadable" in line for line in journal)
    assert shelf.purge_ghosts() == []  # archived on purpose: kept


def test_cleanup_never_proposes_a_model_used_this_week_even_when_short(
    shelf: Shelf, add: Callable[..., ModelRecord]
) -> None:
    used = add("used.safetensors", size=MIB)
    now = time.time()
    shelf.usage_log.add_run(
        RunEntry("r", now - 6 * DAY, now - 6 * DAY, "success", [RunUse(used.id, "x")])
    )
    plan = shelf.cleanup_plan(10 * MIB, now)
    assert plan.items == [] and not plan.enough and plan.recent_kept == 1


def test_alternatives_rank_kind_and_architecture_before_names(
    shelf: Shelf, add: Callable[..., ModelRecord]
) -> None:
    def tagged(name: str, model_type: str, kind: str | None, arch: str | None) -> ModelRecord:
        record = add(name, model_type)
        record.probe.kind, record.probe.architecture = kind, arch
        return shelf.catalog.save(record)

    tagged("juggernaut_xl.safetensors", "checkpoints", "checkpoint", "sdxl")
    tagged("detail_tweaker_sd15.safetensors", "loras", "lora", "sd1")  # the closest name
    xl = tagged("add_more_details_sdxl.safetensors", "loras", "lora", "sdxl")
    tagged("detail_tweaker_embedding.safetensors", "loras", "embedding", "sdxl")

    body = {
        "prompt": {
            "1": {
                "class_type": "CheckpointLoaderSimple",
                "inputs": {"ckpt_name": "juggernaut_xl.safetensors"},
            },
            "2": {
                "class_type": "LoraLoader",
                "inputs": {
                    "model": ["1", 0],
                    "clip": ["1", 1],
                    "lora_name": "detail_tweaker.safetensors",
                    "strength_model": 1.0,
                    "strength_clip": 1.0,
                },
            },
        }
    }
    made = plan(body, shelf, LibraryResolver(shelf))
    missing = next(p for p in made.inputs if p.input.node_id == "2")
    assert missing.availability is Availability.UNAVAILABLE
    ranked = [a.name for a in missing.alternatives]
    assert ranked[0] == xl.name  # same kind and architecture (from the workflow's checkpoint)
    assert ranked.index("detail_tweaker_embedding.safetensors") < ranked.index(
        "detail_tweaker_sd15.safetensors"
    )  # same architecture beats a closer name of another one
    assert "same kind (lora)" in missing.alternatives[0].reason
    assert missing.reason is not None and "Closest in the library: 'add_more_details_sdxl" in (
        missing.reason
    )
    # Without the workflow, the name says nothing of the architecture: names decide.
    alone = shelf.alternatives("loras", "detail_tweaker.safetensors")
    assert alone[0].name == "detail_tweaker_sd15.safetensors"
    assert shelf.alternatives("loras", "detail_tweaker_xl.safetensors")[0].name == xl.name


def test_preload_suggests_archived_and_remote_models_used_often(
    shelf: Shelf, add: Callable[..., ModelRecord]
) -> None:
    here = add("here.safetensors", size=MIB)
    gone = add("gone.safetensors", size=MIB)
    now = time.time()
    for n in range(3):
        shelf.usage_log.add_run(
            RunEntry(f"r{n}", now - 30 * DAY, now - 30 * DAY, "success", [RunUse(gone.id, "x")])
        )
    assert shelf.cleanup(2 * MIB, [gone.id], now=now).archived == [gone.display()]
    remote = [
        RemoteListing(type="loras", name="team.safetensors", size=5, sha256="ab" * 32,
                    source="https://peer.invalid/team.safetensors", where="peer studio-2", uses=7),
        RemoteListing(type="checkpoints", name="copy.safetensors", sha256=here.sha256,
                    source="https://peer.invalid/copy", where="team store", uses=9),
        RemoteListing(type="loras", name="rare.safetensors", source="https://peer.invalid/rare",
                    where="team store", uses=1),
    ]  # fmt: skip
    suggestions = shelf.preload_suggestions(remote)
    assert [s.name for s in suggestions] == ["loras/team.safetensors", gone.display()]
    assert suggestions[1].model_id == gone.id and "archived here" in suggestions[1].reason
    task = shelf.preload(suggestions[0])
    assert task.model_type == "loras" and task.expected_sha256 is not None


def test_usage_and_cleanup_commands(shelf: Shelf, add: Callable[..., ModelRecord]) -> None:
    add("never.safetensors", size=MIB)
    shelf.close()
    shown = run_cli(shelf.root, "usage", "--json", check=True)
    report = json.loads(shown.stdout)
    assert report["never_used_models"] == 1 and report["never_used_bytes"] >= MIB
    assert len(report["days"]) == 30
    dry = run_cli(shelf.root, "cleanup", "--free", "1MiB", check=True)
    assert "archive" in dry.stdout and "--yes" in dry.stdout
    done = run_cli(shelf.root, "cleanup", "--free", "1MiB", "--yes", "--json", check=True)
    assert json.loads(done.stdout)["freed_bytes"] >= MIB
    bad = run_cli(shelf.root, "cleanup", "--free", "lots")
    assert bad.returncode == 2 and "INVALID_SIZE" in bad.stderr


def test_sizes() -> None:
    assert parse_size("50GiB") == 50 * 1024**3
    assert parse_size("1.5 GB") == 1_500_000_000
    assert parse_size("2048") == 2048 and parse_size(7) == 7
    for bad in ("", "GiB", "-1", "5 parsecs"):
        with pytest.raises(InvalidSizeError):
            parse_size(bad)


RECORD_ONE_RUN = """
import sys, time
from model_shelf.library import Shelf
from model_shelf.library.comfy_runs import RunReport
from model_shelf.library.usage import UsageRecorder

with Shelf.open(sys.argv[1]) as shelf:
    recorder = UsageRecorder(shelf)
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": sys.argv[2]}}}
    now = time.time()
    recorder.run_finished(RunReport(sys.argv[3], prompt, ["1"], {}, now, now + 1, "success"))
    recorder.flush()
"""


def test_several_processes_on_one_root_add_up(
    shelf: Shelf, add: Callable[..., ModelRecord]
) -> None:
    import subprocess
    import sys

    record = add("shared.safetensors")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RECORD_ONE_RUN, str(shelf.root), "shared.safetensors", f"p{n}"]
        )
        for n in range(3)
    ]
    assert [w.wait(120) for w in workers] == [0, 0, 0]
    item = next(i for i in shelf.usage().items if i.id == record.id)
    assert item.runs == 3 and item.uses_7d == 3 and item.uses == 3
    # The sidecar totals are read-modify-write per process (best effort, as before); the log,
    # one transaction per run, holds every run.
    assert shelf.records.read(shelf.records.sidecar_path(record)).usage.count >= 1
