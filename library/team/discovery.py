"""Finding peers on the LAN with mDNS / DNS-SD (``zeroconf``), opt-in (`TeamConfig.discovery`).

Each library that serves its API announces ``<id>._model-shelf._tcp.local.`` with its address
and port, and browses for the others; found peers go into the `PeerDirectory` (and leave it
when they say goodbye). Finding a peer grants nothing: every request still needs the team token.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import uuid

from ..downloads.addresses import is_ip_address
from .peers import PeerDirectory

log = logging.getLogger("model_shelf.team")

SERVICE_TYPE = "_model-shelf._tcp.local."
INFO_TIMEOUT_MS = 3000


def lan_address() -> str:
    """This machine's address on its LAN: the source address a packet to a private network
    would leave from (no packet is sent: a UDP ``connect`` only picks the route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class Discovery:
    """Announce this library at ``host:port`` and find the others. Blocking `start`/`stop`
    (mDNS probing takes a moment): call them off the event loop.

    Args:
        directory (`PeerDirectory`): where found peers go.
        host (`str`): the address the API listens on (``0.0.0.0``: this machine's LAN address
            is announced); a loopback address announces and browses on loopback only (one
            machine, or tests).
        port (`int`): the API's port.
    """

    def __init__(self, directory: PeerDirectory, host: str, port: int) -> None:
        self.directory = directory
        self.port = port
        self.name = f"model-shelf-{uuid.uuid4().hex[:12]}.{SERVICE_TYPE}"
        loopback = ipaddress.ip_address(host).is_loopback if is_ip_address(host) else False
        self.address = lan_address() if host in ("0.0.0.0", "::", "") else host
        self.interfaces: list[str] | None = [self.address] if loopback else None
        self._zeroconf = None
        self._browser = None
        self._info = None

    def start(self) -> None:
        from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, Zeroconf

        interfaces = self.interfaces if self.interfaces is not None else None
        if interfaces is not None:
            zeroconf = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        else:
            zeroconf = Zeroconf(ip_version=IPVersion.V4Only)
        self._zeroconf = zeroconf
        self._info = ServiceInfo(
            SERVICE_TYPE,
            self.name,
            addresses=[socket.inet_aton(self.address)],
            port=self.port,
            properties={"v": "1"},
        )
        zeroconf.register_service(self._info)
        self._browser = ServiceBrowser(zeroconf, SERVICE_TYPE, handlers=[self._changed])
        log.info("announcing this library as %s on %s:%s", self.name, self.address, self.port)

    def _changed(
        self, zeroconf: object, service_type: str, name: str, state_change: object
    ) -> None:
        from zeroconf import ServiceStateChange

        if name == self.name:
            return
        if state_change is ServiceStateChange.Removed:
            self.directory.lost(name)
            return
        info = zeroconf.get_service_info(service_type, name, timeout=INFO_TIMEOUT_MS)  # type: ignore[attr-defined]
        if info is None or not info.parsed_addresses():
            return
        address = info.parsed_addresses()[0]
        self.directory.found(name, f"http://{address}:{info.port}")
        log.info("found peer %s at %s:%s", name, address, info.port)

    def stop(self) -> None:
        if self._browser is not None:
            self._browser.cancel()
        if self._zeroconf is not None:
            if self._info is not None:
                self._zeroconf.unregister_service(self._info)
            self._zeroconf.close()
        self._browser = self._zeroconf = self._info = None
