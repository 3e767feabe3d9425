"""Stand-in for ComfyUI core's asset database (``app/assets``), written for our tests (not
ComfyUI's code).

Mirrors ComfyUI 0.33 (opt-in: ``--enable-assets``, ``--enable-asset-hashing``) as read in
comfyanonymous/ComfyUI; no stored copy is tagged 0.33.0, so these commits of the 0.33 line were
read: ``app/assets/seeder.py`` at 05c42c97ed8db46e30b568dd95005e0630a377a7,
``app/assets/scanner.py`` at 058570c11adc45b2af2b553fe18507bdd5d4492b,
``app/assets/api/routes.py`` at 05609052a7a8a955794e5b182573df36fb13373f, and the behaviour
spelled out in ``app/assets/docs/README.md`` (Comfy-Org/ComfyUI
050e9b34dae691930a3958a7a287f6c7e86cbf99). Only what our code meets is here:

- `AssetSeeder.start(roots, prune_first, compute_hashes)` runs one scan on a thread of its own
  and answers False while one runs. A scan: the prune (``prune_first``: live content outside
  every registered folder is marked missing); then, root by root, the fast phase: live rows
  whose file is gone are marked missing, and the root's files are walked. For ``models`` that
  walk is ``folder_paths.get_filename_list(type)`` and ``get_full_path`` of each name (so
  through any wrappers a node pack installed), kept when under one of the type's folders; the
  types are those with a folder under ``models_dir``. A file without a live row recovers the
  missing row at its path (with hashing, only if its hash, read now, equals the stored one, or a
  never-hashed row of equal size and mtime; without hashing, by size and mtime), else gets a new
  content row *without a hash* and a record tagged ``models`` and its type. Last, the enrich
  phase: with ``compute_hashes``, every live row of the roots without a hash is hashed (blake3,
  8 MiB chunks, ``blake3:<hex>``). Nothing else ever sets a content row's hash.
- `add_routes`: ``GET /api/assets`` (``include_tags`` comma-separated, ``name_contains``,
  ``limit`` up to 500, ``offset``; a record of missing content carries the tag ``missing``),
  ``HEAD /api/assets/hash/{hash}`` (200 if live content has it, 404, 400 if malformed),
  ``POST /api/assets/from-hash`` (``hash``, ``name``, ``tags``, ``user_metadata``, no path: a
  new record for content already hashed, else 404 ``ASSET_NOT_FOUND``), ``POST
  /api/assets/seed`` (``{"roots": [...]}``; 202 started, 409 while a scan runs; the seeder is
  started without ``compute_hashes``), ``GET /api/assets/seed/status``. Without
  ``--enable-assets`` every route answers 503 ``SERVICE_DISABLED``.

Differences, for tests: the catalogue is one in-memory `Catalog` (the real one is SQLite in the
user folder) that a test hands to each start to play a restart; ``Catalog.hash_reads`` lists
every file the hasher read; `AssetSeeder.hold` keeps a scan from walking until set and
``refused`` is set when ``/seed`` answered 409; no change detection by mtime, no metadata
extraction, no tags API.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import blake3
from aiohttp import web

HASH_CHUNK_BYTES = 8 * 1024 * 1024
ROOTS = ("models", "input", "output")
_BLAKE3 = re.compile(r"blake3:[0-9a-f]+")


@dataclass
class Content:
    """Bytes at a path (core's content row)."""

    id: str
    path: str
    size: int
    mtime_ns: int
    hash: str | None = None
    missing: bool = False


@dataclass
class Record:
    """What the user sees (core's asset record); ``content_id`` links it to its bytes."""

    id: str
    content_id: str
    name: str
    tags: list[str]
    loader_path: str | None = None
    user_metadata: dict[str, Any] = field(default_factory=dict)


class Catalog:
    """Core's database, in memory; survives a stand-in restart when handed to the next start."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.contents: dict[str, Content] = {}
        self.records: dict[str, Record] = {}
        self.hash_reads: list[str] = []

    def hash_file(self, path: str) -> str:
        """Core's blake3 of a file; every call is one full read, noted in ``hash_reads``."""
        self.hash_reads.append(path)
        digest = blake3.blake3()
        with open(path, "rb") as f:
            while chunk := f.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
        return "blake3:" + digest.hexdigest()

    def live_at(self, path: str) -> Content | None:
        return next((c for c in self.contents.values() if c.path == path and not c.missing), None)

    def with_hash(self, asset_hash: str) -> Content | None:
        return next(
            (c for c in self.contents.values() if c.hash == asset_hash and not c.missing), None
        )

    def view(self, record: Record) -> dict[str, Any]:
        content = self.contents[record.content_id]
        tags = [*record.tags, "missing"] if content.missing else list(record.tags)
        return {
            "id": record.id,
            "name": record.name,
            "hash": content.hash,
            "size": content.size,
            "tags": tags,
            "loader_path": record.loader_path,
            "user_metadata": record.user_metadata,
        }


def _under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip(os.sep) + os.sep) for p in prefixes)


