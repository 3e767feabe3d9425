"""Records that cannot be trusted (issue 15): a sidecar whose ``files[].path`` leads outside the
library (absolute, ``..``, a link), and a sidecar that cannot be read at all (truncated).

Each stands as a "record damaged" model: listed, reported by doctor, never acted on (no read,
hash, move or delete by its paths) until ``repair`` re-creates it from the model file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from conftest import QUICK_WATCH, ModelFactory, run_cli, tree_snapshot
from routes_support import JSON, json_of

from model_shelf.library import Shelf
from model_shelf.library.errors import ModelNotFoundError
from model_shelf.library.imports import ImportMode
from model_shelf.library.query import ModelQuery
from model_shelf.library.records import Health, ModelRecord

pytest_plugins = ["routes_fixtures"]

TIMEOUT = 30.0


def rewrite_sidecar(shelf: Shelf, record: ModelRecord, change: Callable[[dict], None]) -> Path:
    """Edit a sidecar as a person (or an attacker) would, outside Model Shelf: a new file
    renamed over the old one (its folder's mtime moves, as with any editor's save)."""
    sidecar = shelf.records.sidecar_path(record)
    data = json.loads(sidecar.read_text())
    change(data)
    tmp = sidecar.with_name("edit.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, sidecar)
    return sidecar


def point_outside(shelf: Shelf, record: ModelRecord, how: str, outside_file: Path) -> None:
    """Make ``record``'s only file entry lead to ``outside_file``."""
    folder = shelf.records.sidecar_path(record).parent
    if how == "absolute":
        target = str(outside_file)
    elif how == "dotdot":
        target = os.path.relpath(outside_file, folder)
        assert target.startswith("..")
    else:  # a link inside the type folder, to the outside file
        (folder / "link.safetensors").symlink_to(outside_file)
        target = "link.safetensors"

    def change(data: dict) -> None:
        data["files"][0]["path"] = target

    rewrite_sidecar(shelf, record, change)


@pytest.fixture
def outside(tmp_path: Path, make_model: ModelFactory) -> Path:
    """A folder beside the library with a model file that records will point at."""
    folder = tmp_path / "outside"
    make_model("victim.safetensors", folder=folder, seed=1)
    return folder


HOWS = ["absolute", "dotdot", "link"]


@pytest.mark.parametrize("how", HOWS)
def test_rm_verify_and_doctor_never_act_on_a_record_leading_outside(
    shelf: Shelf, make_model: ModelFactory, outside: Path, how: str
) -> None:
    record = shelf.import_model(make_model(seed=2), "loras", name="bad.safetensors")
    point_outside(shelf, record, how, outside / "victim.safetensors")
    before = tree_snapshot(outside)
    shelf.sync(full=True)
    hashed = shelf.verifier.bytes_hashed

    [result] = shelf.verify(["loras/bad.safetensors"])
    assert result.health is Health.DAMAGED, result
    assert shelf.verifier.bytes_hashed == hashed  # nothing was read

    report = shelf.health()
    assert not report.ok
    assert [i.name for i in report.damaged.items] == ["loras/bad.safetensors"]
    assert "outside" in (report.damaged.items[0].detail or "")
    assert [m.status.value for m in shelf.query_models(ModelQuery()).items] == ["damaged"]

    shelf.remove("loras/bad.safetensors")  # the model's own file and sidecar only
    assert tree_snapshot(outside) == before
    assert (outside / "victim.safetensors").is_file()


def test_a_record_leading_outside_is_refused_on_read(
    shelf: Shelf, make_model: ModelFactory, outside: Path
) -> None:
    record = shelf.import_model(make_model(seed=2), "loras", name="bad.safetensors")
    point_outside(shelf, record, "absolute", outside / "victim.safetensors")
    with pytest.raises(Exception) as caught:
        shelf.records.read(shelf.records.sidecar_path(record))
    assert getattr(caught.value, "code", None) == "UNSAFE_RECORD"


@pytest.mark.parametrize("how", HOWS)
async def test_delete_route_never_deletes_outside(
    client: TestClient, api_shelf: Shelf, make_model: ModelFactory, outside: Path, how: str
) -> None:
    record = api_shelf.import_model(make_model(seed=2), "loras", name="bad.safetensors")
    point_outside(api_shelf, record, how, outside / "victim.safetensors")
    before = tree_snapshot(outside)
    api_shelf.sync(full=True)
    [damaged] = api_shelf.list_models()
    assert damaged.health is Health.DAMAGED
    response = await client.delete(f"/model-shelf/models/{damaged.id}", headers=JSON)
    assert response.status < 500, await response.text()
    await json_of(response)
    assert tree_snapshot(outside) == before


