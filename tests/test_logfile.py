"""Issue #11: ``serve``'s log file is rotated (size cap, a few backups), owner-only, and goes
away from the logger when the server stops."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from model_shelf.library.logfile import log_to_file


def test_the_log_is_rotated_and_bounded(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    logger = logging.getLogger("model_shelf.test")
    folder = tmp_path / ".shelf" / "logs"
    with log_to_file(folder, "serve.log", max_bytes=2000, backups=3) as path:
        assert path == folder / "serve.log"
        for n in range(200):  # ~80 bytes a line: about eight files' worth
            logger.info("line %03d %s", n, "x" * 40)
        logger.warning("the last line")
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["serve.log", "serve.log.1", "serve.log.2", "serve.log.3"]
    for file in folder.iterdir():
        assert file.stat().st_size <= 2000
        assert stat.S_IMODE(file.stat().st_mode) == 0o600  # the rolled-over ones too
    newest = (folder / "serve.log").read_text()
    assert "WARNING model_shelf.test: the last line" in newest
    assert "line 199" in newest or "line 199" in (folder / "serve.log.1").read_text()
    assert "line 000" not in "".join(p.read_text() for p in folder.iterdir())  # rotated away
    assert "the last line" in capsys.readouterr().err  # warnings still reach the console
    # the handler is gone with the block: nothing more is written
    logger.warning("after")
    assert "after" not in (folder / "serve.log").read_text()
    assert not any(
        isinstance(h, logging.FileHandler) for h in logging.getLogger("model_shelf").handlers
    )
