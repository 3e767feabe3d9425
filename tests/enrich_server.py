"""A loopback server that answers like Civitai's public API and the Hugging Face Hub's API, for
the metadata lookups (issue #12), with the response shapes of their public documentation:

- Civitai ``GET /api/v1/model-versions/by-hash/{hash}`` (404 ``{"error": ...}`` if unknown),
  ``POST /api/v1/model-versions/by-hash`` (a JSON array of up to 100 hashes -> the versions
  found), ``GET /api/v1/model-versions/{id}``, ``GET /api/v1/models?ids=..`` (``{"items",
  "metadata"}``), ``GET /api/v1/models/{id}``; versions carry ``id, modelId, name, air,
  baseModel, baseModelType, nsfwLevel, trainedWords, images[], downloadUrl, model{name, type,
  nsfw}, files[]{name, sizeKB, primary, downloadUrl, hashes{SHA256, AutoV2, ...}}`` (hex in
  upper case); models carry the licence fields, tags, creator and ``modelVersions`` newest first.
- Hub ``GET /api/models/{repo}[/revision/{rev}]`` (``cardData`` with ``license``), and
  ``POST /api/models/{repo}/paths-info/{rev}`` (form ``paths``, ``expand``) -> entries with
  ``size`` and ``lfs{oid, size, pointerSize}``; 404 with ``X-Error-Code``.
- ``/images/{name}``: preview images.

Misbehaviour on demand: `failures` (statuses with headers, e.g. 429 + ``Retry-After``, answered
in order before the real answer), `malformed` (a 200 whose body is not JSON), `hang` (never
answer: the client's timeout ends it). Every request is counted in `requests`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from loop_thread import LoopThread


def png_bytes(
    size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 40, 40)
) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Misbehaviour:
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    malformed: bool = False
    hang: bool = False


class EnrichServer:
    """``with EnrichServer() as server:``; ``server.civitai_base``, ``server.hf_endpoint``."""

    def __init__(self) -> None:
        self.versions: dict[int, dict[str, Any]] = {}
        self.models: dict[int, dict[str, Any]] = {}
        self.hf_repos: dict[str, dict[str, Any]] = {}
        self.hf_files: dict[tuple[str, str], dict[str, Any]] = {}
        self.images: dict[str, tuple[str, bytes]] = {}
        self.requests: Counter[str] = Counter()
        self.misbehave = Misbehaviour()
        self.seen_authorization: list[str] = []
        self.base_url = ""
        self._thread = LoopThread("test-enrich-server", self._start, self._stop, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> EnrichServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.stop(30)

    @property
    def civitai_base(self) -> str:
        return f"{self.base_url}/api/v1"

    @property
    def hf_endpoint(self) -> str:
        return self.base_url

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/api/v1/model-versions/by-hash", self._by_hashes)
        app.router.add_get("/api/v1/model-versions/by-hash/{hash}", self._by_hash)
        app.router.add_get("/api/v1/model-versions/{id}", self._version)
        app.router.add_get("/api/v1/models", self._models)
        app.router.add_get("/api/v1/models/{id}", self._model)
        app.router.add_get("/api/models/{org}/{repo}", self._hf_repo)
        app.router.add_get("/api/models/{org}/{repo}/revision/{rev}", self._hf_repo)
        app.router.add_post("/api/models/{org}/{repo}/paths-info/{rev}", self._hf_paths)
        app.router.add_get("/images/{name}", self._image)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests[
            request.path.split("/")[2] if request.path.startswith("/api/") else "img"
        ] += 1
        if "Authorization" in request.headers:
            self.seen_authorization.append(request.headers["Authorization"])
        bad = self.misbehave
        if bad.failures:
            status, headers = bad.failures.pop(0)
            return web.json_response({"error": "slow down"}, status=status, headers=headers)
        if bad.hang:
            await asyncio.Event().wait()  # never set: the client gives up (handler cancelled)
        if bad.malformed:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        return await handler(request)

    # -- publishing ---------------------------------------------------------------------------

    def add_version(
        self,
        version_id: int,
        model_id: int,
        file_name: str,
        sha256: str | None,
        size: int,
        *,
        base_model: str = "SDXL 1.0",
        trained_words: tuple[str, ...] = ("shelfstyle",),
        images: list[dict[str, Any]] | None = None,
        model_type: str = "LORA",
        nsfw: bool = False,
    ) -> dict[str, Any]:
        """Publish a version (its model created or updated; newest version listed first)."""
        hashes = {}
        if sha256:
            sha = sha256.removeprefix("sha256:")
            hashes = {"AutoV2": sha[:10].upper(), "SHA256": sha.upper(), "CRC32": "0BADC0DE"}
        version = {
            "id": version_id,
            "modelId": model_id,
            "name": f"v{version_id}",
            "air": f"urn:air:sdxl:{model_type.lower()}:civitai:{model_id}@{version_id}",
            "baseModel": base_model,
            "baseModelType": "Standard",
            "nsfwLevel": 1,
            "trainedWords": list(trained_words),
            "earlyAccessEndsAt": None,
            "model": {"name": f"Model {model_id}", "type": model_type, "nsfw": nsfw},
            "images": images if images is not None else [],
            "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
            "files": [
                {
                    "id": version_id * 10,
                    "name": file_name,
                    "sizeKB": size / 1024,
                    "type": "Model",
                    "primary": True,
                    "metadata": {"format": "SafeTensor", "fp": "fp16", "size": "pruned"},
                    "pickleScanResult": "Success",
                    "virusScanResult": "Success",
                    "hashes": hashes,
                    "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
                }
            ],
        }
        self.versions[version_id] = version
        model = self.models.setdefault(
            model_id,
            {
                "id": model_id,
                "name": f"Model {model_id}",
                "type": model_type,
                "nsfw": nsfw,
                "allowNoCredit": False,
                "allowCommercialUse": ["Image", "Rent"],
                "allowDerivatives": True,
                "allowDifferentLicense": False,
                "tags": ["style", "test"],
                "creator": {"username": "maker", "image": None},
                "modelVersions": [],
            },
        )
        others = [v for v in model["modelVersions"] if v["id"] != version_id]
        model["modelVersions"] = sorted([*others, version], key=lambda v: -v["id"])
        return version

    def add_image(self, name: str, data: bytes, content_type: str = "image/png") -> str:
        self.images[name] = (content_type, data)
        return f"{self.base_url}/images/{name}"

    def add_hf_file(
        self,
        repo_id: str,
        path: str,
        size: int,
        sha256: str | None,
        *,
        license_id: str = "openrail++",
        revision: str = "main",
    ) -> None:
        self.hf_repos[repo_id] = {
            "_id": "0" * 24,
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": hashlib.sha1(repo_id.encode()).hexdigest(),
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 10,
            "likes": 1,
            "tags": ["diffusers", "safetensors", f"license:{license_id}"],
            "cardData": {"license": license_id, "base_model": "stabilityai/sdxl-base-1.0"},
            "siblings": [{"rfilename": path}],
            "createdAt": "2025-01-01T00:00:00.000Z",
            "lastModified": "2025-01-02T00:00:00.000Z",
        }
        entry: dict[str, Any] = {
            "type": "file",
            "oid": hashlib.sha1(path.encode()).hexdigest(),
            "size": size,
            "path": path,
        }
        if sha256:
            entry["lfs"] = {
                "oid": sha256.removeprefix("sha256:"),
                "size": size,
                "pointerSize": 134,
            }
        self.hf_files[(repo_id, path)] = entry

    # -- Civitai ------------------------------------------------------------------------------

    def _versions_with(self, wanted: set[str]) -> list[dict[str, Any]]:
        return [
            v
            for v in self.versions.values()
            if any(f["hashes"].get("SHA256", "").lower() in wanted for f in v["files"])
        ]

    async def _by_hashes(self, request: web.Request) -> web.Response:
        try:
            hashes = await request.json()
        except ValueError:
            return web.json_response({"error": "Invalid JSON"}, status=400)
        if not isinstance(hashes, list) or len(hashes) > 100:
            return web.json_response({"error": "Expected an array of at most 100"}, status=400)
        return web.json_response(self._versions_with({str(h).lower() for h in hashes}))

    async def _by_hash(self, request: web.Request) -> web.Response:
        found = self._versions_with({request.match_info["hash"].lower()})
        if not found:
            return web.json_response({"error": "Model not found"}, status=404)
        return web.json_response(found[0])

    async def _version(self, request: web.Request) -> web.Response:
        version = self.versions.get(int(request.match_info["id"]))
        if version is None:
            return web.json_response({"error": "Model version not found"}, status=404)
        return web.json_response(version)

    async def _models(self, request: web.Request) -> web.Response:
        ids = [int(i) for raw in request.query.getall("ids", []) for i in raw.split(",") if i]
        items = [self.models[i] for i in ids if i in self.models]
        meta = {"totalItems": len(items), "currentPage": 1, "pageSize": 100, "totalPages": 1}
        return web.json_response({"items": items, "metadata": meta})

    async def _model(self, request: web.Request) -> web.Response:
        model = self.models.get(int(request.match_info["id"]))
        if model is None:
            return web.json_response({"error": "No model with id"}, status=404)
        return web.json_response(model)

    async def _image(self, request: web.Request) -> web.Response:
        found = self.images.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="no such image")
        return web.Response(body=found[1], content_type=found[0])

    # -- Hugging Face -------------------------------------------------------------------------

    def _hf_missing(self) -> web.Response:
        return web.Response(
            status=404,
            headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
        )

    async def _hf_repo(self, request: web.Request) -> web.Response:
        repo = self.hf_repos.get(f"{request.match_info['org']}/{request.match_info['repo']}")
        return self._hf_missing() if repo is None else web.json_response(repo)

    async def _hf_paths(self, request: web.Request) -> web.Response:
        repo_id = f"{request.match_info['org']}/{request.match_info['repo']}"
        if repo_id not in self.hf_repos:
            return self._hf_missing()
        form = await request.post()
        paths = [str(p) for p in form.getall("paths", [])]
        return web.json_response(
            [self.hf_files[(repo_id, p)] for p in paths if (repo_id, p) in self.hf_files]
        )
