"""Disk headroom: free space of the library's filesystem, and use per type folder.

Use per type folder is the sum of the recorded sizes (the index), not a walk: instant on a
large library, and it counts what the library knows (files copied in are counted once the
watcher or the next start has recorded them).
"""

from __future__ import annotations

import shutil

from ..index import IndexStore
from ..layout import Layout
from .report import DiskReport, TypeUsage


def disk_report(
    layout: Layout, index: IndexStore, warn_used_fraction: float, refuse_below_free_bytes: int
) -> DiskReport:
    """Free space and per-type use for ``layout``'s root.

    Args:
        layout (`Layout`): the library.
        index (`IndexStore`): where the recorded sizes come from.
        warn_used_fraction (`float`): the warning threshold (`HealthSettings`).
        refuse_below_free_bytes (`int`): the download engine's safety margin
            (`DownloadSettings.free_space_margin_bytes`).

    Raises:
        `OSError`: the root cannot be examined.
    """
    usage = shutil.disk_usage(layout.root)
    types = [
        TypeUsage(type=t, models=n, bytes=b or 0)
        for t, (n, b) in sorted(index.bytes_by_type().items())
    ]
    return DiskReport(
        root=str(layout.root),
        total_bytes=usage.total,
        used_bytes=usage.used,
        free_bytes=usage.free,
        used_fraction=usage.used / usage.total if usage.total else 0.0,
        warn_used_fraction=warn_used_fraction,
        refuse_below_free_bytes=refuse_below_free_bytes,
        types=types,
    )
