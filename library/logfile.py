"""A log file for a long-running process of our own (``serve``), rotated so it never fills the
disk: `log_to_file` (issue #11).

Inside ComfyUI we write no file: ComfyUI owns the process's logging (its console and its own
log), and our records go there through the ``model_shelf`` logger like any node pack's.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TextIO

from .settings import LOG_FILE_BACKUPS, LOG_FILE_MAX_BYTES

LOGGER = "model_shelf"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_MODE = 0o600
"""Owner-only: the log names files, hosts and models of this library."""


class OwnerOnlyRotatingFileHandler(RotatingFileHandler):
    """`RotatingFileHandler` whose files (the first and each one after a rollover) are created
    owner-only, never readable by others for a moment."""

    def _open(self) -> TextIO:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, LOG_FILE_MODE)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


@contextlib.contextmanager
def log_to_file(
    directory: Path,
    name: str,
    *,
    max_bytes: int = LOG_FILE_MAX_BYTES,
    backups: int = LOG_FILE_BACKUPS,
    level: int = logging.INFO,
) -> Iterator[Path]:
    """Send the ``model_shelf`` logger's records (``level`` and above) to ``directory/name``
    while the block runs, rotated at ``max_bytes`` with ``backups`` older files kept.
    Warnings still reach stderr, as they do without a file.

    Yields:
        `Path`: the log file.

    Raises:
        `OSError`: the folder cannot be created or the file opened.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    handler = OwnerOnlyRotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(level)
    # With a handler of its own the logger no longer falls back to stderr (logging's last
    # resort): keep warnings on the console explicitly.
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    logger = logging.getLogger(LOGGER)
    previous = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    logger.addHandler(console)
    try:
        yield path
    finally:
        logger.removeHandler(console)
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


__all__ = ["log_to_file"]
