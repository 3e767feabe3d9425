"""Nothing in a test reaches the internet (imported first by conftest).

Hugging Face and Civitai default to closed loopback ports (port 9 of 127.0.0.2 and 127.0.0.3:
nothing listens, a request fails at once; addresses of their own, so that no test's dead URL on
127.0.0.1 reads as a Hub link); the tests of those APIs serve their own and point at it. Set
before huggingface_hub is imported: it reads ``HF_ENDPOINT`` once, and asks the Hub for a list
of agents on its first call. An audit hook then refuses, in this process, any lookup of a name or
TCP connection off this machine, and notes it in `ATTEMPTS`: conftest fails the test that tried
(code under test may well catch the OSError and carry on "offline").
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys

os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.2:9")
os.environ.setdefault("MODEL_SHELF_DOWNLOAD_CIVITAI_API_BASE", "http://127.0.0.3:9/api/v1")


ATTEMPTS: list[str] = []
"""What tests tried since conftest last looked (then it empties the list)."""


def _on_this_machine(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None or host == "" or host == "localhost" or str(host).endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(str(host).partition("%")[0])
    except ValueError:
        return False  # a name: looking it up asks a DNS server off this machine
    return address.is_loopback or address.is_unspecified or address.is_multicast


def _refuse_the_internet(event: str, args: tuple[object, ...]) -> None:
    """An audit hook: a lookup of a name or a TCP connection to any address off this machine
    fails in the test that tried it (an address literal is looked up without a query; a UDP
    "connect", which sends nothing, is how discovery learns its LAN address)."""
    if event == "socket.getaddrinfo":
        host = args[0]
        literal = isinstance(host, str | bytes) and _is_address(host)
        if not literal and not _on_this_machine(host):
            ATTEMPTS.append(f"looked up {host!r}")
            raise OSError(f"a test looked up {host!r}: tests never leave this machine")
    elif event == "socket.connect":
        sock, address = args[0], args[1]
        stream = getattr(sock, "type", None) == socket.SOCK_STREAM
        if stream and isinstance(address, tuple) and not _on_this_machine(address[0]):
            ATTEMPTS.append(f"connected to {address!r}")
            raise OSError(f"a test connected to {address!r}: tests never leave this machine")


def _is_address(host: str | bytes) -> bool:
    try:
        ipaddress.ip_address((host.decode() if isinstance(host, bytes) else host).partition("%")[0])
    except (ValueError, UnicodeDecodeError):
        return False
    return True


sys.addaudithook(_refuse_the_internet)
