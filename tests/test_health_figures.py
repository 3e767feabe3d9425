"""The health report's kept figures (issue #11): counts the index's writer keeps, and the last
sweep's findings with their time, checked against figures computed afresh from every index row
after each kind of change: imports, removals, verify failures, archiving, dedupe, the watcher's
events, ``rebuild-index``, and other processes writing to the same root (real SQLite, real
files, real CLI processes)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from typing import Any

from conftest import QUICK_WATCH, flip_a_byte, run_cli

from model_shelf.library import HashTiming, ImportMode, Shelf
from model_shelf.library.cleanup_advice import archive
from model_shelf.library.health import HealthReport
from model_shelf.library.layout import TEMP_SUFFIX
from model_shelf.library.records import HashState, Health, ModelRecord

TIMEOUT = 30.0


def shown(report: HealthReport) -> dict[str, Any]:
    """The figures the report shows that the index's kept counts feed."""
    return {
        "models": report.models,
        "corrupted": (report.corrupted.count, [i.name for i in report.corrupted.items]),
        "missing": (report.missing.count, [i.name for i in report.missing.items]),
        "damaged": (report.damaged.count, [i.name for i in report.damaged.items]),
        "pending": report.pending.count,
        "duplicates": (
            report.duplicates.count,
            report.duplicates.reclaimable_bytes,
            [(g.keep, g.others, g.across_types) for g in report.duplicates.groups],
        ),
        "types": {t.type: (t.models, t.bytes) for t in report.disk.disk.types},
    }


def afresh(shelf: Shelf) -> dict[str, Any]:
    """The same figures computed from every index row, without the kept counts."""
    records = shelf.index.list()

    def named(health: Health, *, stubs: bool = True) -> tuple[int, list[str]]:
        found = sorted(
            (r.type, r.name)
            for r in records
            if r.health is health and (stubs or r.archived_at is None)
        )
        return len(found), [f"{t}/{n}" for t, n in found]

    by_sha: dict[str, list[ModelRecord]] = {}
    for record in records:
        if "sha256" in record.hashes:
            by_sha.setdefault(record.hashes["sha256"], []).append(record)
    groups = []
    for sha in sorted(by_sha):
        group = sorted(by_sha[sha], key=lambda r: (r.created_at, r.type, r.name))
        if len(group) > 1:
            kept, rest = group[0], group[1:]
            same = [r.display() for r in rest if r.type == kept.type]
            other = [r.display() for r in rest if r.type != kept.type]
            groups.append((kept.display(), same, other, kept.size * len(same)))
    types: dict[str, tuple[int, int]] = {}
    for record in records:
        models, size = types.get(record.type, (0, 0))
        types[record.type] = (models + 1, size + record.size)
    return {
        "models": len(records),
        "corrupted": named(Health.CORRUPTED),
        "missing": named(Health.MISSING, stubs=False),
        "damaged": named(Health.DAMAGED),
        "pending": sum(r.hash_state is HashState.PENDING for r in records),
        "duplicates": (
            len(groups),
            sum(g[3] for g in groups),
            [(keep, same, other) for keep, same, other, _ in groups],
        ),
        "types": dict(sorted(types.items())),
    }


def assert_current(shelf: Shelf) -> dict[str, Any]:
    figures = shown(shelf.health())
    assert figures == afresh(shelf)
    return figures


def test_counts_follow_imports_removals_verify_archive_and_dedupe(shelf, make_model):
    twin = make_model(seed=1)
    shelf.import_model(twin, "loras", name="first.safetensors")
    shelf.import_model(twin, "loras", name="second.safetensors")
    shelf.import_model(twin, "checkpoints", name="elsewhere.safetensors")
    shelf.import_model(make_model(seed=2), "vae", name="v.safetensors")
    shelf.import_model(  # a rename, hashed later: pending
        make_model(seed=3), "loras", ImportMode.MOVE, hashing=HashTiming.DEFERRED, name="p.sft"
    )
    shelf.import_model(make_model(seed=4), "loras", name="gone.safetensors")
    figures = assert_current(shelf)
    assert figures["models"] == 6 and figures["pending"] == 1
    assert figures["duplicates"][0] == 1 and figures["duplicates"][1] > 0

    shelf.remove("loras/gone.safetensors")
    assert assert_current(shelf)["models"] == 5

    flip_a_byte(shelf.root / "vae" / "v.safetensors")
    [result] = shelf.verify(["vae/v.safetensors"])
    assert result.health is Health.CORRUPTED
    assert assert_current(shelf)["corrupted"] == (1, ["vae/v.safetensors"])

    stub = shelf.find("checkpoints/elsewhere.safetensors")
    archive(stub, shelf.records, shelf.catalog, shelf.remover)  # a missing file, not a ghost
    assert assert_current(shelf)["missing"] == (0, [])

    (shelf.root / "vae" / "v.safetensors").unlink()
    shelf.sync(full=True)  # a ghost now (its health moves from corrupted to missing)
    figures = assert_current(shelf)
    assert figures["missing"] == (1, ["vae/v.safetensors"]) and figures["corrupted"][0] == 0

    shelf.dedupe()
    assert assert_current(shelf)["duplicates"][0] == 1  # the archived stub still shares it
    assert shelf.purge_ghosts() == ["vae/v.safetensors"]
    shelf.hash_pending()
    figures = assert_current(shelf)
    assert figures["pending"] == 0 and figures["missing"] == (0, [])


