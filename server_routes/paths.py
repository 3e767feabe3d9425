"""Where the API lives."""

PREFIX = "/model-shelf"
"""Every route is under this path (ComfyUI serves each one under ``/api`` as well)."""
API_PREFIX = "/api"
"""ComfyUI's second mount point for every route (``server.py``, ``add_routes``); the page
calls routes there (``api.fetchApi``), so the standalone app serves both too."""
