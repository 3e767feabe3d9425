"""The one code path that deletes files from disk; it writes down what it deletes, first.

``.shelf/deletions.jsonl`` gets one line per delete (when, why, which paths, and the model's
record if there was one) before anything is removed, so nothing disappears without a trace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from .fsutil import fsync_dir, remove_path
from .layout import Layout
from .records import ModelRecord, utc_now


class Remover:
    """Deletes files and folders, journaling each deletion in the library's state folder."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def delete(self, paths: Sequence[Path], reason: str, record: ModelRecord | None = None) -> None:
        """Journal, then remove ``paths`` (files or whole folders) in order.

        Args:
            paths (`Sequence[Path]`): what to remove; missing ones are skipped.
            reason (`str`): why, in a few words ("rm", "duplicate of checkpoints/x").
            record (`ModelRecord`, *optional*): the model these paths belonged to.
        """
        entry = {
            "at": utc_now().isoformat(),
            "pid": os.getpid(),
            "reason": reason,
            "paths": [str(p) for p in paths],
            "record": record.model_dump(mode="json") if record is not None else None,
        }
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.layout.deletions_log, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
            log.flush()
            os.fsync(log.fileno())
        for path in paths:
            remove_path(path)
            fsync_dir(path.parent)
