"""Health: corruption found and repaired from a real local server, duplicates, left-overs,
disk headroom, relocation of the whole root, the background hasher, and ``doctor``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import flip_a_byte, run_cli
from downloads_support import quick_env, quick_settings
from remote_server import RemoteServer, write_model_file

from model_shelf.library import Shelf
from model_shelf.library.downloads import DownloadTask, TaskState
from model_shelf.library.fsutil import temp_sibling
from model_shelf.library.health import HealthReport, Severity
from model_shelf.library.records import HashState, Health
from model_shelf.library.settings import DownloadSettings, HealthSettings

TIMEOUT = 30.0
DAY = 24 * 3600


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


@pytest.fixture
def shelf(root: Path) -> Iterator[Shelf]:
    with Shelf.open(root, quick_settings()) as opened:
        yield opened


def downloaded(shelf: Shelf, server: RemoteServer, tmp_path: Path, name: str = "good.safetensors"):
    """A model in the library with a source on the local server (as `add` leaves it)."""
    src = write_model_file(tmp_path / "remote" / name, 256 * 1024, seed=7)
    served = server.serve(name, src)
    task = shelf.downloads.add(server.url(name), "loras")
    (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    return shelf.find(f"loras/{name}"), src, served


# -- corruption and repair -----------------------------------------------------------------------


def test_flipped_byte_is_corrupted_by_name_and_repair_downloads_it_again(root, server, tmp_path):
    with Shelf.open(root, quick_settings()) as shelf:
        record, src, served = downloaded(shelf, server, tmp_path)
    path = root / "loras" / "good.safetensors"
    flip_a_byte(path)

    verify = run_cli(root, "verify")
    assert verify.returncode == 1
    assert "CORRUPTED  loras/good.safetensors  content differs from record: good.safetensors" in (
        verify.stdout
    )

    repaired = subprocess.run(
        [sys.executable, "-m", "model_shelf", "--root", str(root), "repair", "good.safetensors"],
        capture_output=True,
        text=True,
        env=quick_env(),
        timeout=300,
    )
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired  loras/good.safetensors: downloaded again and verified" in repaired.stdout
    assert path.read_bytes() == src.read_bytes()
    assert served.bytes_sent == 2 * src.stat().st_size  # fetched once more, whole

    with Shelf.open(root) as shelf:
        fixed = shelf.find("loras/good.safetensors")
        assert fixed.id == record.id and fixed.hashes == record.hashes
        assert fixed.health is Health.OK and fixed.verified_at is not None
        assert [r.health for r in shelf.verify(["good.safetensors"])] == [Health.OK]
        assert not (root / ".shelf" / "repair").exists() or not any(
            (root / ".shelf" / "repair").iterdir()
        )


def test_repair_keeps_names_and_restores_everything_when_the_download_fails(
    shelf, server, tmp_path
):
    record, src, served = downloaded(shelf, server, tmp_path)
    record.aliases.append("nickname.safetensors")
    record.tags.append("keep-me")
    shelf.catalog.save(record)
    path = shelf.root / "loras" / "good.safetensors"
    flip_a_byte(path)
    shelf.verify(["good.safetensors"])
    broken_bytes = path.read_bytes()
    served.behaviour.failures = [(404, {})]

    [result] = shelf.repair(["good.safetensors"])

    assert not result.ok and "download did not finish" in result.detail
    again = shelf.find("loras/good.safetensors")
    assert again.id == record.id and again.health is Health.CORRUPTED
    assert again.aliases == ["nickname.safetensors"] and again.tags == ["keep-me"]
    assert path.read_bytes() == broken_bytes  # put back as it was

    served.behaviour.failures = []
    [result] = shelf.repair(["nickname.safetensors"])
    assert result.ok, result.detail
    fixed = shelf.find("loras/good.safetensors")
    assert fixed.id == record.id and fixed.aliases == ["nickname.safetensors"]
    assert fixed.tags == ["keep-me"] and path.read_bytes() == src.read_bytes()


def test_a_ghost_with_a_source_is_downloaded_again(shelf, server, tmp_path):
    record, src, _ = downloaded(shelf, server, tmp_path)
    (shelf.root / "loras" / "good.safetensors").unlink()
    shelf.sync()
    assert shelf.find("good.safetensors").health is Health.MISSING

    [result] = shelf.repair(all_broken=True)

    assert result.ok, result.detail
    assert shelf.find("good.safetensors").id == record.id
    assert (shelf.root / "loras" / "good.safetensors").read_bytes() == src.read_bytes()


def test_a_model_without_a_source_is_reported_not_repairable(shelf, make_model):
    record = shelf.import_model(make_model(), "loras", name="local.safetensors")
    flip_a_byte(shelf.root / "loras" / "local.safetensors")
    shelf.verify(["local.safetensors"])

    [result] = shelf.repair(["local.safetensors"])

    assert not result.ok and "no source" in result.detail
    report = shelf.health()
    assert report.corrupted.count == 1 and report.corrupted.items[0].repairable is False
    assert "import a good copy" in (report.corrupted.fix or "")
    assert shelf.find("local.safetensors").id == record.id  # untouched


def test_auto_repair_fetches_a_model_the_background_check_finds_corrupted(shelf, server, tmp_path):
    from downloads_support import EngineThread

    record, src, served = downloaded(shelf, server, tmp_path)
    settings = HealthSettings(debounce_seconds=0.05, auto_repair=True, verify_interval_days=0)
    shelf.start_watching(settings)
    try:
        with EngineThread(shelf):
            flip_a_byte(shelf.root / "loras" / "good.safetensors")
            deadline = time.monotonic() + TIMEOUT
            while served.bytes_sent < 2 * src.stat().st_size or shelf.repairer.pending():
                assert time.monotonic() < deadline, "auto repair did not happen"
                shelf.hasher.wait_idle(1.0)
        fixed = shelf.find("loras/good.safetensors")
        assert fixed.id == record.id and fixed.health is Health.OK
        assert (shelf.root / "loras" / "good.safetensors").read_bytes() == src.read_bytes()
    finally:
        shelf.stop_watching()


# -- duplicates ---------------------------------------------------------------------------------


def test_duplicates_are_reported_and_dedupe_keeps_one_with_the_other_name_as_alias(
    shelf, make_model, tmp_path
):
    src = make_model(seed=11)
    first = shelf.import_model(src, "loras", name="first.safetensors")
    second = shelf.import_model(src, "loras", name="second.safetensors")
    other_type = shelf.import_model(src, "checkpoints", name="elsewhere.safetensors")

    [group] = shelf.duplicates()
    assert group.keep == first.display() and group.others == [second.display()]
    assert group.across_types == [other_type.display()]
    report = shelf.health()
    assert report.duplicates.count == 1 and "dedupe" in (report.duplicates.fix or "")
    assert report.duplicates.reclaimable_bytes == first.size

    result = shelf.dedupe()

    assert result.merged == {first.display(): [second.display()]}
    assert not (shelf.root / "loras" / "second.safetensors").exists()
    assert not (shelf.root / "loras" / "second.safetensors.shelf.json").exists()
    kept = shelf.find("loras/first.safetensors")
    assert "second.safetensors" in kept.aliases
    assert shelf.find("second.safetensors", "loras").id == first.id  # the old name resolves
    assert shelf.find("checkpoints/elsewhere.safetensors").id == other_type.id  # left alone
    journal = (shelf.root / ".shelf" / "deletions.jsonl").read_text()
    assert "duplicate of loras/first.safetensors" in journal and second.id in journal


def test_dedupe_never_keeps_a_copy_that_fails_verification(shelf, make_model):
    src = make_model(seed=12)
    first = shelf.import_model(src, "loras", name="first.safetensors")
    second = shelf.import_model(src, "loras", name="second.safetensors")
    flip_a_byte(shelf.root / "loras" / "first.safetensors")  # not verified yet: looks OK

    result = shelf.dedupe()

    assert result.merged == {second.display(): [first.display()]}
    assert shelf.find("loras/second.safetensors").aliases == ["first.safetensors"]


# -- clean-up -----------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_removes_abandoned_temporaries_and_orphaned_partials_only(shelf):
    folder = shelf.root / "checkpoints"
    live = temp_sibling(folder / "live.safetensors")
    live.write_bytes(b"x" * 10)
    dead = folder / live.name.replace(f"~{os.getpid()}~", f"~{_dead_pid()}~")
    dead.write_bytes(b"x" * 20)
    foreign_old = folder / ".x.safetensors~otherhost~123~abcd1234.shelf-tmp"
    foreign_old.write_bytes(b"x" * 30)
    foreign_new = folder / ".y.safetensors~otherhost~123~abcd1234.shelf-tmp"
    foreign_new.write_bytes(b"x" * 40)
    partial = shelf.layout.partial_dir
    orphan_part = partial / "0123456789ab.part"
    orphan_part.write_bytes(b"p" * 50)
    fresh_part = partial / "ba9876543210.part"
    fresh_part.write_bytes(b"p" * 60)
    paused, _ = shelf.downloads.store.insert(
        DownloadTask(source="x", source_key="k", source_kind="url", state=TaskState.PAUSED)
    )
    paused_part = partial / paused.partial_name
    paused_part.write_bytes(b"p" * 70)
    two_days_ago = time.time() - 2 * DAY
    for old in (foreign_old, orphan_part, paused_part):
        os.utime(old, (two_days_ago, two_days_ago))

    report = shelf.health(sweep=True)  # left-overs are found by a sweep
    assert report.orphans.count == 3 and "clean" in (report.orphans.fix or "")
    cleaned = shelf.clean()

    assert sorted(cleaned.removed) == sorted(map(str, [dead, foreign_old, orphan_part]))
    assert cleaned.bytes_freed == 20 + 30 + 50
    for kept in (live, foreign_new, fresh_part, paused_part):
        assert kept.exists()
    assert (
        "clean: partial download: no download task"
        in (shelf.root / ".shelf" / "deletions.jsonl").read_text()
    )
    assert shelf.health().orphans.count == 0


# -- disk ---------------------------------------------------------------------------------------


def test_disk_report_free_space_and_use_per_type(shelf, make_model):
    a = shelf.import_model(make_model(), "loras")
    b = shelf.import_model(make_model(), "loras")
    c = shelf.import_model(make_model(), "vae")

    disk = shelf.disk_usage()

    usage = shutil.disk_usage(shelf.root)
    assert disk.total_bytes == usage.total
    assert abs(disk.free_bytes - usage.free) < 64 * 1024 * 1024
    per_type = {t.type: (t.models, t.bytes) for t in disk.types}
    assert per_type == {"loras": (2, a.size + b.size), "vae": (1, c.size)}
    assert disk.refuse_below_free_bytes == shelf.downloads.settings.free_space_margin_bytes
    assert shelf.health().disk.severity is Severity.OK


def test_disk_warns_past_the_threshold_and_errs_below_the_download_margin(root):
    with Shelf.open(root) as shelf:
        shelf.health_settings = HealthSettings(disk_warn_used_fraction=1e-9)
        section = shelf.health().disk
        assert section.severity is Severity.WARNING and section.count == 1
        assert "free space" in (section.fix or "")
    huge = DownloadSettings(free_space_margin_bytes=2**62)
    with Shelf.open(root, huge) as shelf:
        section = shelf.health().disk
        assert section.severity is Severity.ERROR
        assert "downloads are refused below" in (section.items[0].detail or "")


# -- relocation ---------------------------------------------------------------------------------


def test_moving_the_whole_root_keeps_every_model_and_hashes_nothing(root, make_model, tmp_path):
    with Shelf.open(root) as shelf:
        made = [
            shelf.import_model(make_model(), "loras", name="a.safetensors"),
            shelf.import_model(make_model(), "checkpoints", name="sdxl/b.safetensors"),
            shelf.import_model(make_model(), "vae", name="c.safetensors"),
        ]
    moved = tmp_path / "new-drive" / "library"
    moved.parent.mkdir()

    os.rename(root, moved)

    with Shelf.open(moved) as shelf:
        report = shelf.last_sync
        assert not (report.registered or report.ghosts or report.dropped or report.reread)
        found = {r.id: r for r in shelf.list_models()}
        assert set(found) == {m.id for m in made}
        assert all(
            r.health is Health.OK and r.hash_state is HashState.HASHED for r in found.values()
        )
        assert (
            shelf.model_path(found[made[1].id]) == moved / "checkpoints" / "sdxl" / "b.safetensors"
        )
        shelf.start_watching(HealthSettings(verify_interval_days=0))
        try:
            assert shelf.hasher.wait_idle(TIMEOUT)
        finally:
            shelf.stop_watching()
        assert shelf.verifier.bytes_hashed == 0
        assert shelf.health().ok


# -- the background hasher -----------------------------------------------------------------------


def test_requested_verification_pass_survives_a_restart(root, make_model):
    with Shelf.open(root) as shelf:
        for _ in range(4):
            shelf.import_model(make_model(), "loras")
        settings = HealthSettings(verify_interval_days=0)
        shelf.start_watching(settings)
        shelf.hasher.pause()
        requested = shelf.hasher.request_pass()
        shelf.stop_watching()  # nothing verified yet: stopped while paused
        assert all(r.verified_at is None for r in shelf.list_models())

    with Shelf.open(root) as shelf:
        shelf.start_watching(HealthSettings(verify_interval_days=0, single_reader=True))
        try:
            assert shelf.hasher.wait_idle(TIMEOUT)
            assert shelf.hasher.status().readers == 1
        finally:
            shelf.stop_watching()
        records = shelf.list_models()
        assert all(r.verified_at is not None and r.verified_at >= requested for r in records)
        assert shelf.verifier.bytes_hashed == sum(r.size for r in records)
        state = json.loads((root / ".shelf" / "verify-pass.json").read_text())
        assert state["finished_at"]


def test_periodic_verification_reads_only_models_due(root, make_model):
    with Shelf.open(root) as shelf:
        old = shelf.import_model(make_model(), "loras", name="old.safetensors")
        shelf.import_model(make_model(), "loras", name="new.safetensors")
        old.verified_at = old.created_at.replace(year=old.created_at.year - 1)
        shelf.catalog.save(old)
        shelf.start_watching(HealthSettings(verify_interval_days=30))
        try:
            assert shelf.hasher.wait_idle(TIMEOUT)
        finally:
            shelf.stop_watching()
        assert shelf.verifier.bytes_hashed == old.size
        assert shelf.find("old.safetensors").verified_at.year == old.created_at.year


def test_the_throttle_paces_reading():
    import threading

    from model_shelf.library.health.hasher import Throttle

    stop = threading.Event()
    throttle = Throttle(1000, stop)
    clock = time.monotonic()
    for _ in range(3):
        throttle.consume(500)  # 1.5 s of budget; 0.25 s forgiven as burst
    assert time.monotonic() - clock >= 1.0  # paced, not a timing benchmark: a lower bound


# -- doctor --------------------------------------------------------------------------------------


def test_doctor_lists_every_problem_with_counts_and_fixes(root, make_model):
    with Shelf.open(root) as shelf:
        shelf.import_model(make_model(), "loras", name="broken.safetensors")
        shelf.import_model(make_model(), "vae", name="gone.safetensors")
        dup = make_model(seed=99)
        shelf.import_model(dup, "loras", name="dup-a.safetensors")
        shelf.import_model(dup, "loras", name="dup-b.safetensors")
    flip_a_byte(root / "loras" / "broken.safetensors")
    run_cli(root, "verify", "broken.safetensors")
    (root / "vae" / "gone.safetensors").unlink()
    (root / "loras" / "pending.safetensors").write_bytes(make_model(seed=5).read_bytes())

    text = run_cli(root, "doctor")
    assert text.returncode == 1
    out = text.stdout
    assert "ERROR    corrupted        1" in out and "loras/broken.safetensors" in out
    assert "WARNING  missing          1" in out and "vae/gone.safetensors" in out
    assert "info     duplicates       1" in out and "dedupe" in out
    assert "info     pending          1" in out
    assert "repair NAME" in out and "purge-ghosts" in out

    data = json.loads(run_cli(root, "doctor", "--json").stdout)
    report = HealthReport.model_validate(data)
    assert not report.ok and report.models == 5
    counts = {s.key: s.count for s in report.sections()}
    assert counts == {
        "corrupted": 1,
        "missing": 1,
        "damaged": 0,
        "changed": 0,
        "pending": 1,
        "duplicates": 1,
        "orphans": 0,
        "disk": 0,
        "failing_loads": 0,  # issue #14: loaders failing in ComfyUI runs
    }
    assert all(s.fix for s in report.sections() if s.count)


def test_cli_dedupe_purge_and_clean(root, make_model):
    with Shelf.open(root) as shelf:
        dup = make_model(seed=3)
        shelf.import_model(dup, "loras", name="one.safetensors")
        shelf.import_model(dup, "loras", name="two.safetensors")
        shelf.import_model(make_model(), "vae", name="ghost.safetensors")
    (root / "vae" / "ghost.safetensors").unlink()

    dry = run_cli(root, "dedupe", check=True)
    assert "keep loras/one.safetensors; make aliases of: loras/two.safetensors" in dry.stdout
    assert (root / "loras" / "two.safetensors").exists()
    done = run_cli(root, "dedupe", "--yes", check=True)
    assert "kept loras/one.safetensors; now aliases: loras/two.safetensors" in done.stdout
    assert not (root / "loras" / "two.safetensors").exists()

    purged = run_cli(root, "purge-ghosts", check=True)
    assert "forgot vae/ghost.safetensors" in purged.stdout
    assert (
        run_cli(root, "clean", check=True)
        .stdout.strip()
        .endswith("0 left-overs removed, 0 B freed")
    )
    assert json.loads(run_cli(root, "doctor", "--json", check=True).stdout)["ok"] is True


def test_help_lists_the_health_commands(root):
    out = run_cli(root, "--help", check=True).stdout
    for command in ("doctor", "repair", "dedupe", "purge-ghosts", "clean"):
        assert command in out