def test_counts_follow_the_watchers_events(root, make_model, tmp_path):
    with Shelf.open(root) as shelf:
        shelf.import_model(make_model(seed=1), "loras", name="kept.safetensors")
        shelf.import_model(make_model(seed=2), "loras", name="deleted.safetensors")
        shelf.start_watching(QUICK_WATCH)
        try:
            watcher, hasher = shelf.watcher, shelf.hasher
            assert watcher is not None and hasher is not None
            assert watcher.wait_idle(TIMEOUT)
            (shelf.root / "loras" / "deleted.safetensors").unlink()
            shutil.copy(make_model(seed=3), shelf.root / "vae" / "by-hand.safetensors")
            shutil.copy(make_model(seed=1), shelf.root / "checkpoints" / "same.safetensors")
            deadline = time.monotonic() + TIMEOUT
            while not (
                len(shelf.list_models()) == 4
                and shelf.find("deleted.safetensors").health is Health.MISSING
                and all(r.hash_state is HashState.HASHED for r in shelf.list_models("vae"))
                and all(r.hash_state is HashState.HASHED for r in shelf.list_models("checkpoints"))
            ):
                assert time.monotonic() < deadline, "the watcher did not record the changes"
                watcher.wait_idle(1.0)
                hasher.wait_idle(1.0)
            assert watcher.wait_idle(TIMEOUT) and hasher.wait_idle(TIMEOUT)
            figures = assert_current(shelf)
            assert figures["missing"] == (1, ["loras/deleted.safetensors"])
            assert figures["duplicates"][2] == [
                ("loras/kept.safetensors", [], ["checkpoints/same.safetensors"])
            ]
            # The catch-up sweep at start is the report's sweep: its time is kept.
            assert shelf.health().swept_at is not None
        finally:
            shelf.stop_watching()


def test_counts_follow_other_processes_and_rebuild_index(root, make_model, tmp_path):
    with Shelf.open(root) as shelf:
        shelf.import_model(make_model(seed=1), "loras", name="here.safetensors")
        assert_current(shelf)
        # Another process (the CLI) writes to the same root while this one has it open.
        for seed, name in ((2, "a.safetensors"), (3, "b.safetensors")):
            src = make_model(seed=seed)
            run_cli(root, "import", str(src), "--type", "vae", "--name", name, check=True)
        run_cli(root, "rm", "vae/a", check=True)
        figures = assert_current(shelf)
        assert figures["models"] == 2 and set(figures["types"]) == {"loras", "vae"}

        sidecar = shelf.root / "vae" / "b.safetensors.shelf.json"
        sidecar.write_text("{ not json")
        run_cli(root, "rebuild-index", check=True)
        figures = assert_current(shelf)
        assert figures["models"] == 2 and figures["damaged"] == (1, ["vae/b.safetensors"])
        assert shelf.rebuild_index() == 2  # and in this process
        assert assert_current(shelf)["damaged"][0] == 1


def test_an_index_from_before_the_counts_is_counted_when_opened(root, make_model):
    with Shelf.open(root) as shelf:
        src = make_model(seed=1)
        shelf.import_model(src, "loras", name="one.safetensors")
        shelf.import_model(src, "loras", name="two.safetensors")
        stub = shelf.import_model(make_model(seed=2), "vae", name="stub.safetensors")
        archive(stub, shelf.records, shelf.catalog, shelf.remover)
        expected = afresh(shelf)
    # Back to the schema of the version before (issue #12's): no counts, no archived column.
    db = sqlite3.connect(root / ".shelf" / "index.db")
    for statement in (
        "DROP TABLE model_counts",
        "DROP TABLE sha_counts",
        "DROP TABLE health_sweeps",
        "DROP INDEX models_health_order",
        "DROP INDEX models_pending",
        "ALTER TABLE models DROP COLUMN archived",
        "PRAGMA user_version = 4",
    ):
        db.execute(statement)
    db.commit()
    db.close()

    with Shelf.open(root) as shelf:
        assert shown(shelf.health()) == expected == afresh(shelf)
        assert expected["missing"] == (0, []) and expected["duplicates"][0] == 1


