"""One process asking for a prompt's missing models through the auto-fetch API, without ComfyUI.

Usage: ``python autofetch_worker.py <library root> <body.json>``. Plans the ``/prompt`` body
against the library alone, queues its downloads and prints ``queued <task ids>``; then waits for
each (running the download engine itself if nobody else does) and prints ``done <type/name>``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from model_shelf.library import Shelf
from model_shelf.library.autofetch import LibraryResolver, execute, plan


def main(root: Path, body_path: Path) -> int:
    body = json.loads(body_path.read_text())
    with Shelf.open(root) as shelf:
        made = execute(plan(body, shelf, LibraryResolver(shelf)), shelf)
        print("queued", *(f.task_id or f"error:{f.error}" for f in made.fetches), flush=True)
        for fetch in made.fetches:
            assert fetch.task_id is not None, fetch.error
            name = shelf.wait_for_download(fetch.task_id)
            print("done", f"{fetch.model_type}/{name}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
