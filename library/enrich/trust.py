"""How much a source's file entry says about one of our models: the `Trust` badge."""

from __future__ import annotations

from pathlib import PurePosixPath

from ..metadata import Trust
from ..records import ModelRecord

SIZE_SLACK_BYTES = 1024
"""Civitai states sizes in kilobytes (fractional): equal within this is equal."""


def file_name(record: ModelRecord) -> str:
    return PurePosixPath(record.name).name.lower()


def judge(
    record: ModelRecord,
    name: str | None,
    size: int | None,
    sha256_hex: str | None,
    size_slack: int = 0,
) -> Trust | None:
    """The badge for a source's file (its name, size, sha256) against ``record``.

    Equal sha256: verified. Both hashes known and different: it is another file, at most a name
    guess. File name and size equal: likely. File name only: guess. Else no match (None).
    """
    ours = (record.sha256 or "").removeprefix("sha256:").lower()
    theirs = (sha256_hex or "").lower()
    if ours and theirs and ours == theirs:
        return Trust.VERIFIED
    same_name = bool(name) and PurePosixPath(str(name)).name.lower() == file_name(record)
    if not same_name:
        return None
    if ours and theirs:
        return Trust.GUESS
    if size is not None and record.size and abs(size - record.size) <= size_slack:
        return Trust.LIKELY
    return Trust.GUESS
