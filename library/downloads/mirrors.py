"""Other places that hold a file with a known sha256: LAN peers and team stores (issue #13).

The engine asks its `MirrorFinder` for them before it goes to the task's own source (the
internet), and fetches each like any URL, into the same partial file: a mirror that fails or
vanishes mid-file hands over to the next one at the byte it reached, and the task's own source
comes last. Content is addressed by sha256, so no validator is needed to resume across them;
the whole file is checked against the sha256 at the end, and a mirror whose bytes did not match
is reported bad (`MirrorFinder.mark_bad`) and the file fetched again without it.

The engine knows nothing of peers or buckets: the finder (`library.team.TeamSources`) does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ByteSource = Literal["peer", "store", "internet"]
"""Where a task's bytes came from (`DownloadTask.byte_sources`)."""


@dataclass(frozen=True)
class Mirror:
    """One place to GET the bytes of a file with a known sha256."""

    kind: Literal["peer", "store"]
    label: str
    """Who it is, for people and logs: a peer's base URL, a store's name."""
    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    """Credentials for ``url`` only (a peer's team token); never logged."""
    allow_http: bool = True
    """Plain HTTP is fine: the user configured this endpoint or peer, and every byte is hashed."""
    size: int | None = None
    filename: str | None = None
    model_type: str | None = None
    source_ref: dict[str, Any] | None = None
    """Where the model came from originally (its record's source), for the new record."""


class MirrorFinder(Protocol):
    """What the engine needs to know about mirrors. Blocking: called in a worker thread."""

    def find(self, sha256: str) -> list[Mirror]:
        """Mirrors that may hold ``sha256`` (``"sha256:<hex>"``), best first; never raises for
        one that cannot be asked (it is left out, and logged)."""
        ...

    def mark_bad(self, mirror: Mirror, reason: str) -> None:
        """``mirror`` sent bytes that did not match: do not offer it again."""
        ...


def saved_bytes(byte_sources: dict[str, int]) -> int:
    """Bytes that did not come from the internet."""
    return sum(n for kind, n in byte_sources.items() if kind != "internet")
