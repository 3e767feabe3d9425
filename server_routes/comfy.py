"""The API inside ComfyUI. `attach` is called by ``comfy_entry.start`` (on ComfyUI's thread,
while node packs load) and gets ``PromptServer.instance`` from it: nothing here looks it up.

- the routes go on ``prompt_server.routes`` at once (ComfyUI builds its app from them after
  every node pack is loaded); until the library has opened they answer ``NOT_READY`` (503);
- events go to the page over ComfyUI's websocket (``send_sync``);
- once the library is open (`ComfyApi.library_opened`, from the opening thread) the download
  engine runs in ComfyUI's event loop (``prompt_server.loop``), where the routes run too;
- the library root can be changed from the page: it is saved in this install's settings file
  (``<user>/model-shelf/settings.json``) and used from the next start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..library import Shelf
from ..library.comfy_settings import ComfySettings, settings_path
from ..library.errors import SettingsError
from ..library.fsutil import atomic_write_bytes
from .app import Wiring, mount
from .context import RouteContext, provide_when_ready

log = logging.getLogger("model_shelf.api")

ENGINE_STOP_SECONDS = 30.0


class ComfyRootSetting:
    """The library root of one ComfyUI install, kept in its own settings file."""

    editable = True

    def __init__(self, user_dir: Path, settings: ComfySettings) -> None:
        self.path = settings_path(user_dir)
        self.source = (
            f"this install's settings ({self.path})"
            if settings.root
            else "MODEL_SHELF_ROOT or the default (<ComfyUI>/model-shelf)"
        )

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SettingsError(f"cannot read {self.path}: {exc}", path=str(self.path)) from exc
        if not isinstance(data, dict):
            raise SettingsError(f"{self.path} must hold a JSON object", path=str(self.path))
        return data

    def pending(self) -> str | None:
        try:
            root = self._read().get("root")
        except SettingsError:
            return None
        return root if isinstance(root, str) else None

    def save(self, root: str) -> None:
        """Write ``root`` into the settings file, keeping its other keys.

        Raises:
            `SettingsError`: the file cannot be read or would not be valid.
        """
        data = self._read()
        data["root"] = root
        try:
            ComfySettings.model_validate(data)
        except (ValidationError, ValueError) as exc:
            raise SettingsError(f"{self.path} would not be valid: {exc}") from exc
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(data, indent=2).encode() + b"\n")


class ComfyApi:
    """The API attached to one ComfyUI server. `stop` detaches what runs (interpreter exit)."""

    def __init__(
        self,
        ctx: RouteContext,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.ctx = ctx
        self.loop = loop
        self._wiring: Wiring | None = None
        self._engine: concurrent.futures.Future[None] | None = None
        self._shelf: Shelf | None = None

    def library_opened(self, shelf: Shelf) -> None:
        """Start pushing the library's events and run its download engine in ComfyUI's loop.

        Called from the thread that opened the library.
        """
        self._shelf = shelf
        self._wiring = Wiring(self.ctx, shelf)
        self._wiring.start()
        if self.loop is not None and not self.loop.is_closed():
            self._engine = asyncio.run_coroutine_threadsafe(shelf.downloads.run(), self.loop)

    def stop(self, timeout: float = ENGINE_STOP_SECONDS) -> None:
        """Stop the engine (running downloads go back to the queue), events, the API's threads."""
        shelf, engine, loop = self._shelf, self._engine, self.loop
        running = engine is not None and not engine.done()
        # At interpreter exit ComfyUI's loop has stopped: nothing can run there any more, and
        # the leases of running tasks simply expire (their partial data is kept).
        if shelf is not None and running and loop is not None and loop.is_running():
            with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
                future = asyncio.run_coroutine_threadsafe(shelf.downloads.stop(), loop)
                future.result(timeout)
        self._engine = None
        if self._wiring is not None:
            self._wiring.stop()
            self._wiring = None
        self.ctx.close()


def attach(
    prompt_server: Any,
    get_shelf: Callable[[], Shelf | None],
    user_dir: Path,
    settings: ComfySettings,
    listen_hosts: tuple[str, ...] = (),
) -> ComfyApi:
    """Mount the API on ``prompt_server`` and send its events to the page's websocket.

    Args:
        prompt_server: ComfyUI's ``PromptServer.instance``.
        get_shelf (`Callable`): the library once open, None before.
        user_dir (`Path`): ComfyUI's user folder (where this install's settings file is).
        settings (`ComfySettings`): this install's settings.
        listen_hosts (`tuple[str, ...]`, *optional*): ComfyUI's ``--listen`` addresses (or
            names): requests naming them are answered (see `guard.AllowedHosts`).
    """
    ctx = RouteContext(
        provide_when_ready(get_shelf),
        root_setting=ComfyRootSetting(user_dir, settings),
        hidden_types=settings.hide_types,
        listen_hosts=listen_hosts,
    )
    send = prompt_server.send_sync
    ctx.events.add_sink(lambda event, data: send(event, data))
    mount(prompt_server.routes, ctx)
    return ComfyApi(ctx, getattr(prompt_server, "loop", None))
