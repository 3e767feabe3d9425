"""Issue #11: a workflow's downloads reach only public addresses, or hosts the user allowed;
each hop (redirects too) is resolved once, checked, and connected to by that address.

No test talks to a public address: names are resolved by the guard's resolver seam (a
dictionary), and every name that is connected to resolves to 127.0.0.1, where `RemoteServer`
listens. A name only the seam knows (``models.test``) that downloads, looked up once, proves the
connection went to the checked address, not to a second lookup (the system resolver is never
asked: that would send a DNS query off this machine).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from downloads_support import EngineThread, quick_settings, wait_until
from remote_server import RemoteServer, sha256_of, write_model_file

from model_shelf.library import Shelf
from model_shelf.library.downloads import TaskOrigin, TaskState
from model_shelf.library.downloads.addresses import FetchGuard, address_kind
from model_shelf.library.downloads.transport import BodyStream
from model_shelf.library.errors import FetchRefusedError
from model_shelf.library.stored_settings import StoredLimits


class Resolver:
    """A name -> addresses table that counts its lookups (the guard's resolver seam)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.20", "private"),
        ("fd12:3456::1", "private"),  # ULA
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::fb", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo client 10.0.0.1
        ("fec0::1", "site-local"),
        ("64:ff9b::808:808", None),  # NAT64 of 8.8.8.8: public
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_what_is_not_public(address: str, kind: str | None) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_every_address_of_a_name_is_checked_and_allowed_hosts_pass() -> None:
    resolver = Resolver(
        {
            "cdn.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            "mixed.example": ["93.184.215.14", "10.0.0.7"],  # one private answer is enough
            "intranet.example": ["192.168.1.5"],
        }
    )
    guard = FetchGuard([], resolver)
    assert guard.addresses("https://cdn.example/m.safetensors") == resolver.table["cdn.example"]
    for url in (
        "https://mixed.example/m.safetensors",
        "http://intranet.example:8080/m.safetensors",
        "http://127.0.0.1:8188/view?filename=x",
        "http://[::1]:8188/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:8188/",
    ):
        with pytest.raises(FetchRefusedError) as refused:
            guard.addresses(url)
        message = refused.value.message
        assert "MODEL_SHELF_ALLOWED_FETCH_HOSTS=" in message and "allowed_fetch_hosts" in message
    assert refused.value.code == "FETCH_REFUSED"
    assert "intranet.example (192.168.1.5)" in str(_refusal(guard, "http://intranet.example/"))
    # allowed by name (any port), by name and port, by address
    allowed = FetchGuard(["intranet.example", "127.0.0.1:8188", "[::1]:8188"], resolver)
    assert allowed.addresses("http://intranet.example:8080/m") == ["192.168.1.5"]
    assert allowed.addresses("http://127.0.0.1:8188/m") == ["127.0.0.1"]
    assert allowed.addresses("http://[::1]:8188/m") == ["::1"]
    assert isinstance(_refusal(allowed, "http://127.0.0.1:9999/m"), FetchRefusedError)
    with pytest.raises(socket.gaierror):  # the transport types it as offline
        guard.addresses("https://nowhere.example/m")


def _refusal(guard: FetchGuard, url: str) -> FetchRefusedError:
    with pytest.raises(FetchRefusedError) as refused:
        guard.addresses(url)
    return refused.value


# -- the transport: every hop, at connect time ----------------------------------------------------


@pytest.fixture
def remote() -> Iterator[RemoteServer]:
    with RemoteServer() as server:
        yield server


def _stream(url: str, guard: FetchGuard | None) -> BodyStream:
    return BodyStream(
        url, {}, connect_timeout=5.0, stall_timeout=10.0, allow_insecure_http=True, guard=guard
    )


def port_of(remote: RemoteServer) -> int:
    return int(remote.base_url.rsplit(":", 1)[1])


def _on(name: str, url: str) -> str:
    """``url`` (on 127.0.0.1) with its host replaced by ``name``."""
    return url.replace("127.0.0.1", name, 1)


def test_the_checked_address_is_the_one_connected_to(remote: RemoteServer, tmp_path: Path) -> None:
    src = write_model_file(tmp_path / "m.safetensors", 64 * 1024)
    served = remote.serve("m.safetensors", src)
    resolver = Resolver({"models.test": ["127.0.0.1"]})
    stream = _stream(
        _on("models.test", remote.url("m.safetensors")), FetchGuard(["models.test"], resolver)
    )
    try:
        head = stream.open()
        assert head.status == 200
        buffer = bytearray(src.stat().st_size + 1)
        assert stream.readinto(memoryview(buffer)) == src.stat().st_size
    finally:
        stream.close()
    assert bytes(buffer[: src.stat().st_size]) == src.read_bytes()
    assert resolver.calls == ["models.test"]  # resolved once: nothing looked it up again
    assert served.requests[0].headers["Host"].startswith("models.test:")  # the name, as sent


def test_a_private_address_is_refused_before_any_request(
    remote: RemoteServer, tmp_path: Path
) -> None:
    served = remote.serve("m.safetensors", write_model_file(tmp_path / "m.safetensors", 4096))
    resolver = Resolver({"models.test": ["127.0.0.1"]})
    for url in (remote.url("m.safetensors"), _on("models.test", remote.url("m.safetensors"))):
        stream = _stream(url, FetchGuard([], resolver))
        with pytest.raises(FetchRefusedError, match="loopback"):
            stream.open()
        stream.close()
    assert served.requests == []


def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(
    remote: RemoteServer, tmp_path: Path
) -> None:
    target = remote.serve("target.safetensors", write_model_file(tmp_path / "t.safetensors", 4096))
    redirect = {"Location": remote.url("target.safetensors")}
    hop = remote.serve("m.safetensors", tmp_path / "t.safetensors", failures=[(302, redirect)])
    resolver = Resolver({"models.test": ["127.0.0.1"]})
    stream = _stream(
        _on("models.test", remote.url("m.safetensors")), FetchGuard(["models.test"], resolver)
    )
    with pytest.raises(FetchRefusedError) as refused:
        stream.open()
    stream.close()
    assert refused.value.host == f"127.0.0.1:{port_of(remote)}"
    assert [r.status for r in hop.requests] == [302]  # the allowed host was asked...
    assert target.requests == []  # ...the loopback address it pointed at never was


# -- the engine: who asked decides ----------------------------------------------------------------


def test_a_workflows_download_needs_the_setting_and_the_users_does_not(
    remote: RemoteServer, tmp_path: Path
) -> None:
    src = write_model_file(tmp_path / "remote" / "m.safetensors", 256 * 1024, seed=4)
    served = remote.serve("m.safetensors", src)
    url = remote.url("m.safetensors")
    with Shelf.open(tmp_path / "library", quick_settings()) as shelf, EngineThread(shelf):
        task = shelf.fetcher.request(url, "loras", origin=TaskOrigin.WORKFLOW)
        failed = wait_until(
            lambda: (t := shelf.downloads.get(task.id)).in_terminal_state and t, 60, "refusal"
        )
        assert failed.state is TaskState.FAILED and failed.error_code == "FETCH_REFUSED"
        assert (
            f"MODEL_SHELF_ALLOWED_FETCH_HOSTS=127.0.0.1:{port_of(remote)}" in failed.error_message
        )
        assert served.requests == []
        # the user allows the host (the sidebar's setting): asking again fetches it
        shelf.update_download_settings(StoredLimits(allowed_fetch_hosts=("127.0.0.1",)))
        again = shelf.fetcher.request(url, "loras", origin=TaskOrigin.WORKFLOW)
        assert again.id == task.id
        done = wait_until(
            lambda: (t := shelf.downloads.get(task.id)).in_terminal_state and t, 60, "download"
        )
        assert done.state is TaskState.DONE, done.error_message
        assert sha256_of(shelf.root / "loras" / "m.safetensors") == sha256_of(src)


def test_the_user_adding_a_refused_url_lifts_the_refusal(
    remote: RemoteServer, tmp_path: Path
) -> None:
    src = write_model_file(tmp_path / "remote" / "m.safetensors", 64 * 1024, seed=5)
    remote.serve("m.safetensors", src)
    redirect = {"Location": remote.url("m.safetensors")}
    remote.serve("hop.safetensors", src, failures=[(302, redirect)])
    # ``localhost``: a name the system resolves (to loopback), allowed here by name, as a user
    # would allow a mirror; its redirect to an address that is not allowed is refused.
    url = _on("localhost", remote.url("hop.safetensors"))
    settings = quick_settings(allowed_fetch_hosts=("localhost",))
    with Shelf.open(tmp_path / "library", settings) as shelf, EngineThread(shelf):
        task = shelf.fetcher.request(url, "loras", "m.safetensors", origin=TaskOrigin.WORKFLOW)
        failed = wait_until(
            lambda: (t := shelf.downloads.get(task.id)).in_terminal_state and t, 60, "refusal"
        )
        assert failed.error_code == "FETCH_REFUSED", failed.error_message
        assert f"127.0.0.1:{port_of(remote)}" in failed.error_message  # the redirect's target
        # The user's own add of the same URL: their choice, wherever it redirects.
        remote.files["hop.safetensors"].behaviour.failures.append((302, redirect))
        added = shelf.downloads.add(url, "loras", "m.safetensors")
        assert added.id == task.id and added.origin is TaskOrigin.USER
        done = wait_until(
            lambda: (t := shelf.downloads.get(task.id)).in_terminal_state and t, 60, "download"
        )
        assert done.state is TaskState.DONE, done.error_message
