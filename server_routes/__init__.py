"""HTTP routes under ``/model-shelf/``, mounted on ComfyUI's PromptServer or a standalone app.

One module per resource (`models`, `imports`, `downloads`, `health`, `settings`, `service`,
`events`), each declaring its routes as data, built by ``routes(ctx)`` from a `RouteContext`
that reaches the `Shelf` (never a global). `schemas` holds the request and response models,
`errors` maps error codes to HTTP statuses (once), `guard` refuses cross-site requests.
"""

from .app import CONTEXT_KEY, SHELF_KEY, mount, route_table, standalone_app
from .context import RouteContext, provide, provide_when_ready
from .events import EventHub

__all__ = [
    "CONTEXT_KEY",
    "SHELF_KEY",
    "EventHub",
    "RouteContext",
    "mount",
    "provide",
    "provide_when_ready",
    "route_table",
    "standalone_app",
]
