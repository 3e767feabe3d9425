"""Editing a model in place: renaming it (files and record move together) and setting its
aliases and tags. What the sidebar's detail drawer changes.

A rename is a no-clobber rename of the model's file (or folder) inside its type folder, then the
`Reconciler` moves the record along exactly as it does for a rename noticed on disk: same id,
same digests, nothing read, the old name kept as an alias. Should the watcher notice the rename
first and move the record itself, the result is the same.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import PurePosixPath

from .catalog import Catalog
from .errors import (
    ModelNotFoundError,
    NameClashError,
    UnsafeNameError,
    UnsupportedOperationError,
)
from .fsutil import place_no_clobber
from .layout import Layout, keep_extension, safe_name
from .records import ModelKind, ModelRecord, refuse_damaged
from .sync import Reconciler, SyncReport

MAX_LABELS = 100
"""Most aliases, and most tags, one model may have."""
MAX_TAG_CHARS = 64

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_tags(tags: Sequence[str]) -> list[str]:
    """Trimmed, NFC, without duplicates (case-insensitively), in the given order.

    Raises:
        `UnsafeNameError`: a tag is empty, too long, or holds control characters.
    """
    result: list[str] = []
    seen: set[str] = set()
    for raw in tags:
        tag = unicodedata.normalize("NFC", raw).strip()
        if not tag or len(tag) > MAX_TAG_CHARS or _CONTROL.search(tag):
            raise UnsafeNameError(f"invalid tag {raw[:80]!r}: 1 to {MAX_TAG_CHARS} characters")
        if tag.casefold() not in seen:
            seen.add(tag.casefold())
            result.append(tag)
    if len(result) > MAX_LABELS:
        raise UnsafeNameError(f"too many tags ({len(result)}); at most {MAX_LABELS}")
    return result


def clean_aliases(aliases: Sequence[str]) -> list[str]:
    """Each alias made safe like a model name (`safe_name`), without duplicates.

    Raises:
        `UnsafeNameError`: an alias would leave a type folder or is not a valid name.
    """
    result = list(dict.fromkeys(safe_name(a) for a in aliases))
    if len(result) > MAX_LABELS:
        raise UnsafeNameError(f"too many aliases ({len(result)}); at most {MAX_LABELS}")
    return result


class ModelEditor:
    """Renames and relabels models through the catalog (sidecar first, then the index)."""

    def __init__(self, layout: Layout, catalog: Catalog, reconciler: Reconciler) -> None:
        self.layout = layout
        self.catalog = catalog
        self.reconciler = reconciler

    def target_name(self, record: ModelRecord, name: str) -> str:
        """The safe new name; a file keeps its extension when the new name gives none."""
        new = safe_name(name)
        if record.kind is ModelKind.FILE:
            return keep_extension(new, PurePosixPath(record.name).suffix)
        return new

    def rename(self, record: ModelRecord, name: str) -> ModelRecord:
        """Move ``record``'s model to ``name`` in the same type folder.

        Raises:
            `UnsafeNameError`: the new name is not safe.
            `NameClashError`: something already holds the new name (nothing was changed).
            `UnsupportedOperationError`: a sharded set (rename its files on disk instead).
            `ModelNotFoundError`: the model's files are gone.
            `RecordError`: the record is damaged (repair it first).
        """
        refuse_damaged(record)
        if record.kind is ModelKind.SHARDED:
            raise UnsupportedOperationError(
                f"{record.display()} is a sharded set; its files cannot be renamed as one"
            )
        new_name = self.target_name(record, name)
        if new_name == record.name:
            return record
        src = self.catalog.records.model_path(record)
        dest = self.layout.model_path(record.type, new_name)
        if not (src.exists() or src.is_symlink()):
            raise ModelNotFoundError(f"the files of {record.display()} are missing")
        if self.layout.sidecar_for(dest).exists():
            raise NameClashError(f"{record.type}/{new_name} already has a record", path=str(dest))
        created = [p for p in dest.parents if p != self.layout.root and not p.exists()]
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            place_no_clobber(src, dest)
        except NameClashError:
            for folder in created:  # deepest first: leave no empty folders behind
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise
        moved = self.reconciler.move(src, dest, SyncReport())
        if moved is not None:
            return moved
        current = self.catalog.index.get(record.id)
        if current is not None and current.name == new_name:
            return current  # the watcher saw the rename first and moved the record itself
        place_no_clobber(dest, src)  # the record could not follow: undo
        raise UnsupportedOperationError(
            f"{record.display()} could not be renamed: its files do not match its record"
        )

    def relabel(
        self,
        record: ModelRecord,
        aliases: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> ModelRecord:
        """Replace ``record``'s aliases and/or tags and save it.

        Raises:
            `UnsafeNameError`: an alias or tag is not valid.
        """
        if aliases is not None:
            record.aliases = [a for a in clean_aliases(aliases) if a != record.name]
        if tags is not None:
            record.tags = clean_tags(tags)
        return self.catalog.save(record)
