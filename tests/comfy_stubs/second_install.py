"""A second (stand-in) ComfyUI install on a shared library root, run as its own process.

Usage: ``python second_install.py <comfy base> <library root>``. Prints ``ready`` once its
library is open; then, for each ``<type> <name>`` line on stdin, waits for Model Shelf's
``model-shelf.library-changed`` notice for that type and prints ``listed <seconds>`` once
``get_filename_list`` shows the name (``missing <seconds>`` if it does not within 10 s).
Stops its runtime at end of input.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_stubs import load_stand_in, make_comfy_tree
from model_shelf.comfy_entry import start

WAIT_SECONDS = 10.0


def main(base: Path, root: Path) -> int:
    base.mkdir(parents=True, exist_ok=True)
    folder_paths = load_stand_in("folder_paths", base)
    make_comfy_tree(base, folder_paths)
    server = load_stand_in("server", base)
    server.PromptServer()
    sys.modules["folder_paths"], sys.modules["server"] = folder_paths, server
    settings = Path(folder_paths.get_user_directory()) / "model-shelf" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"root": str(root)}))

    runtime = start(folder_paths, server)
    try:
        if not runtime.ready.wait(60) or runtime.shelf is None:
            print("failed", flush=True)
            return 1
        print("ready", flush=True)
        messages: queue.Queue = server.PromptServer.instance.messages
        for line in sys.stdin:
            model_type, name = line.split()
            asked = time.monotonic()
            deadline = asked + WAIT_SECONDS
            listed = False
            while not listed and time.monotonic() < deadline:
                try:
                    event, data, _ = messages.get(timeout=deadline - time.monotonic())
                except queue.Empty:
                    break
                if event == "model-shelf.library-changed" and model_type in data["types"]:
                    listed = name in folder_paths.get_filename_list(model_type)
            word = "listed" if listed else "missing"
            print(f"{word} {time.monotonic() - asked:.3f}", flush=True)
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