def test_rows_written_without_the_counts_are_counted_again(root, make_model):
    """A writer that does not keep the counts (an older version sharing the root): rows it
    adds or removes are counted when the library opens, other changes at the next sweep."""
    with Shelf.open(root) as shelf:
        for seed in (1, 2, 3):
            shelf.import_model(make_model(seed=seed), "loras", name=f"m{seed}.safetensors")
    for path in (root / "loras").glob("m1.safetensors*"):  # an older rm: files, sidecar, row
        path.unlink()
    db = sqlite3.connect(root / ".shelf" / "index.db")
    db.execute("DELETE FROM models WHERE name = 'm1.safetensors'")
    db.commit()
    with Shelf.open(root) as shelf:
        assert assert_current(shelf)["models"] == 2
    db.execute(  # an older verify finding it corrupted: the row, not the counts
        "UPDATE models SET health = 'corrupted',"
        " record_json = json_set(record_json, '$.health', 'corrupted')"
        " WHERE name = 'm2.safetensors'"
    )
    db.commit()
    db.close()
    with Shelf.open(root) as shelf:
        swept = shown(shelf.health(sweep=True))
        assert swept == afresh(shelf) and swept["corrupted"][0] == 1


def test_sweep_figures_are_kept_dated_and_read_by_every_process(root, make_model):
    with Shelf.open(root) as shelf:
        record = shelf.import_model(make_model(seed=1), "loras", name="m.safetensors")
        path = shelf.model_path(record)
        later = path.stat().st_mtime_ns + 5_000_000_000
        os.utime(path, ns=(later, later))  # content touched in place: only a sweep sees it
        leftover = shelf.layout.partial_dir / "0123456789ab.part"  # no task owns it
        leftover.write_bytes(b"x" * 30)
        two_days_ago = time.time() - 2 * 24 * 3600
        os.utime(leftover, (two_days_ago, two_days_ago))

        before = shelf.health()
        assert before.swept_at is None and before.changed.count == before.orphans.count == 0

        swept = shelf.health(sweep=True)
        assert swept.swept_at is not None and swept.swept_at <= swept.generated_at
        assert [i.name for i in swept.changed.items] == ["loras/m.safetensors"]
        assert swept.orphans.count == 1 and swept.orphans.items[0].name == str(leftover)

    with Shelf.open(root) as other:  # another process reads what this sweep found
        kept = other.health()
        assert kept.swept_at == swept.swept_at
        assert (kept.changed.count, kept.orphans.count) == (1, 1)
        [verified] = other.verify(["loras/m.safetensors"])
        assert verified.health is Health.OK
        assert other.health().changed.count == 0  # verified since the sweep
        other.clean()
        assert other.health().orphans.count == 0 and not leftover.exists()


def test_the_start_up_sync_adds_what_it_sees_to_the_kept_figures(root, make_model):
    """Opening the library looks inside the folders that changed: content changed there joins
    the kept figures, and a left-over it removes leaves them; the sweep's time stays."""
    with Shelf.open(root) as shelf:
        record = shelf.import_model(make_model(seed=1), "loras", name="m.safetensors")
        leftover = shelf.root / "loras" / f".x.safetensors~otherhost~1~abcd{TEMP_SUFFIX}"
        leftover.write_bytes(b"x" * 30)
        two_days_ago = time.time() - 2 * 24 * 3600
        os.utime(leftover, (two_days_ago, two_days_ago))
        swept = shelf.health(sweep=True)
        assert (swept.changed.count, swept.orphans.count) == (0, 1)
        path = shelf.model_path(record)
    later = path.stat().st_mtime_ns + 5_000_000_000
    os.utime(path, ns=(later, later))

    with Shelf.open(root) as shelf:  # its sync looks inside loras/ (changed since)
        assert not leftover.exists()
        report = shelf.health()
        assert report.swept_at == swept.swept_at
        assert [i.name for i in report.changed.items] == ["loras/m.safetensors"]
        assert report.orphans.count == 0 and report.orphans.items == []


def test_each_count_agrees_with_its_items_while_another_thread_writes(root, make_model):
    """The report reads one state of the index: while another thread keeps marking models
    corrupted and good again, every report's count is the number of items it lists."""
    with Shelf.open(root) as shelf:
        records = [
            shelf.import_model(make_model(seed=n), "loras", name=f"m{n}.safetensors")
            for n in range(6)
        ]
        stop = threading.Event()

        def toggle() -> None:
            flip = 0
            while not stop.is_set():
                flip += 1
                for n, record in enumerate(records):
                    bad = (n + flip) % 2 == 0
                    record.health = Health.CORRUPTED if bad else Health.OK
                shelf.index.upsert_many((r, 0) for r in records[: 1 + flip % len(records)])

        writer = threading.Thread(target=toggle, name="test-toggle")
        writer.start()
        try:
            for _ in range(200):
                report = shelf.health()
                assert report.corrupted.count == len(report.corrupted.items)
        finally:
            stop.set()
            writer.join(TIMEOUT)


def test_doctor_sweeps_and_says_when(root, make_model):
    """``doctor`` looks at every file now; its report says when those figures were taken."""
    run_cli(root, "import", str(make_model(seed=1)), "--type", "loras", check=True)
    report = json.loads(run_cli(root, "doctor", "--json", check=True).stdout)
    assert report["swept_at"] is not None and report["swept_at"] <= report["generated_at"]
