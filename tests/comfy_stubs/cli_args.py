"""Stand-in for ComfyUI's ``comfy.cli_args``, written for our tests (not ComfyUI's code).

Only the flags our code reads, with ComfyUI's names and defaults: ``--listen`` (127.0.0.1),
``--port`` (8188), ``--tls-keyfile``, ``--tls-certfile`` (ComfyUI 0.3.64, commit
637221995f7424a561bd825de3e61ea117dfe1e3, ``comfy/cli_args.py``); ComfyUI 0.33 adds
``--enable-assets`` and ``--enable-asset-hashing`` (both off by default; read at
comfyanonymous/ComfyUI 002f2bedd6e4f6a0f7436ab7ce2fb8021483904c, ``main.py``). The real module
parses ``sys.argv`` once, at import, into ``args``; `parse` builds that namespace for a version
from a given command line instead.
"""

from __future__ import annotations

import argparse
from typing import Literal

Version = Literal["0.3.64", "0.33"]


def parse(argv: list[str], version: Version = "0.33") -> argparse.Namespace:
    """ComfyUI's ``args`` for ``argv`` (``main.py``'s command line) in ``version``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", type=str, default="127.0.0.1", nargs="?", const="0.0.0.0,::")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--tls-keyfile", type=str)
    parser.add_argument("--tls-certfile", type=str)
    if version != "0.3.64":
        parser.add_argument("--enable-assets", action="store_true")
        parser.add_argument("--enable-asset-hashing", action="store_true")
    return parser.parse_args(argv)


args = parse([])
