"""Where a download that a workflow asked for may connect: the defence against server-side
request forgery (issue #11).

A shared workflow names its models' URLs, and the server fetches them by itself (auto-fetch on
``/prompt``, the page's missing-models dialog, the Fetch Model node, ``fetch-lock``). Without a
check, a workflow could make the server request ``http://127.0.0.1:8188/...``, a router's admin
page or a cloud metadata address (``169.254.169.254``) and learn from the errors what answers
there. So, for those downloads only, every hop (the first URL and each redirect) is resolved
once, every address it resolves to must be public, and the connection goes to one of exactly
those addresses: a DNS answer that changes between the check and the connect (DNS rebinding)
cannot swap in another.

Not public: loopback, link-local, private (RFC 1918, ULA ``fc00::/7``, CGNAT ``100.64/10``),
unspecified, multicast, reserved, and the IPv4-mapped forms of those. A host the user allowed
(`DownloadSettings.allowed_fetch_hosts`, ``host`` or ``host:port``) passes whatever it resolves
to. What the user adds by hand, the team stores and the LAN peers are not checked at all: the
user chose them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from ..errors import FetchRefusedError
from ..settings import ALLOWED_FETCH_HOSTS_ENV

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> addresses`` (text, in the order to try). Raises `socket.gaierror`."""


def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for ``host`` (``getaddrinfo``), each address once, in its order.

    Raises:
        `socket.gaierror`: no such host, or no network.
    """
    found: list[str] = []
    for _family, _type, _proto, _name, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


def is_ip_address(text: str) -> bool:
    """True if ``text`` is an IPv4 or IPv6 address (no brackets, no port), not a name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def address_kind(address: IPAddress) -> str | None:
    """What makes ``address`` not public (``"loopback"``, ``"private"``...), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:  # fec0::/10: deprecated, still routed inside some networks
            return "site-local"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            address = embedded  # ``::ffff:127.0.0.1`` is 127.0.0.1, and so on
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for kind, matches in checks:
        if matches:
            return kind
    return None if address.is_global else "not globally routable"


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and leads to: IPv4-mapped, 6to4 (2002::/16),
    Teredo (2001::/32, the client's) or NAT64's well-known prefix (64:ff9b::/96)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _port_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    return host, parts.port or (443 if parts.scheme.lower() == "https" else 80)


def _entry(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class FetchGuard:
    """Checks each hop of a download a workflow asked for (see the module docstring).

    Args:
        allowed (`Iterable[str]`): ``host`` or ``host:port`` (IPv6 in brackets with a port)
            that may resolve anywhere.
        resolver (`Resolver`, *optional*): how names are resolved (tests give their own).
    """

    def __init__(self, allowed: Iterable[str], resolver: Resolver = system_resolver) -> None:
        self.allowed = frozenset(a.strip().lower() for a in allowed)
        self.resolver = resolver

    def allows(self, host: str, port: int) -> bool:
        """True if the user allowed ``host`` (on any port) or ``host:port``."""
        bare = host.strip("[]")
        return bool(
            {bare, f"[{bare}]", _entry(bare, port)} & self.allowed
            or (":" not in bare and f"{bare}:{port}" in self.allowed)
        )

    def addresses(self, url: str) -> list[str]:
        """The addresses to connect to for ``url``, each one checked.

        Returns:
            `list[str]`: the resolved addresses, in the order to try; only these may be used.

        Raises:
            `FetchRefusedError`: the host resolves to an address that is not public and the user
                did not allow it.
            `socket.gaierror`: the host cannot be resolved (the caller types it as offline).
        """
        host, port = _port_of(url)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        found = [str(literal)] if literal is not None else self.resolver(host, port)
        if self.allows(host, port):
            return found
        for text in found:
            kind = address_kind(ipaddress.ip_address(text.split("%", 1)[0]))
            if kind is not None:
                shown = host if literal is not None else f"{host} ({text})"
                raise FetchRefusedError(
                    f"refused to fetch from {shown}: a {kind} address, on this machine or its "
                    "network, and the download was asked for by a workflow. Add the URL "
                    f"yourself (add, or the sidebar's add box), or allow the host with "
                    f"{ALLOWED_FETCH_HOSTS_ENV}={_entry(host, port)} (or the "
                    "allowed_fetch_hosts setting)",
                    url=url,
                    host=_entry(host, port),
                )
        return found


__all__ = ["FetchGuard", "Resolver", "address_kind", "is_ip_address", "system_resolver"]
