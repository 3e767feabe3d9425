"""Hugging Face and Civitai downloads end to end: local Hub with a signed-URL CDN, local Civitai."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from downloads_support import MIB, EngineThread, quick_settings, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file

from model_shelf.library import Shelf
from model_shelf.library.downloads import TaskState


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


@pytest.fixture
def shelf(root: Path, server: RemoteServer) -> Iterator[Shelf]:
    settings = quick_settings(
        hf_endpoint=server.base_url,
        hf_token="hf_token_for_tests",
        civitai_api_base=f"{server.base_url}/api/v1",
        civitai_api_key="civitai-key",
    )
    with Shelf.open(root, settings) as opened:
        yield opened


def test_hugging_face_file_is_downloaded_verified_and_recorded(shelf, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 8 * MIB)
    server.add_hf_file("org/repo", "vae/m.safetensors", src)
    server.hf_gated_token = "hf_token_for_tests"

    task = shelf.downloads.add("https://huggingface.co/org/repo/blob/main/vae/m.safetensors", "vae")
    (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE, done.error_message
    record = shelf.find("vae/m.safetensors")
    assert record.sha256 == f"sha256:{sha256_of(src)}"
    (source,) = record.sources
    assert (source.kind, source.repo_id, source.path) == (
        "huggingface",
        "org/repo",
        "vae/m.safetensors",
    )
    assert source.revision == server.hf_commit
    assert not server.cdn_saw_authorization  # the token stayed on the Hub


def test_an_expired_signed_url_is_resolved_again_and_the_download_resumes(shelf, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 24 * MIB)
    served = server.add_hf_file(
        "org/repo", "m.safetensors", src, hold_at_byte=8 * MIB, drop_after_hold=True
    )
    task = shelf.downloads.add("hf://org/repo/m.safetensors@main", "checkpoints")

    with EngineThread(shelf) as engine:
        wait_until(lambda: served.bytes_sent >= 8 * MIB)
        server.expire_signed_urls()  # the URL in hand is now refused with 403
        served.behaviour.hold_at_byte = None
        served.behaviour.release.set()  # ...and the connection breaks
        done = engine.wait_for(task.id, "done", "failed")

    assert done.state is TaskState.DONE, done.error_message
    assert server.resolve_count == 2
    assert server.cdn_refusals == 1  # the old URL was refused once, then located again
    assert [r.status for r in served.requests] == [200, 206]  # ...and resumed where it stopped
    assert served.requests[1].headers["Range"] != "bytes=0-"
    assert served.bytes_sent <= 1.05 * src.stat().st_size
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"


def test_hugging_face_content_not_matching_its_lfs_sha256_is_refused(shelf, server, tmp_path):
    published = write_model_file(tmp_path / "published.safetensors", 2 * MIB, seed=1)
    served = server.add_hf_file("org/repo", "m.safetensors", published)
    served.path = write_model_file(tmp_path / "tampered.safetensors", 2 * MIB, seed=2)

    task = shelf.downloads.add("org/repo/m.safetensors", "checkpoints")
    (failed,) = shelf.downloads.run_foreground([task.id])

    assert failed.state is TaskState.FAILED
    assert failed.error_code == "HASH_MISMATCH"
    assert shelf.list_models() == []


def test_hugging_face_sha256_already_in_the_library_is_not_downloaded(shelf, server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 2 * MIB)
    record = shelf.import_model(src, "checkpoints")
    served = server.add_hf_file("org/repo", "m.safetensors", src)

    task = shelf.downloads.add("org/repo/m.safetensors", "checkpoints")
    (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE
    assert done.model_id == record.id
    assert served.requests == []  # located (metadata only), never fetched
    assert "already in the library" in done.wait_reason


def test_civitai_model_page_downloads_with_real_name_type_and_key(shelf, server, tmp_path):
    src = write_model_file(tmp_path / "x.safetensors", 4 * MIB)
    served = server.add_civitai_version(456, 123, src, "detail-tweaker.safetensors", "LORA")
    server.civitai_key = "civitai-key"

    task = shelf.downloads.add("https://civitai.com/models/123/detail?modelVersionId=456")
    (done,) = shelf.downloads.run_foreground([task.id])

    assert done.state is TaskState.DONE, done.error_message
    assert done.model_name == "loras/detail-tweaker.safetensors"  # type and name from the API
    record = shelf.find("loras/detail-tweaker.safetensors")
    assert record.sources[0].kind == "civitai" and record.sources[0].version_id == 456
    assert record.sha256 == f"sha256:{sha256_of(src)}"
    assert all("Authorization" not in r.headers for r in served.requests)  # not sent to storage


def test_civitai_published_hash_that_does_not_match_fails(shelf, server, tmp_path):
    src = write_model_file(tmp_path / "x.safetensors", 1 * MIB)
    server.add_civitai_version(9, 8, src, "x.safetensors", "Checkpoint", sha256="ab" * 32)

    task = shelf.downloads.add("civitai:9")
    (failed,) = shelf.downloads.run_foreground([task.id])

    assert failed.error_code == "HASH_MISMATCH"
    assert "sha256:" + "ab" * 32 in failed.error_message
    assert shelf.list_models() == []