def test_dedupe_never_keeps_or_deletes_by_a_record_leading_outside(
    shelf: Shelf, make_model: ModelFactory, outside: Path, tmp_path: Path
) -> None:
    """Two copies of the same model; the newer record is edited to point at an identical file
    outside. The old code kept the outside one and deleted the library's own copy."""
    source = make_model(seed=7)
    (outside / "twin.safetensors").write_bytes(source.read_bytes())
    good = shelf.import_model(source, "loras", ImportMode.COPY, name="good.safetensors")
    bad = shelf.import_model(source, "loras", ImportMode.COPY, name="bad.safetensors")
    point_outside(shelf, bad, "absolute", outside / "twin.safetensors")
    before = tree_snapshot(outside)
    shelf.sync(full=True)

    report = shelf.dedupe()
    assert report.merged == {}
    assert tree_snapshot(outside) == before
    assert shelf.records.model_path(good).is_file()
    assert shelf.get(good.id).health is Health.OK


def test_the_watcher_marks_a_record_leading_outside_damaged_and_reads_nothing(
    shelf: Shelf, make_model: ModelFactory, outside: Path
) -> None:
    record = shelf.import_model(make_model(seed=2), "loras", name="bad.safetensors")
    watcher = shelf.start_watching(QUICK_WATCH)
    try:
        assert watcher.wait_idle(TIMEOUT)
        before = tree_snapshot(outside)
        hashed = shelf.verifier.bytes_hashed
        batches: list[object] = []
        watcher.on_batch(batches.append)
        point_outside(shelf, record, "dotdot", outside / "victim.safetensors")

        def damaged() -> bool:
            row = shelf.index.location_row("loras", "bad.safetensors")
            return row is not None and row.health == Health.DAMAGED.value

        deadline = time.monotonic() + TIMEOUT
        while not damaged():
            assert time.monotonic() < deadline, "the watcher never saw the edited record"
            watcher.wait_idle(1.0)
        assert watcher.wait_idle(TIMEOUT)
        assert shelf.hasher is not None and shelf.hasher.wait_idle(TIMEOUT)
        assert shelf.verifier.bytes_hashed == hashed
        assert tree_snapshot(outside) == before
    finally:
        shelf.stop_watching()


def test_a_truncated_record_stays_listed_as_damaged_and_repair_recreates_it(
    shelf: Shelf, make_model: ModelFactory
) -> None:
    record = shelf.import_model(make_model(seed=3), "loras", name="cut.safetensors")
    sha256 = record.hashes["sha256"]
    sidecar = shelf.records.sidecar_path(record)
    damaged_bytes = sidecar.read_bytes()[:40]
    tmp = sidecar.with_name("cut.tmp")
    tmp.write_bytes(damaged_bytes)
    os.replace(tmp, sidecar)

    assert shelf.rebuild_index() == 1
    [listed] = shelf.list_models()
    assert (listed.display(), listed.health) == ("loras/cut.safetensors", Health.DAMAGED)
    [result] = shelf.verify()
    assert result.health is Health.DAMAGED
    report = shelf.health()
    assert not report.ok and report.damaged.count == 1
    assert sidecar.read_bytes() == damaged_bytes  # never silently overwritten

    [repaired] = shelf.repair(all_broken=True)
    assert repaired.ok, repaired
    again = shelf.find("loras/cut.safetensors")
    assert (again.health, again.hashes["sha256"]) == (Health.OK, sha256)
    kept = list((shelf.root / ".shelf" / "damaged" / "loras").iterdir())
    assert [p.read_bytes() for p in kept] == [damaged_bytes]
    assert shelf.health().damaged.count == 0


def test_doctor_and_verify_commands_report_a_truncated_record(
    root: Path, make_model: ModelFactory
) -> None:
    with Shelf.open(root) as shelf:
        record = shelf.import_model(make_model(seed=3), "loras", name="cut.safetensors")
        sidecar = shelf.records.sidecar_path(record)
    tmp = sidecar.with_name("cut.tmp")
    tmp.write_bytes(sidecar.read_bytes()[:40])
    os.replace(tmp, sidecar)
    doctor = run_cli(root, "doctor")
    assert doctor.returncode != 0 and "all good" not in doctor.stdout
    assert "loras/cut.safetensors" in doctor.stdout
    verify = run_cli(root, "verify")
    assert verify.returncode != 0
    assert "DAMAGED" in verify.stdout


def test_dedupe_keep_takes_a_name_without_its_type_folder(
    shelf: Shelf, make_model: ModelFactory
) -> None:
    source = make_model(seed=9)
    shelf.import_model(source, "loras", ImportMode.COPY, name="old.safetensors")
    shelf.import_model(source, "loras", ImportMode.COPY, name="new.safetensors")
    report = shelf.dedupe({"new.safetensors"})
    assert report.merged == {"loras/new.safetensors": ["loras/old.safetensors"]}
    with pytest.raises(ModelNotFoundError):
        shelf.dedupe({"nothing.safetensors"})
