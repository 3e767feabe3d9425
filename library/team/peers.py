"""LAN peers: who may ask, who we ask, and the small JSON requests between them.

A peer is another Model Shelf (``serve``, or inside ComfyUI) on the local network. It answers
``GET /model-shelf/blobs/{sha256}`` (the file, with Range) and ``GET /model-shelf/peer/models``
(what it shares) only when the request comes from a local-network address and carries the team
token (``Authorization: Bearer <token>``), and only for models its owner shares.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
from collections.abc import Iterable

from ..downloads.http import USER_AGENT
from ..downloads.transport import BodyStream
from ..errors import PeerRefusedError, RemoteError
from .store import StoreEntry

PEER_TIMEOUT_SECONDS = 3.0
"""A peer on the LAN answers at once or is not worth waiting for."""
MAX_LISTING_BYTES = 8 * 1024 * 1024


def is_local_network(address: str | None) -> bool:
    """Loopback, private (RFC 1918, ULA) or link-local: an address on this network."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or (ip.is_private and not ip.is_unspecified)


def check_peer_request(address: str | None, authorization: str | None, token: str | None) -> None:
    """Refuse a peer request from off the local network or without the team token.

    Raises:
        `PeerRefusedError`: sharing has no token set, the address is not local, or the token
            is missing or wrong.
    """
    if not token:
        raise PeerRefusedError("this library shares nothing with peers: no team token is set")
    if not is_local_network(address):
        raise PeerRefusedError(f"peer requests are served to the local network only ({address})")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise PeerRefusedError("a wrong or missing team token")


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class PeerDirectory:
    """Peers known to this process: found by mDNS (`Discovery`), and those marked bad (sent
    bytes that did not match). Peers added by hand live in `TeamConfig.peers`. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[str, str] = {}
        self._bad: dict[str, str] = {}

    def found(self, name: str, url: str) -> None:
        with self._lock:
            self._found[name] = url.rstrip("/")

    def lost(self, name: str) -> None:
        with self._lock:
            self._found.pop(name, None)

    def mark_bad(self, url: str, reason: str) -> None:
        with self._lock:
            self._bad[url.rstrip("/")] = reason

    def bad(self) -> dict[str, str]:
        with self._lock:
            return dict(self._bad)

    def urls(self, configured: Iterable[str]) -> list[str]:
        """Every peer to ask, configured ones first, without the bad ones."""
        with self._lock:
            found = list(self._found.values())
            bad = set(self._bad)
        seen: list[str] = []
        for url in [u.rstrip("/") for u in configured] + found:
            if url not in seen and url not in bad:
                seen.append(url)
        return seen


def get_json(url: str, token: str) -> object:
    """GET a small JSON document from a peer (our transport: errors come typed).

    Raises:
        `RemoteError`, `OfflineError`, `AuthRequiredError`: the peer failed or refused.
    """
    headers = {**auth_headers(token), "User-Agent": USER_AGENT, "Accept": "application/json"}
    body = BodyStream(
        url,
        headers,
        connect_timeout=PEER_TIMEOUT_SECONDS,
        stall_timeout=PEER_TIMEOUT_SECONDS,
        allow_insecure_http=True,  # a configured or discovered peer on the LAN
    )
    try:
        head = body.open()
        body.raise_for_status(head)
        data = bytearray()
        chunk = bytearray(64 * 1024)
        while True:
            n = body.readinto(memoryview(chunk), None)
            if not n:
                break
            data += chunk[:n]
            if len(data) > MAX_LISTING_BYTES:
                raise RemoteError(f"{url}: answer too large", url=url, retryable=False)
    finally:
        body.close()
    try:
        return json.loads(data)
    except ValueError:
        raise RemoteError(f"{url}: not JSON", url=url, retryable=False) from None


def peer_entries(url: str, token: str) -> list[StoreEntry]:
    """What the peer at ``url`` shares."""
    data = get_json(f"{url}/model-shelf/peer/models", token)
    items = data if isinstance(data, list) else []
    return [StoreEntry.model_validate(item) for item in items if isinstance(item, dict)]
