"""Downloads over HTTPS, as from Hugging Face and Civitai: the body's own TLS connection (the
system's trust store, ``SSL_CERT_FILE`` honoured), a certificate nobody vouches for, and a pause
that has to cut a TLS read short. The server's certificate comes from a throwaway test CA."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from downloads_support import MIB, EngineThread, pause_while_silent, quick_settings
from remote_server import RemoteServer, sha256_of, write_model_file

from model_shelf.library import Shelf
from model_shelf.library.downloads import TaskState


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[RemoteServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with RemoteServer(tls=context) as running:
        yield running


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine trusts the test CA, the way a corporate CA is added: ``SSL_CERT_FILE``."""
    pem = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))


def test_an_https_download_completes_and_is_verified(trusted, tls_server, root, tmp_path):
    src = write_model_file(tmp_path / "remote.safetensors", 6 * MIB)
    tls_server.serve("m.safetensors", src)
    url = tls_server.url("m.safetensors")
    assert url.startswith("https://")
    with Shelf.open(root, quick_settings()) as shelf:
        task = shelf.downloads.add(url, "checkpoints", sha256=sha256_of(src))
        (done,) = shelf.downloads.run_foreground([task.id])
    assert done.state is TaskState.DONE, done.error_message
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"
    assert (root / "checkpoints" / "m.safetensors").read_bytes() == src.read_bytes()


def test_a_certificate_nobody_vouches_for_fails_at_once_and_says_tls(tls_server, root, tmp_path):
    served = tls_server.serve("m.safetensors", write_model_file(tmp_path / "r.safetensors", MIB))
    with Shelf.open(root, quick_settings(max_attempts=5)) as shelf:
        task = shelf.downloads.add(tls_server.url("m.safetensors"), "checkpoints")
        (failed,) = shelf.downloads.run_foreground([task.id])
        assert failed.state is TaskState.FAILED
        assert failed.error_code == "REMOTE_ERROR"
        assert "TLS problem with 127.0.0.1" in failed.error_message
        assert failed.attempts <= 1  # retrying cannot fix a certificate: no hammering
        assert served.requests == []  # the handshake failed: not a byte of HTTP was sent
        assert shelf.list_models() == []


def test_a_pause_cuts_a_tls_read_short_and_resume_continues(trusted, tls_server, root, tmp_path):
    src = write_model_file(tmp_path / "remote.safetensors", 24 * MIB)
    served = tls_server.serve("m.safetensors", src, hold_at_byte=8 * MIB)
    with Shelf.open(root, quick_settings(stall_timeout_seconds=60)) as shelf:
        task = shelf.downloads.add(tls_server.url("m.safetensors"), "checkpoints")
        with EngineThread(shelf) as engine:
            # Only the pause can end the silent TLS read: the stall timeout is a minute away.
            paused = pause_while_silent(shelf, engine, task.id, held_at=8 * MIB)
            assert paused.bytes_done == 8 * MIB
            served.behaviour.hold_at_byte = None
            served.behaviour.release.set()
            shelf.downloads.resume(task.id)
            done = engine.wait_for(task.id, "done", "failed")
    assert done.state is TaskState.DONE, done.error_message
    assert done.hashes["sha256"] == f"sha256:{sha256_of(src)}"
    assert served.requests[1].headers["Range"] == f"bytes={paused.bytes_done}-"
