"""Files known only by their content: ``sha256:<hex>``.

No origin on the internet holds them for us: only the team's stores and LAN peers can send the
bytes (the engine asks them by sha256 before any source, issue #13). A model that a store or
peer holds and that has no origin of its own (imported from a disk, then pushed) is fetched this
way, e.g. from a preload suggestion (issue #14): ``add sha256:<hex> --type loras``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidSourceError, ModelUnavailableError
from . import RemoteFile

KIND = "sha256"
_CONTENT = re.compile(r"^sha256:(?P<hex>[0-9a-fA-F]{64})$")


def recognises(text: str) -> bool:
    return _CONTENT.match(text) is not None


@dataclass(frozen=True)
class ContentSource:
    sha256: str
    """``sha256:<hex>``, lower case."""

    kind = KIND

    @property
    def key(self) -> str:
        return self.sha256

    async def locate(self) -> RemoteFile:
        """Reached only when no store or peer could send the file.

        Raises:
            `ModelUnavailableError`: always: there is nowhere else to ask.
        """
        raise ModelUnavailableError(
            f"no team store or LAN peer could send {self.sha256}, and it has no origin to "
            "download it from; push it to a team store, or share it from a peer, and resume"
        )


def parse(text: str) -> ContentSource:
    """Raises `InvalidSourceError`: not ``sha256:`` and 64 hex digits."""
    match = _CONTENT.match(text)
    if match is None:
        raise InvalidSourceError(f"not a sha256 digest: {text!r} (expected sha256:<64 hex>)")
    return ContentSource(f"sha256:{match['hex'].lower()}")
