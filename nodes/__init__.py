"""ComfyUI nodes: thin adapters over `Shelf` calls. Importable without ComfyUI.

- `FetchModel` (``ModelShelfFetchModel``): a model by its source, for a loader's model input;
- `AwaitModel` (``ModelShelfAwaitModel``): hidden; put into prompts by auto-fetch
  (`await_model.AutoFetchHandler`) to wait for a missing model; also registered as
  ``Missing model (Model Shelf)``, the class auto-fetch gives it where nobody can provide a
  model (the page titles the run-time error with that name).

Nodes reach the running library through `runtime` (bound by ``comfy_entry``).
"""

from .await_model import AWAIT_CLASS, MISSING_CLASS, AutoFetchHandler, AwaitModel
from .fetch_model import FetchModel

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "ModelShelfFetchModel": FetchModel,
    AWAIT_CLASS: AwaitModel,
    MISSING_CLASS: AwaitModel,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "ModelShelfFetchModel": "Fetch Model (Model Shelf)",
    AWAIT_CLASS: "Await Model (Model Shelf, internal)",
    MISSING_CLASS: "Missing model (Model Shelf, internal)",
}

__all__ = [
    "AWAIT_CLASS",
    "MISSING_CLASS",
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "AutoFetchHandler",
    "AwaitModel",
    "FetchModel",
]
