"""Model Shelf as a ComfyUI node pack.

ComfyUI imports this file from ``custom_nodes/<any folder>/``. Importing does nothing heavy and
never raises: a failure to start is logged once and ComfyUI carries on without us. The same
files, installed with pip, are the ``model_shelf`` package and its CLI (``python -m model_shelf``).
"""

import logging
import sys

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

# Inside ComfyUI these modules are loaded before any custom node; outside it they are absent,
# and importing the package (for the CLI or tests) must not try to start anything. ComfyUI
# gives a node pack no other place to keep what it runs than its module: `_runtime` is that.
_runtime = None
if "folder_paths" in sys.modules and "server" in sys.modules:
    try:
        from .comfy_entry import start

        _runtime = start()
    except Exception:  # never take ComfyUI down with us
        logging.getLogger("model_shelf").exception(
            "Model Shelf failed to start; ComfyUI continues without it"
        )
