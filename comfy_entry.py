"""Start Model Shelf inside a running ComfyUI. Only ``__init__.py`` calls this.

`start` runs on ComfyUI's thread while it imports node packs, so it does only what is cheap and
cannot hang: read this install's settings, pick the library root, and install the
``folder_paths`` wrappers (pass-through until the library is open; installing them here, on
ComfyUI's thread, means no race with another pack wrapping the same functions), and register the
library's type folders with ComfyUI (strings only, no disk access): ComfyUI 0.33 starts its core
asset scan right after node packs are imported, and that scan only walks the folders registered
by then (see `comfy_assets`). Everything that touches the library root, which may be a slow or
missing network share, runs on a background thread: wait for the root, open the library (its
start-up sync), hand the type folders to the bridge, then start the watcher (it keeps the index
and ComfyUI's listings current) and the usage recorder. Folders registered only later (a root
that appears after the start) are announced to core's asset database over its HTTP API.

Also registered here, on ComfyUI's objects and nowhere else: the HTTP API and its events to the
page (one `EventHub`, whose sink is ``send_sync``), the auto-fetch on-prompt handler, and the
provider through which our nodes reach the library (`nodes.runtime`, the one module-level
holder, since ComfyUI builds node objects itself). `start` returns a `ComfyRuntime` holding the
rest.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from .comfy_assets import CoreAssets, assets_enabled
from .library import Shelf, ShelfError
from .library.comfy_paths import (
    FolderPathsBridge,
    Hooks,
    install_hooks,
    library_folders,
    register_folders,
    withdraw_folders,
)
from .library.comfy_runs import RunHook, install_run_hooks
from .library.comfy_settings import ComfySettings, load_comfy_settings
from .library.settings import resolve_root
from .library.usage import SavedWorkflowNames, UsageRecorder
from .nodes import AutoFetchHandler
from .nodes import runtime as node_runtime
from .server_routes.comfy import ComfyApi, attach

log = logging.getLogger("model_shelf")

ROOT_RETRY_SECONDS = 5.0
"""How often a missing library root (a drive not mounted yet) is looked for again."""


@dataclass
class ComfyRuntime:
    """Model Shelf running inside one ComfyUI process. `stop` ends it (tests, interpreter exit).

    ``shelf``, ``bridge`` and ``usage`` are set by the background thread once the library is
    open (the watcher is ``shelf.watcher``); ``ready`` is set then (or when opening failed:
    ``shelf`` stays None).
    """

    folder_paths: ModuleType
    settings: ComfySettings
    root: Path
    hooks: Hooks
    shelf: Shelf | None = None
    bridge: FolderPathsBridge | None = None
    usage: UsageRecorder | None = None
    api: ComfyApi | None = None
    """The HTTP API and the sidebar's events (issue #6); mounted by `start`."""
    runs: RunHook | None = None
    """Our wrappers on ComfyUI's prompt queue (issue #14): each finished run is counted."""
    early_folders: dict[str, str] = field(default_factory=dict)
    """Type folders registered by `start`, before the library opened; the bridge takes them over
    (issue #16: core's asset scan starts before the library is open)."""
    assets: CoreAssets | None = None
    """ComfyUI core's asset database, when it runs (``--enable-assets``; issue #16)."""
    ready: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _unbind_nodes: Callable[[], None] | None = None

    def node_context(self) -> node_runtime.NodeContext | None:
        """What our nodes and the auto-fetch handler use; None until the library is open."""
        shelf = self.shelf
        if shelf is None or not self.ready.is_set():
            return None
        return node_runtime.NodeContext(shelf, self.folder_paths, self.bridge)

    def launch(self) -> threading.Thread:
        """Open the library on a background thread; returns that thread."""
        self._thread = threading.Thread(target=self._open, name="model-shelf-open", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads (saving pending usage), withdraw our folders, close the library.

        Safe to call more than once.
        """
        self._stop.set()
        if self._unbind_nodes is not None:
            self._unbind_nodes()
            self._unbind_nodes = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.assets is not None:
            self.assets.stop(timeout)
        self._withdraw_early_folders()
        if self.shelf is not None:
            self.shelf.stop_watching(timeout)  # before the bridge goes: it is a listener
        if self.runs is not None and self.runs.listener is self.usage:
            self.runs.listener = None  # the wrappers stay, as pass-throughs
        if self.usage is not None:
            self.usage.stop(timeout)
            self.usage = None
        if self.bridge is not None:
            self.bridge.close()
            self.bridge = None
        if self.api is not None:  # issue #6: the download engine, events, API threads
            self.api.stop()
            self.api = None
        if self.shelf is not None:
            self.shelf.close()
            self.shelf = None

    def _open(self) -> None:
        try:
            if self._wait_for_root():
                self._open_library()
        except ShelfError as exc:
            log.error("Model Shelf: library at %s unavailable: %s", self.root, exc)
        except Exception:  # thread top level: ComfyUI goes on without the library
            log.exception("Model Shelf: opening the library at %s failed", self.root)
        finally:
            if self.bridge is None:  # no library: its folders are not ComfyUI's to list
                self._withdraw_early_folders()
            self.ready.set()

    def _withdraw_early_folders(self) -> None:
        """Remove the folders `start` registered, unless the bridge has taken them over."""
        if self.early_folders:
            withdraw_folders(self.folder_paths, self.early_folders)
            self.early_folders = {}

    def _wait_for_root(self) -> bool:
        """Wait until the root (or the folder it is to be created in) exists; False if stopped.

        A root whose parent is missing is a drive or share not mounted yet: creating it would
        start a second, empty library on the local disk.
        """
        logged = False
        while not self._stop.is_set():
            if self.root.is_dir() or self.root.parent.is_dir():
                return True
            if not logged:
                logged = True
                log.warning(
                    "Model Shelf: library root %s is not reachable; waiting for it", self.root
                )
                # Listed folders of a missing drive would only be empty; the bridge registers
                # them when the root comes, and core's asset database is asked to scan then.
                self._withdraw_early_folders()
            self._stop.wait(ROOT_RETRY_SECONDS)
        return False

    def _open_library(self) -> None:
        shelf = Shelf.open(self.root)
        self.shelf = shelf
        workflows = Path(self.folder_paths.get_user_directory()) / "default" / "workflows"
        usage = UsageRecorder(shelf, workflow_names=SavedWorkflowNames(workflows))
        bridge = FolderPathsBridge(
            shelf,
            self.folder_paths,
            self.settings,
            usage,
            registered=self.early_folders,
            # Folders ComfyUI gets only now were not in core's start-up asset scan.
            on_register=self.assets.request_seed if self.assets is not None else None,
        )
        self.early_folders = {}  # the bridge's now, to withdraw
        bridge.install()
        self.usage, self.bridge = usage, bridge
        if self._stop.is_set():
            return
        usage.start()
        if self.runs is not None:
            self.runs.listener = usage
        watcher = shelf.start_watching()
        watcher.subscribe(bridge)
        shelf.start_enriching()  # issue #12: metadata by hash, in the background
        if self.api is not None:
            # Events to the page (the watcher's changes, download progress) through the API's
            # one hub, and downloads in ComfyUI's loop (issue #6).
            self.api.library_opened(shelf)
        log.info(
            "Model Shelf: library at %s, %d models, %d type folders visible to ComfyUI",
            shelf.root,
            shelf.index.count(),
            len(bridge.types),
        )


def start(
    folder_paths: ModuleType | None = None,
    server: ModuleType | None = None,
    cli_args: ModuleType | None = None,
) -> ComfyRuntime:
    """Start Model Shelf in this ComfyUI process; returns at once, the library opens behind.

    Args:
        folder_paths (`ModuleType`, *optional*): ComfyUI's ``folder_paths`` (default: the
            loaded module).
        server (`ModuleType`, *optional*): ComfyUI's ``server``, whose ``PromptServer``
            gets the API, the page events and the auto-fetch handler (default: the loaded
            module).
        cli_args (`ModuleType`, *optional*): ComfyUI's ``comfy.cli_args`` (default: the loaded
            module), which says whether core's asset database runs (``--enable-assets``).

    Returns:
        `ComfyRuntime`: what is running; stopped automatically at interpreter exit.

    Raises:
        `ShelfError`: this install's settings file is invalid.
    """
    folder_paths = folder_paths or sys.modules["folder_paths"]
    server = server or sys.modules.get("server")
    cli_args = cli_args or sys.modules.get("comfy.cli_args")
    settings = load_comfy_settings(Path(folder_paths.get_user_directory()))
    root = resolve_root(settings.root, comfy_base=Path(folder_paths.base_path))
    hooks = install_hooks(folder_paths)
    prompt_server = getattr(getattr(server, "PromptServer", None), "instance", None)
    runtime = ComfyRuntime(folder_paths, settings, root, hooks)
    # Issue #14: uses, per day, per workflow, with run times, from ComfyUI's prompt queue.
    runtime.runs = install_run_hooks(getattr(prompt_server, "prompt_queue", None))
    if getattr(prompt_server, "routes", None) is not None:  # issue #6: the HTTP API
        runtime.api = attach(
            prompt_server, lambda: runtime.shelf, Path(folder_paths.get_user_directory()), settings
        )
    # Issue #4: nodes reach the library through the runtime; submitted prompts get their
    # missing models fetched.
    runtime._unbind_nodes = node_runtime.bind(runtime.node_context)
    add_handler = getattr(prompt_server, "add_on_prompt_handler", None)
    if add_handler is not None:
        add_handler(AutoFetchHandler(runtime.node_context))
    if prompt_server is not None and assets_enabled(cli_args):  # issue #16
        runtime.assets = CoreAssets(prompt_server, cli_args)
    # Issue #16: registered now, while ComfyUI imports node packs, so core's start-up asset scan
    # (which follows the import) walks the library; last, so nothing after it can fail.
    runtime.early_folders = register_folders(
        folder_paths, library_folders(root, folder_paths, settings)
    )
    runtime.launch()
    atexit.register(runtime.stop)
    return runtime