class AssetSeeder:
    """Core's ``asset_seeder``: one background scan at a time."""

    def __init__(self, folder_paths: ModuleType, catalog: Catalog) -> None:
        self.folder_paths = folder_paths
        self.catalog = catalog
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.started: list[dict[str, Any]] = []
        """Every scan started: its roots, prune_first and compute_hashes (for tests)."""
        self.hold: threading.Event | None = None
        """When given, a scan waits for it before walking (a slow disk, for tests)."""
        self.refused = threading.Event()
        """Set when ``POST /api/assets/seed`` answered 409 (for tests)."""

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def start(
        self,
        roots: tuple[str, ...] = ROOTS,
        prune_first: bool = False,
        compute_hashes: bool = False,
    ) -> bool:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self.started.append(
                {"roots": roots, "prune_first": prune_first, "compute_hashes": compute_hashes}
            )
            self._thread = threading.Thread(
                target=self._scan,
                args=(roots, prune_first, compute_hashes),
                name="_AssetSeeder",
                daemon=True,
            )
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def shutdown(self, timeout: float = 10.0) -> None:
        self.wait(timeout)

    # -- the scan ----------------------------------------------------------------

    def models_folders(self) -> list[tuple[str, list[str]]]:
        """Each type with a folder under ``models_dir``, with all its folders."""
        models_root = os.path.abspath(self.folder_paths.models_dir) + os.sep
        return [
            (name, list(paths))
            for name, (paths, _exts) in self.folder_paths.folder_names_and_paths.items()
            if any(os.path.abspath(p).startswith(models_root) for p in paths)
        ]

    def prefixes(self, root: str) -> list[str]:
        fp = self.folder_paths
        if root == "models":
            return [os.path.abspath(p) for _, paths in self.models_folders() for p in paths]
        directory = fp.get_input_directory() if root == "input" else fp.get_output_directory()
        return [os.path.abspath(directory)]

    def _collect(self, root: str) -> list[tuple[str, list[str], str]]:
        """(path, tags, loader path) of the root's files, as core's walk finds them."""
        found: list[tuple[str, list[str], str]] = []
        if root == "models":
            fp = self.folder_paths
            for name, bases in self.models_folders():
                for rel in fp.get_filename_list(name) or []:
                    full = fp.get_full_path(name, rel)
                    if full and _under(os.path.abspath(full), [os.path.abspath(b) for b in bases]):
                        found.append((os.path.abspath(full), ["models", name], rel))
            return found
        for base in self.prefixes(root):
            for dirpath, _dirs, files in os.walk(base):
                for f in files:
                    path = os.path.join(dirpath, f)
                    found.append((path, [root], os.path.relpath(path, base)))
        return found

    def _scan(self, roots: tuple[str, ...], prune_first: bool, compute_hashes: bool) -> None:
        catalog = self.catalog
        if self.hold is not None:
            self.hold.wait(60)
        if prune_first:
            owned = [p for r in ROOTS for p in self.prefixes(r)]
            with catalog.lock:
                for content in catalog.contents.values():
                    if not content.missing and not _under(content.path, owned):
                        content.missing = True
        for root in roots:
            prefixes = self.prefixes(root)
            with catalog.lock:
                for content in catalog.contents.values():
                    if not content.missing and _under(content.path, prefixes):
                        content.missing = not os.path.exists(content.path)
            for path, tags, loader_path in self._collect(root):
                self._admit(path, tags, loader_path, compute_hashes)
        if compute_hashes:
            prefixes = [p for r in roots for p in self.prefixes(r)]
            with catalog.lock:
                unhashed = [
                    c
                    for c in catalog.contents.values()
                    if not c.missing and c.hash is None and _under(c.path, prefixes)
                ]
            for content in unhashed:
                content.hash = catalog.hash_file(content.path)

    def _admit(self, path: str, tags: list[str], loader_path: str, hashing: bool) -> None:
        catalog = self.catalog
        with catalog.lock:
            if catalog.live_at(path) is not None:
                return
            missing = [c for c in catalog.contents.values() if c.path == path and c.missing]
        try:
            stat = os.stat(path)
        except OSError:
            return
        if not stat.st_size:
            return
        if missing:
            recovered = self._recover(path, stat, missing, hashing)
            if recovered is not None:
                recovered.missing = False
                return
        content = Content(uuid.uuid4().hex, path, stat.st_size, stat.st_mtime_ns)
        record = Record(
            str(uuid.uuid4()), content.id, os.path.basename(path), tags, loader_path=loader_path
        )
        with catalog.lock:
            catalog.contents[content.id] = content
            catalog.records[record.id] = record

    def _recover(
        self, path: str, stat: os.stat_result, missing: list[Content], hashing: bool
    ) -> Content | None:
        same_stat = [c for c in missing if (c.size, c.mtime_ns) == (stat.st_size, stat.st_mtime_ns)]
        if not hashing:
            return same_stat[-1] if same_stat else None
        digest = self.catalog.hash_file(path)  # with hashing on, only a hash recovers
        by_hash = [c for c in missing if c.hash == digest]
        if len(by_hash) == 1:
            return by_hash[0]
        never_hashed = [c for c in same_stat if c.hash is None]
        if not by_hash and len(never_hashed) == 1:
            never_hashed[0].hash = digest
            return never_hashed[0]
        return None


