"""Download sources: the forms people paste, and what each source says about a file.

Hugging Face is located by ``huggingface_hub`` itself against a local Hub (our endpoint setting,
not the ``HF_ENDPOINT`` it read at import); Civitai through its API on a local server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from downloads_support import MIB, quick_settings
from remote_server import RemoteServer, sha256_of, write_model_file

from model_shelf.library.errors import (
    AuthRequiredError,
    InsecureURLError,
    InvalidSourceError,
    RemoteError,
)
from model_shelf.library.settings import DownloadSettings
from model_shelf.library.sources import resolve_source, safe_filename

SETTINGS = DownloadSettings()


@pytest.mark.parametrize(
    ("text", "kind", "key"),
    [
        (
            "https://huggingface.co/org/repo/blob/main/sub/m.safetensors",
            "huggingface",
            "hf:model:org/repo@main/sub/m.safetensors",
        ),
        (
            "https://huggingface.co/org/repo/resolve/v1.0/m.safetensors?download=true",
            "huggingface",
            "hf:model:org/repo@v1.0/m.safetensors",
        ),
        (
            "https://hf.co/org/repo/resolve/refs%2Fpr%2F3/m.safetensors",
            "huggingface",
            "hf:model:org/repo@refs/pr/3/m.safetensors",
        ),
        ("hf://org/repo/m.safetensors@v2", "huggingface", "hf:model:org/repo@v2/m.safetensors"),
        ("hf://org/repo@v2/a/m.safetensors", "huggingface", "hf:model:org/repo@v2/a/m.safetensors"),
        ("org/repo/m.safetensors", "huggingface", "hf:model:org/repo@main/m.safetensors"),
        ("hf://datasets/org/data/x.bin", "huggingface", "hf:dataset:org/data@main/x.bin"),
        (
            "https://civitai.com/models/123/some-slug?modelVersionId=456",
            "civitai",
            "civitai:version:456",
        ),
        ("https://civitai.com/models/123", "civitai", "civitai:model:123"),
        ("https://civitai.com/api/download/models/77", "civitai", "civitai:version:77"),
        ("civitai:99", "civitai", "civitai:version:99"),
        ("urn:air:sdxl:checkpoint:civitai:827184@2514310", "civitai", "civitai:version:2514310"),
        ("urn:air:sdxl:lora:civitai:1@2+3", "civitai", "civitai:version:2+3"),
        (
            "https://Example.COM/a/b%20c.safetensors#frag",
            "url",
            "url:https://example.com/a/b%20c.safetensors",
        ),
        ("http://127.0.0.1:8000/x.safetensors", "url", "url:http://127.0.0.1:8000/x.safetensors"),
        ("http://localhost/x.safetensors", "url", "url:http://localhost/x.safetensors"),
        (
            "http://user:Secret@127.0.0.1:8000/x.safetensors",
            "url",
            "url:http://127.0.0.1:8000/x.safetensors",
        ),
        ("sha256:" + "AB" * 32, "sha256", "sha256:" + "ab" * 32),
    ],
)
def test_pasted_forms_are_recognised_offline(text, kind, key):
    source = resolve_source(text, SETTINGS)
    assert (source.kind, source.key) == (kind, key)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nonsense",
        "org/repo",
        "ftp://example.com/x.safetensors",
        "https://huggingface.co/org/repo",
        "https://huggingface.co/org/repo/tree/main",
        "hf://org/repo/../x.safetensors",
        "https://civitai.com/user/someone",
        "sha256:abc",
        "http://user:pw@[::1/x.safetensors",
        "http://127.0.0.1:99999/x.safetensors",
    ],
)
def test_what_is_not_a_source_is_refused_with_its_code(text):
    with pytest.raises(InvalidSourceError) as caught:
        resolve_source(text, SETTINGS)
    assert caught.value.code == "INVALID_SOURCE"


def test_plain_http_is_refused_off_this_machine_unless_allowed():
    with pytest.raises(InsecureURLError) as caught:
        resolve_source("http://example.com/m.safetensors", SETTINGS)
    assert caught.value.code == "INSECURE_URL"
    allowed = DownloadSettings(allow_insecure_http=True)
    assert resolve_source("http://example.com/m.safetensors", allowed).kind == "url"


def test_the_configured_hub_endpoint_is_recognised():
    settings = DownloadSettings(hf_endpoint="http://127.0.0.1:9999")
    source = resolve_source("http://127.0.0.1:9999/org/repo/blob/main/m.safetensors", settings)
    assert source.kind == "huggingface"


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("model.safetensors", "model.safetensors"),
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\evil:name.safetensors", "evil_name.safetensors"),
        ("..", None),
        ("", None),
        (None, None),
    ],
)
def test_server_suggested_names_are_made_safe(name, safe):
    assert safe_filename(name) == safe


# -- located against local servers ------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[RemoteServer]:
    with RemoteServer() as running:
        yield running


def locate(text: str, settings: DownloadSettings):
    return asyncio.run(resolve_source(text, settings).locate())


def test_hugging_face_metadata_comes_from_huggingface_hub(server, tmp_path):
    src = write_model_file(tmp_path / "m.safetensors", 2 * MIB)
    server.add_hf_file("org/repo", "unet/m.safetensors", src)
    settings = quick_settings(hf_endpoint=server.base_url)

    remote = locate("hf://org/repo/unet/m.safetensors", settings)

    assert remote.sha256 == f"sha256:{sha256_of(src)}"
    assert remote.size == src.stat().st_size
    assert remote.filename == "m.safetensors"
    assert remote.url.startswith(server.cdn_url)  # the signed CDN location
    assert remote.expires
    assert remote.headers == {}  # no token, and never one for the CDN
    assert remote.source_ref.revision == server.hf_commit
    assert remote.source_ref.repo_id == "org/repo"
    assert server.resolve_count == 1


def test_a_gated_repository_needs_the_token_and_the_token_is_never_shown(server, tmp_path, caplog):
    src = write_model_file(tmp_path / "m.safetensors", 1 * MIB)
    server.add_hf_file("org/gated", "m.safetensors", src)
    server.hf_gated_token = "hf_supersecret"
    caplog.set_level(logging.DEBUG)

    with pytest.raises(AuthRequiredError) as caught:
        locate("org/gated/m.safetensors", quick_settings(hf_endpoint=server.base_url))
    assert caught.value.code == "AUTH_REQUIRED"
    assert "HF_TOKEN" in caught.value.message

    settings = quick_settings(hf_endpoint=server.base_url, hf_token="hf_supersecret")
    remote = locate("org/gated/m.safetensors", settings)
    assert remote.sha256 == f"sha256:{sha256_of(src)}"
    assert "hf_supersecret" not in repr(settings) + repr(remote) + caplog.text


def test_a_missing_hugging_face_file_is_a_remote_error_that_is_not_retried(server):
    with pytest.raises(RemoteError) as caught:
        locate("org/repo/missing.safetensors", quick_settings(hf_endpoint=server.base_url))
    assert caught.value.status == 404
    assert not caught.value.retryable
    assert "Entry not found" in caught.value.message


def test_civitai_version_gives_real_name_hash_size_and_type(server, tmp_path):
    src = write_model_file(tmp_path / "x.safetensors", 1 * MIB)
    server.add_civitai_version(456, 123, src, "detail-tweaker.safetensors", model_type="LORA")
    settings = quick_settings(civitai_api_base=f"{server.base_url}/api/v1")

    for text in (
        "https://civitai.com/models/123/slug?modelVersionId=456",
        "civitai:456",
        "urn:air:sd1:lora:civitai:123@456",
        "https://civitai.com/models/123",  # the latest version
    ):
        remote = locate(text, settings)
        assert remote.filename == "detail-tweaker.safetensors"
        assert remote.sha256 == f"sha256:{sha256_of(src)}"
        assert remote.model_type == "loras"
        assert abs(remote.size_hint - src.stat().st_size) <= 1024
        assert remote.source_ref.model_id == 123 and remote.source_ref.version_id == 456


def test_civitai_api_key_goes_to_civitai_only(server, tmp_path):
    src = write_model_file(tmp_path / "x.safetensors", 1 * MIB)
    server.add_civitai_version(7, 8, src, "x.safetensors")
    remote = locate(
        "civitai:7",
        quick_settings(civitai_api_base=f"{server.base_url}/api/v1", civitai_api_key="ck-123"),
    )
    assert remote.headers == {"Authorization": "Bearer ck-123"}  # the download URL is Civitai's
    assert remote.url.startswith(server.base_url)


def test_an_unknown_civitai_version_is_not_retried(server):
    with pytest.raises(RemoteError) as caught:
        locate("civitai:404404", quick_settings(civitai_api_base=f"{server.base_url}/api/v1"))
    assert caught.value.status == 404 and not caught.value.retryable


def test_hf_endpoint_comes_from_the_environment_through_settings():
    env = {"HF_ENDPOINT": "http://127.0.0.1:1234/", "HF_TOKEN": "hf_x", "CIVITAI_API_KEY": "c"}
    settings = DownloadSettings.from_env(env)
    assert settings.hf_endpoint == "http://127.0.0.1:1234"
    assert settings.hf_token is not None and settings.hf_token.get_secret_value() == "hf_x"
    assert "hf_x" not in repr(settings)


def test_download_knobs_come_from_the_environment():
    settings = DownloadSettings.from_env(
        {
            "MODEL_SHELF_DOWNLOAD_CONCURRENCY": "4",
            "MODEL_SHELF_DOWNLOAD_BANDWIDTH_LIMIT_BYTES_PER_SECOND": "1000000",
            "MODEL_SHELF_DOWNLOAD_ALLOW_INSECURE_HTTP": "true",
        }
    )
    assert settings.concurrency == 4
    assert settings.bandwidth_limit_bytes_per_second == 1_000_000
    assert settings.allow_insecure_http
