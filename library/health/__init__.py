"""Health of the library: background hashing and verification (`hasher`), the health report
(`report`, built by `doctor` from the index's counts and the last sweep's figures, `sweeps`),
duplicates, clean-up of left-overs, disk headroom, and repair
through the download queue."""

from .cleanup import Cleaner, CleanReport, Orphan, find_orphans
from .doctor import Doctor
from .duplicates import DedupeReport, Deduplicator, find_duplicates
from .hasher import BackgroundHasher, HasherStatus, WorkKind
from .repair import Repairer, RepairJob, RepairResult, repairable
from .report import DiskReport, DuplicateGroup, HealthItem, HealthReport, HealthSection, Severity
from .sweeps import SweepFigures

__all__ = [
    "BackgroundHasher",
    "CleanReport",
    "Cleaner",
    "DedupeReport",
    "Deduplicator",
    "DiskReport",
    "Doctor",
    "DuplicateGroup",
    "HasherStatus",
    "HealthItem",
    "HealthReport",
    "HealthSection",
    "Orphan",
    "RepairJob",
    "RepairResult",
    "Repairer",
    "Severity",
    "SweepFigures",
    "WorkKind",
    "find_duplicates",
    "find_orphans",
    "repairable",
]