# -- routes ------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "details": {}}}, status=status
    )


def add_routes(app: web.Application, seeder: AssetSeeder, *, enabled: bool) -> None:
    """Mount core's asset routes on ComfyUI's app (``register_assets_routes``)."""
    catalog = seeder.catalog
    routes = web.RouteTableDef()

    @web.middleware
    async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/assets") and not enabled:
            return _error(
                503,
                "SERVICE_DISABLED",
                "Assets system is disabled. Start the server with --enable-assets to use this "
                "feature.",
            )
        return await handler(request)

    @routes.head("/api/assets/hash/{hash}")
    async def head_hash(request: web.Request) -> web.Response:
        asset_hash = request.match_info["hash"].strip().lower()
        if not _BLAKE3.fullmatch(asset_hash):
            return _error(400, "INVALID_HASH", "hash must be like 'blake3:<hex>'")
        with catalog.lock:
            exists = catalog.with_hash(asset_hash) is not None
        return web.Response(status=200 if exists else 404)

    @routes.get("/api/assets")
    async def list_assets(request: web.Request) -> web.Response:
        include = [t for t in request.query.get("include_tags", "").split(",") if t]
        contains = request.query.get("name_contains", "").lower()
        limit = min(int(request.query.get("limit", "20")), 500)
        offset = int(request.query.get("offset", "0"))
        with catalog.lock:
            views = [catalog.view(r) for r in catalog.records.values()]
        views = [
            v
            for v in views
            if all(t in v["tags"] for t in include) and contains in v["name"].lower()
        ]
        page = views[offset : offset + limit]
        return web.json_response(
            {"assets": page, "total": len(views), "has_more": offset + len(page) < len(views)}
        )

    @routes.post("/api/assets/from-hash")
    async def from_hash(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "INVALID_JSON", "Request body must be valid JSON.")
        asset_hash = str(body.get("hash", "")).strip().lower()
        if not _BLAKE3.fullmatch(asset_hash) or not body.get("name"):
            return _error(400, "INVALID_BODY", "Validation failed.")
        with catalog.lock:
            content = catalog.with_hash(asset_hash)
            if content is None:
                return _error(404, "ASSET_NOT_FOUND", f"Asset content {asset_hash} does not exist")
            record = Record(
                str(uuid.uuid4()),
                content.id,
                str(body["name"]),
                list(body.get("tags") or []),
                user_metadata=dict(body.get("user_metadata") or {}),
            )
            catalog.records[record.id] = record
            view = catalog.view(record)
        return web.json_response({**view, "created_new": True}, status=201)

    @routes.post("/api/assets/seed")
    async def seed(request: web.Request) -> web.Response:
        try:
            roots = (await request.json()).get("roots", list(ROOTS))
        except ValueError:
            roots = list(ROOTS)
        valid = tuple(r for r in roots if r in ROOTS)
        if not valid:
            return _error(400, "INVALID_BODY", "No valid roots specified")
        if not seeder.start(roots=valid):
            seeder.refused.set()
            return web.json_response({"status": "already_running"}, status=409)
        if request.query.get("wait", "").lower() in ("true", "1", "yes"):
            await asyncio.to_thread(seeder.wait)
            return web.json_response({"status": "completed"}, status=200)
        return web.json_response({"status": "started"}, status=202)

    @routes.get("/api/assets/seed/status")
    async def seed_status(request: web.Request) -> web.Response:
        return web.json_response({"state": "RUNNING" if seeder.running else "IDLE"})

    app.middlewares.append(gate)
    app.add_routes(routes)
