"""Metadata by hash (issue #12) against a loopback server that answers like Civitai's and the Hub's
APIs: trust badges, previews and thumbnails, the cache, 404/429/timeout/malformed answers,
offline, the user's own values, the newer version and the enriched source in workflows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import tree_snapshot
from enrich_server import EnrichServer, png_bytes

from model_shelf.library import Shelf
from model_shelf.library.metadata import NOT_FETCHED, Trust, UserMetadata
from model_shelf.library.records import SourceRef
from model_shelf.library.settings import DownloadSettings, EnrichSettings


@pytest.fixture
def server() -> Iterator[EnrichServer]:
    with EnrichServer() as running:
        yield running


def open_shelf(root: Path, server: EnrichServer, **enrich: object) -> Shelf:
    downloads = DownloadSettings(
        civitai_api_base=server.civitai_base,
        hf_endpoint=server.hf_endpoint,
        breaker_failure_threshold=3,
    )
    settings = EnrichSettings(requests_per_second=20, timeout_seconds=2, **enrich)
    return Shelf.open(root, downloads, enrich_settings=settings)


@pytest.fixture
def library(root: Path, server: EnrichServer) -> Iterator[Shelf]:
    with open_shelf(root, server) as shelf:
        yield shelf


def add(shelf: Shelf, make_model, name: str, seed: int, sources=()):
    path = make_model(name, seed=seed)
    return shelf.import_model(path, "loras", sources=sources)


def test_badges_verified_likely_guess_and_none(library: Shelf, server: EnrichServer, make_model):
    verified = add(library, make_model, "exact.safetensors", 1)
    server.add_version(101, 11, "exact.safetensors", verified.sha256, verified.size)
    # Civitai does not know this hash, but the record names a version whose file has our
    # name and size (Civitai published no hash for it): likely.
    likely = add(
        library,
        make_model,
        "named.safetensors",
        2,
        [SourceRef(kind="civitai", url="https://civitai.com/models/12", version_id=102)],
    )
    server.add_version(102, 12, "named.safetensors", None, likely.size)
    # Same name, other size, no hash: a guess.
    guess = add(
        library,
        make_model,
        "guessed.safetensors",
        3,
        [SourceRef(kind="civitai", url="https://civitai.com/models/13", version_id=103)],
    )
    server.add_version(103, 13, "guessed.safetensors", None, guess.size + 10_000)
    # Hugging Face: the LFS sha256 of the file the record names equals ours.
    hub = add(
        library,
        make_model,
        "hub.safetensors",
        4,
        [SourceRef(kind="huggingface", url="x", repo_id="org/repo", path="hub.safetensors")],
    )
    server.add_hf_file("org/repo", "hub.safetensors", hub.size, hub.sha256)
    # The Hub knows a file of that name but with another hash: only a guess.
    hub_other = add(
        library,
        make_model,
        "other.safetensors",
        5,
        [SourceRef(kind="huggingface", url="x", repo_id="org/two", path="other.safetensors")],
    )
    server.add_hf_file("org/two", "other.safetensors", hub_other.size, "ab" * 32)
    nobody = add(library, make_model, "unknown.safetensors", 6)

    report = library.enrich()

    assert report.failures == []
    assert report.trust == {"verified": 2, "likely": 1, "guess": 2}
    assert report.unknown == 1
    views = {r.name: library.metadata(r.id) for r in library.list_models()}
    assert views["exact.safetensors"].trust is Trust.VERIFIED
    assert views["exact.safetensors"].base_model == "SDXL 1.0"
    assert views["exact.safetensors"].trained_words == ["shelfstyle"]
    assert views["exact.safetensors"].page_url == f"{server.base_url}/models/11?modelVersionId=101"
    assert views["exact.safetensors"].licence.allow_commercial_use == ["Image", "Rent"]
    assert views["named.safetensors"].trust is Trust.LIKELY
    assert views["guessed.safetensors"].trust is Trust.GUESS
    assert views["hub.safetensors"].trust is Trust.VERIFIED
    assert views["hub.safetensors"].licence.name == "openrail++"
    assert views["other.safetensors"].trust is Trust.GUESS
    assert views["unknown.safetensors"].status == "unknown"
    # Stored in the sidecar, the source of truth: a rebuilt index still knows it.
    library.rebuild_index()
    assert library.metadata(verified.id).trust is Trust.VERIFIED
    assert nobody.id in {r.id for r in library.list_models()}


def test_batched_and_cached_a_second_run_asks_nobody(
    library: Shelf, server: EnrichServer, make_model
):
    records = [add(library, make_model, f"m{i}.safetensors", 10 + i) for i in range(5)]
    for i, record in enumerate(records[:4]):
        server.add_version(200 + i, 20 + i, record.name, record.sha256, record.size)

    first = library.enrich()
    assert server.requests["v1"] == 2  # one by-hash batch, one models?ids batch
    assert first.requests == 2
    second = library.enrich()
    assert second.requests == 0 and server.requests["v1"] == 2
    assert second.trust == {"verified": 4} and second.unknown == 1
    third = library.enrich(refresh=True)
    assert third.requests == 2


def test_preview_and_thumbnail_written_beside_the_model(
    library: Shelf, server: EnrichServer, make_model, root: Path
):
    record = add(library, make_model, "pretty.safetensors", 30)
    unsafe = server.add_image("x.png", png_bytes(color=(0, 0, 0)))
    safe = server.add_image("safe.png", png_bytes((640, 480)))
    images = [
        {"url": unsafe, "nsfwLevel": 8, "width": 64, "height": 48, "type": "image"},
        {"url": safe, "nsfwLevel": 1, "width": 640, "height": 480, "type": "image"},
    ]
    server.add_version(301, 31, record.name, record.sha256, record.size, images=images)

    report = library.enrich()

    assert report.previews == 1 and report.failures == []
    preview = root / "loras" / "pretty.preview.png"
    assert preview.read_bytes() == server.images["safe.png"][1]  # the safe one, not the first
    stored = library.get(record.id).metadata.preview
    assert stored.file == "loras/pretty.preview.png"
    from PIL import Image

    with Image.open(root / stored.thumbnail) as thumb:
        assert max(thumb.size) <= 256 and thumb.format == "WEBP"
    assert not list(root.rglob("*.tmp*"))


def test_nsfw_setting_allows_more(root: Path, server: EnrichServer, make_model):
    with open_shelf(root, server, nsfw_max_level=8) as shelf:
        record = add(shelf, make_model, "spicy.safetensors", 31)
        url = server.add_image("r.png", png_bytes())
        images = [{"url": url, "nsfwLevel": 4, "width": 64, "height": 48, "type": "image"}]
        server.add_version(311, 32, record.name, record.sha256, record.size, images=images)
        assert shelf.enrich().previews == 1


def test_default_hides_nsfw_previews(library: Shelf, server: EnrichServer, make_model, root):
    record = add(library, make_model, "hidden.safetensors", 32)
    url = server.add_image("r.png", png_bytes())
    images = [{"url": url, "nsfwLevel": 4, "width": 64, "height": 48, "type": "image"}]
    server.add_version(321, 33, record.name, record.sha256, record.size, images=images)
    assert library.enrich().previews == 0
    assert server.requests["img"] == 0
    assert not (root / "loras" / "hidden.preview.png").exists()


def test_a_body_that_is_no_image_is_refused(
    library: Shelf, server: EnrichServer, make_model, root: Path
):
    record = add(library, make_model, "fake.safetensors", 33)
    url = server.add_image("fake.png", b"<script>alert(1)</script>", "image/png")
    images = [{"url": url, "nsfwLevel": 1, "width": 1, "height": 1, "type": "image"}]
    server.add_version(331, 34, record.name, record.sha256, record.size, images=images)
    report = library.enrich()
    assert report.previews == 0
    assert any("not a PNG" in f for f in report.failures)
    assert sorted(p.name for p in (root / "loras").iterdir()) == [
        "fake.safetensors",
        "fake.safetensors.shelf.json",
    ]


def test_nothing_outside_the_root_is_touched(
    library: Shelf, server: EnrichServer, make_model, root: Path, tmp_path: Path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "loras" / "escape").symlink_to(outside, target_is_directory=True)
    record = add(library, make_model, "inner.safetensors", 34)
    library.sync(full=True)
    linked = library.import_model(
        make_model("far.safetensors", seed=35), "loras", name="escape/far"
    )
    image = server.add_image("p.png", png_bytes())
    images = [{"url": image, "nsfwLevel": 1, "width": 64, "height": 48, "type": "image"}]
    for i, rec in enumerate((record, linked)):
        server.add_version(340 + i, 35 + i, rec.name, rec.sha256, rec.size, images=images)
    before = tree_snapshot(outside)
    report = library.enrich()
    assert tree_snapshot(outside) == before | {
        "far.safetensors": before.get("far.safetensors", tree_snapshot(outside)["far.safetensors"]),
        "far.safetensors.shelf.json": tree_snapshot(outside)["far.safetensors.shelf.json"],
    }
    assert not (outside / "far.preview.png").exists()
    assert any("outside the library root" in f for f in report.failures)
    assert (root / "loras" / "inner.preview.png").exists()


def test_offline_asks_nobody_and_says_not_fetched(root: Path, server: EnrichServer, make_model):
    with open_shelf(root, server, offline=True) as shelf:
        record = add(shelf, make_model, "quiet.safetensors", 40)
        server.add_version(401, 41, record.name, record.sha256, record.size)
        report = shelf.enrich()
        assert report.offline and report.requests == 0
        assert shelf.start_enriching() is None
        view = shelf.metadata(record.id)
    assert server.total_requests == 0
    assert view.status == "not_fetched" and view.message == NOT_FETCHED


def test_404_429_timeout_and_malformed(root: Path, server: EnrichServer, make_model):
    with open_shelf(root, server, max_attempts=3, retry_after_max_seconds=5) as shelf:
        record = add(shelf, make_model, "busy.safetensors", 50)
        server.add_version(501, 51, record.name, record.sha256, record.size)
        # A 404 on a version asked by id is "not found", cached, and no failure.
        gone = add(
            shelf,
            make_model,
            "gone.safetensors",
            52,
            [SourceRef(kind="civitai", url="https://civitai.com/models/9", version_id=999)],
        )
        # 429 with Retry-After: waited out, then answered.
        server.misbehave.failures = [(429, {"Retry-After": "1"})]
        report = shelf.enrich()
        assert report.failures == [], report.failures
        assert shelf.metadata(record.id).trust is Trust.VERIFIED
        assert shelf.metadata(gone.id).status == "unknown"
        assert server.requests["v1"] == 4  # 429 + by-hash + version 404 + models

        # A malformed body: a failure, and the record keeps what it knew.
        server.misbehave.malformed = True
        report = shelf.enrich(refresh=True)
        assert any("not JSON" in f for f in report.failures)
        assert shelf.metadata(record.id).trust is Trust.VERIFIED
        server.misbehave.malformed = False

        # A server that never answers: the timeout ends it; after 3 failures the breaker opens
        # and no more requests go out.
        server.misbehave.hang = True
        for _ in range(3):
            report = shelf.enrich(refresh=True)
            assert report.failures
        asked = server.total_requests
        report = shelf.enrich(refresh=True)
        assert any("not asking it again" in f for f in report.failures)
        assert server.total_requests == asked
        assert shelf.metadata(record.id).trust is Trust.VERIFIED


def test_user_values_win_and_survive_a_refresh(library: Shelf, server: EnrichServer, make_model):
    record = add(library, make_model, "mine.safetensors", 60)
    server.add_version(601, 61, record.name, record.sha256, record.size)
    library.enrich()
    library.edit_metadata(record.id, UserMetadata(base_model="Pony", trained_words=["mytoken"]))
    library.enrich(refresh=True)
    view = library.metadata(record.id)
    assert view.base_model == "Pony" and view.trained_words == ["mytoken"]
    assert view.trust is Trust.VERIFIED


def test_newer_version_is_queued_through_the_download_queue(
    library: Shelf, server: EnrichServer, make_model
):
    record = add(library, make_model, "old.safetensors", 70)
    server.add_version(701, 71, record.name, record.sha256, record.size)
    server.add_version(702, 71, "new.safetensors", "cd" * 32, record.size)
    library.enrich()
    newer = library.metadata(record.id).newer_version
    assert newer is not None and newer.version_id == 702 and newer.source == "civitai:702"
    task = library.queue_update(record.id)
    assert task.source == "civitai:702" and task.model_type == "loras"
    assert library.downloads.get(task.id).state.value == "queued"


def test_stamp_uses_the_enriched_source(library: Shelf, server: EnrichServer, make_model):
    record = add(library, make_model, "stampme.safetensors", 80)
    server.add_version(801, 81, record.name, record.sha256, record.size)
    workflow = {
        "nodes": [
            {
                "id": 1,
                "type": "LoraLoader",
                "widgets_values": ["stampme.safetensors", 1.0, 1.0],
                "properties": {},
            }
        ]
    }
    before = library.stamp_workflow(workflow)
    assert before.stamped == []
    library.enrich()
    report = library.stamp_workflow(workflow)
    models = report.workflow["nodes"][0]["properties"]["models"]
    assert models[0]["url"] == f"{server.base_url}/api/download/models/801"
    assert models[0]["hash"] == record.sha256.removeprefix("sha256:")


def test_background_worker_enriches_new_models(root: Path, server: EnrichServer, make_model):
    with open_shelf(root, server, sweep_interval_seconds=0.05) as shelf:
        record = add(shelf, make_model, "later.safetensors", 90)
        server.add_version(901, 91, record.name, record.sha256, record.size)
        worker = shelf.start_enriching()
        assert worker is not None
        assert worker.wait_idle(timeout=30)
        assert shelf.metadata(record.id).trust is Trust.VERIFIED


def test_cli_enrich_and_show(root: Path, server: EnrichServer, make_model, monkeypatch):
    from conftest import run_cli

    with open_shelf(root, server) as shelf:
        record = add(shelf, make_model, "cli.safetensors", 100)
    server.add_version(1001, 101, record.name, record.sha256, record.size)
    before = run_cli(root, "show", "cli.safetensors", check=True)
    assert "metadata: metadata not fetched yet" in before.stdout

    monkeypatch.setenv("MODEL_SHELF_ENRICH_OFFLINE", "1")
    offline = run_cli(root, "enrich", check=True)
    assert "nothing asked" in offline.stdout and server.total_requests == 0

    monkeypatch.setenv("MODEL_SHELF_ENRICH_OFFLINE", "0")
    monkeypatch.setenv("MODEL_SHELF_DOWNLOAD_CIVITAI_API_BASE", server.civitai_base)
    monkeypatch.setenv("MODEL_SHELF_ENRICH_REQUESTS_PER_SECOND", "20")
    done = run_cli(root, "enrich", "cli.safetensors", check=True)
    assert "1 verified" in done.stdout and "2 requests" in done.stdout
    again = run_cli(root, "enrich", "--json", check=True)
    assert '"requests": 0' in again.stdout
    shown = run_cli(root, "show", "cli.safetensors", check=True).stdout
    assert "metadata: verified from civitai: Model 101 v1001" in shown
    assert "base model: SDXL 1.0" in shown and "triggers: shelfstyle" in shown
