"""Preload suggestions: models used often that this machine's library does not hold.

Two kinds: models this library archived (cleanup kept their records as re-downloadable stubs)
that were used often, and models other machines hold (LAN peers, a team store: any listing of
`RemoteListing`) with uses there, that this library lacks (by sha256, else by type and name).
Each suggestion says how to fetch it in one step: repair the stub (``model_id``), or download
``source`` into ``type`` under ``name``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from .records import ModelRecord
from .usage_report import ModelUsageItem

MIN_USES = 2
"""Uses (here or on the remote) from which a model is worth preloading."""


class RemoteListing(BaseModel):
    """One model another machine holds, as its listing describes it (a LAN peer, a team
    store). The listing's own types map onto this: only these fields are needed."""

    type: str
    name: str
    size: int = 0
    sha256: str | None = None
    source: str
    """Where it came from (its origin URL), else ``sha256:<hex>``: what the download is queued
    with. With the sha256 known, the queue asks the peers and stores first, so the bytes come
    from them."""
    where: str
    """Who holds it, for people ("peer http://studio-2:8188", "store team")."""
    uses: int = 0
    """Uses in this library's log (the team's listings carry none of their own)."""
    last_used: datetime | None = None


class PreloadSuggestion(BaseModel):
    name: str
    """``type/name``."""
    type: str
    size: int
    uses: int
    last_used: datetime | None = None
    reason: str
    model_id: str | None = None
    """An archived stub of this library: fetch it by repairing it."""
    source: str | None = None
    """Else: download this into ``type``."""
    sha256: str | None = None
    """``sha256:<hex>``, as in records and tasks."""
    where: str | None = None
    """Who holds it, for a model another machine has."""


def preload_suggestions(
    records: Sequence[ModelRecord],
    usage: dict[str, ModelUsageItem],
    remote: Sequence[RemoteListing] = (),
    min_uses: int = MIN_USES,
) -> list[PreloadSuggestion]:
    """Most used first (see the module)."""
    found: list[PreloadSuggestion] = []
    present_hashes = {_hex(r.sha256) for r in records if r.archived_at is None and r.sha256}
    present_names = {(r.type, r.name) for r in records if r.archived_at is None}
    for record in records:
        if record.archived_at is None:
            continue
        item = usage.get(record.id)
        uses = item.uses if item is not None else record.usage.count
        if uses < min_uses:
            continue
        found.append(
            PreloadSuggestion(
                name=record.display(),
                type=record.type,
                size=record.size,
                uses=uses,
                last_used=item.last_used if item is not None else record.usage.last_used,
                reason=f"archived here, used {uses} times",
                model_id=record.id,
                sha256=record.sha256,
            )
        )
    seen: set[str] = set()
    for model in sorted(remote, key=lambda m: -m.uses):
        sha = _hex(model.sha256) if model.sha256 else None
        key = sha or f"{model.type}/{model.name}"
        if model.uses < min_uses or key in seen:
            continue
        if (sha and sha in present_hashes) or (model.type, model.name) in present_names:
            continue
        seen.add(key)
        found.append(
            PreloadSuggestion(
                name=f"{model.type}/{model.name}",
                type=model.type,
                size=model.size,
                uses=model.uses,
                last_used=model.last_used,
                reason=f"used {model.uses} times here, not in this library; {model.where} has it",
                source=model.source,
                sha256=f"sha256:{sha}" if sha else None,
                where=model.where,
            )
        )
    found.sort(key=lambda s: (-s.uses, s.name))
    return found


def _hex(sha256: str) -> str:
    return sha256.lower().removeprefix("sha256:")
