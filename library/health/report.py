"""The health report: what ``doctor`` prints, the API returns and the sidebar shows.

Every section has a count, the items behind it and the fix (a command or an action), so that
each surface can render it the same way. Pydantic models: ``model_dump(mode="json")`` is the
wire form.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, Field


class Severity(str, Enum):
    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class HealthItem(BaseModel):
    """One model or file a section is about."""

    name: str
    """``type/name`` of a model, or a path for files that are not models."""
    detail: str | None = None
    size: int | None = None
    model_id: str | None = None
    repairable: bool | None = None
    """A known source can fetch it again (`repair`)."""


class DuplicateGroup(BaseModel):
    """Models with the same content (sha256) under different names."""

    sha256: str
    size: int
    keep: str
    """``type/name`` that `dedupe` keeps (the oldest)."""
    others: list[str]
    """Names that `dedupe` turns into aliases of ``keep`` (their files are removed)."""
    across_types: list[str] = Field(default_factory=list)
    """Copies in other type folders: reported only (an alias cannot cross type folders)."""


class TypeUsage(BaseModel):
    type: str
    models: int
    bytes: int


class DiskReport(BaseModel):
    """Space on the library's disk and use per type folder (from the records, not a walk)."""

    root: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    used_fraction: float
    warn_used_fraction: float
    refuse_below_free_bytes: int
    """Downloads are refused when they would leave less free than this."""
    types: list[TypeUsage]


class HealthSection(BaseModel):
    """One kind of problem (or of good news)."""

    key: str
    title: str
    severity: Severity
    count: int
    items: list[HealthItem] = Field(default_factory=list)
    fix: str | None = None


class DuplicatesSection(HealthSection):
    groups: list[DuplicateGroup] = Field(default_factory=list)
    reclaimable_bytes: int = 0


class DiskSection(HealthSection):
    disk: DiskReport


class HasherSection(BaseModel):
    """The background hasher, when the library is being watched."""

    running: bool
    paused: bool
    queued: int
    reading: int
    bytes_hashed: int
    verify_pass_requested_at: datetime | None = None


class HealthReport(BaseModel):
    """Everything ``doctor`` checks, each section with its count, items and fix."""

    root: str
    generated_at: datetime
    swept_at: datetime | None = None
    """When the last sweep ran: ``changed`` and ``orphans`` are what it found (less what was
    verified or cleaned since). None: no sweep yet (``doctor`` or "check files now" runs one)."""
    models: int
    ok: bool
    """No section is a warning or an error."""
    corrupted: HealthSection
    missing: HealthSection
    damaged: HealthSection
    """Records that cannot be read or lead outside the library (never acted on)."""
    changed: HealthSection
    pending: HealthSection
    duplicates: DuplicatesSection
    orphans: HealthSection
    disk: DiskSection
    background: HasherSection | None = None
    failing_loads: HealthSection | None = None
    """Models whose loader failed often in ComfyUI runs (from the usage log)."""

    def sections(self) -> list[HealthSection]:
        sections = [
            self.corrupted,
            self.missing,
            self.damaged,
            self.changed,
            self.pending,
            self.duplicates,
            self.orphans,
            self.disk,
        ]
        return sections + ([self.failing_loads] if self.failing_loads is not None else [])
