"""ComfyUI core's asset database (``--enable-assets``, ComfyUI 0.33), reached over its HTTP API.

What core does, read in comfyanonymous/ComfyUI (``main.py`` ``start_comfyui`` and
``setup_database`` at 002f2bed; ``app/assets/seeder.py``, ``scanner.py``, ``api/routes.py``):

- it imports the node packs (``nodes.init_extra_nodes``) and only then starts its start-up scan
  (``setup_database``: ``asset_seeder.start(("models", "input", "output"), prune_first=True)``
  on a thread of its own). The scan walks the model folders registered at that moment
  (``folder_paths.get_filename_list``), and its prune first marks everything it knew outside them
  missing. So ``comfy_entry`` registers the library's folders while ComfyUI imports us (plain
  strings, no disk access), which puts the library in that first scan;
- when our folders are registered later (a library root on a drive mounted after ComfyUI
  started, or one that came back), that scan has passed: `CoreAssets.request_seed` then asks core
  for a scan of its model folders, ``POST /api/assets/seed {"roots": ["models"]}``, once the
  server listens. Core answers 409 while a scan runs; we ask again when it is idle. A seed scan
  never hashes (the route starts the seeder without ``compute_hashes``);
- core takes no hash from outside for a file on disk: ``POST /api/assets/from-hash`` (``hash``,
  ``name``, ``tags``, ``user_metadata``; no path) only adds a record for content core has
  already hashed itself (404 otherwise), and an upload (``POST /api/assets``) with a ``hash``
  that core does not know must carry the bytes, which core hashes and stores as a second copy.
  Core hashes a scanned file only while its hashing is on (``--enable-asset-hashing``; the
  ``main.py`` at 002f2bed turns it on with ``--enable-assets`` itself), and once, as long as the
  file stays in every start-up scan; our blake3 is in its wire format (``blake3:<hex>``), so
  ``HEAD /api/assets/hash/{hash}`` finds it equal.

Core's code warns custom nodes not to rely on ``app/assets`` and its SQLite runs without WAL:
this module talks to it over HTTP only, and imports nothing of ComfyUI. It does nothing when
assets are off (`assets_enabled`; ComfyUI 0.3.64 has no such flag).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import urllib.error
import urllib.request
from types import ModuleType

from .library.errors import CoreAssetsError

log = logging.getLogger("model_shelf")

SEED_RETRY_SECONDS = 2.0
"""How often core is asked again while its server is not listening yet or a scan is running."""
REQUEST_TIMEOUT_SECONDS = 30.0
SEED_ROOTS = ("models",)
"""Core's roots our folders belong to (its ``RootType``: models, input, output)."""


def assets_enabled(cli_args: ModuleType | None) -> bool:
    """Whether this ComfyUI runs core's asset database.

    ComfyUI 0.33 runs it with ``--enable-assets``; later versions (Comfy-Org/ComfyUI ``main.py``
    at 02018c7e) run it unless ``--disable-assets`` is given (``--enable-assets`` then does
    nothing); 0.3.64 has neither flag.

    Args:
        cli_args (`ModuleType`, *optional*): ComfyUI's ``comfy.cli_args`` (None outside ComfyUI).

    Returns:
        `bool`: whether the flags of this version turn it on.
    """
    args = getattr(cli_args, "args", None)
    if hasattr(args, "disable_assets"):
        return not args.disable_assets
    return bool(getattr(args, "enable_assets", False))


def _loopback_host(address: str) -> str:
    """The host to reach a server listening on ``address`` from this machine."""
    if address in ("", "0.0.0.0"):
        return "127.0.0.1"
    if address == "::":
        return "[::1]"
    return f"[{address}]" if ":" in address else address


class CoreAssets:
    """Asks ComfyUI core's asset scan to include the library, over core's HTTP API.

    `request_seed` returns at once; a thread of ours waits for the server to listen, then for
    core's scan to be idle, and asks for one scan of the model folders. Requests made meanwhile
    are coalesced into that one. `stop` ends the thread.
    """

    def __init__(self, prompt_server: object, cli_args: ModuleType | None) -> None:
        """
        Args:
            prompt_server (`object`): ComfyUI's ``PromptServer.instance``; its ``address`` and
                ``port`` are set once it listens.
            cli_args (`ModuleType`, *optional*): ComfyUI's ``comfy.cli_args`` (TLS settings).
        """
        self._server = prompt_server
        args = getattr(cli_args, "args", None)
        self._tls = bool(getattr(args, "tls_keyfile", None) and getattr(args, "tls_certfile", None))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending = False
        self._thread: threading.Thread | None = None
        self.seeded = 0
        """Scans core accepted from us (for logs and tests)."""
        self.done = threading.Event()
        """Set whenever no request of ours is waiting or running."""
        self.done.set()

    def request_seed(self) -> None:
        """Have core scan its model folders (ours among them) as soon as it can."""
        with self._lock:
            if self._stop.is_set():
                return
            self._pending = True
            self.done.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="model-shelf-core-assets", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop asking; waits for the thread. Safe to call more than once."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending or self._stop.is_set():
                    self._thread = None
                    self.done.set()
                    return
                self._pending = False
            try:
                self._seed()
            except CoreAssetsError as exc:
                log.warning("Model Shelf: core asset database did not scan the library: %s", exc)
            except Exception:  # thread top level: ComfyUI goes on, its next scan finds us
                log.exception("Model Shelf: asking ComfyUI's asset database to scan failed")

    def _base_url(self) -> str | None:
        """Core's URL once its server listens (``start_multi_address`` sets the address then)."""
        while not self._stop.is_set():
            address = getattr(self._server, "address", None)
            port = getattr(self._server, "port", None)
            if address is not None and port:
                scheme = "https" if self._tls else "http"
                return f"{scheme}://{_loopback_host(str(address))}:{port}"
            self._stop.wait(SEED_RETRY_SECONDS)
        return None

    def _seed(self) -> None:
        base = self._base_url()
        while base is not None and not self._stop.is_set():
            status, body = self._post(f"{base}/api/assets/seed", {"roots": list(SEED_ROOTS)})
            if status in (200, 202):
                self.seeded += 1
                log.info("Model Shelf: ComfyUI's asset database is scanning the library's folders")
                return
            if status != 409:  # 409: a scan is running, and may have walked before our folders
                raise CoreAssetsError(
                    f"POST /api/assets/seed answered {status}: {body[:200]!r}",
                    url=f"{base}/api/assets/seed",
                    status=status,
                )
            self._stop.wait(SEED_RETRY_SECONDS)

    def _post(self, url: str, payload: dict[str, object]) -> tuple[int, str]:
        """POST JSON to core; returns (status, body). Never through a proxy: core is local."""
        request = urllib.request.Request(
            url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self._tls:
            # Our own server on this machine, usually with a self-signed certificate.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as exc:
            raise CoreAssetsError(f"cannot reach ComfyUI at {url}: {exc}", url=url) from exc
