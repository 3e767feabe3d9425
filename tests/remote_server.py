"""A real HTTP server on 127.0.0.1 that plays every remote a download meets: plain file hosts,
the Hugging Face Hub (with a signed-URL CDN on a second port), and Civitai's API.

It runs on a thread of its own with its own event loop, so it keeps serving whatever the test
does: block, run its own loop, or SIGKILL a downloader in a subprocess. It speaks ``Range``,
``If-Range``, ``ETag`` and ``Last-Modified`` like a real file server, and each served file can be
told to misbehave (`Behaviour`): drop the connection every N bytes, answer 503 with
``Retry-After`` first, send fewer bytes than its ``Content-Length``, lie about its size, hold at
an offset until the test says go, or send slowly. It counts every byte it sends.

One implementation for every download test and for ``bench/bench_download.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from aiohttp import web
from loop_thread import LoopThread
from model_files import write_model_file  # noqa: F401  (re-exported for tests and benches)

SEND_BYTES = 1024 * 1024


@dataclass
class Behaviour:
    """How a served file misbehaves. Tests may change these while the server runs."""

    drop_every_bytes: int | None = None
    """Close the connection after sending this many bytes of one response."""
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    """Statuses (and headers) answered, in order, before the file is served."""
    short_by_bytes: int = 0
    """Send this many bytes fewer than ``Content-Length`` states, then close..."""
    short_times: int | None = None
    """...for this many responses (None: every response)."""
    throttle_bytes_per_second: int = 0
    chunked: bool = False
    """Send no ``Content-Length`` (chunked transfer encoding)."""
    ignore_range: bool = False
    """Answer every request with 200 and the whole file."""
    content_length: int | None = None
    """State this ``Content-Length`` instead of the real one (a lie about the size)."""
    hold_at_byte: int | None = None
    """Stop sending at this offset until ``release`` is set."""
    release: threading.Event = field(default_factory=threading.Event)
    drop_after_hold: bool = False
    """Once released, cut the connection instead of going on."""
    content_disposition: str | None = None
    require_bearer: str | None = None
    """Answer 401 unless ``Authorization: Bearer <this>`` is sent."""
    require_basic: str | None = None
    """Answer 401 unless ``Authorization: Basic <base64 of this "user:password">`` is sent."""
    require_query: tuple[str, str] | None = None
    """Answer 401 unless the query string holds this ``(name, value)`` (Civitai's ``?token=``)."""
    close_connection: bool = False
    """Say ``Connection: close`` (as HTTP/1.0 servers and many mirrors do)."""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    bytes_sent: int = 0


@dataclass
class ServedFile:
    """One file the server hands out, with its history."""

    path: Path
    etag: str
    last_modified: str
    behaviour: Behaviour
    bytes_sent: int = 0
    requests: list[Request] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def full_transfers(self) -> float:
        """Bytes sent, in units of the file's size."""
        return self.bytes_sent / self.size


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class RemoteServer:
    """Start with ``with RemoteServer() as server:``; URLs come from `url`, `hf_endpoint`..."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.tls = tls
        """Serve HTTPS with this context (a test CA's certificate for 127.0.0.1)."""
        self.host = host
        """The loopback address to listen on (``::1`` for IPv6)."""
        self.files: dict[str, ServedFile] = {}
        self.hf_files: dict[tuple[str, str, str], ServedFile] = {}
        self.hf_commit = "0123456789abcdef0123456789abcdef01234567"
        self.hf_gated_token: str | None = None
        self.signed_url_seconds = 3600.0
        self.signatures_valid_after = 0.0
        self.resolve_count = 0
        self.cdn_saw_authorization = False
        self.cdn_refusals = 0
        self.civitai_versions: dict[int, dict[str, object]] = {}
        self.civitai_key: str | None = None
        self.base_url = ""
        self.cdn_url = ""
        self._thread = LoopThread(
            "test-remote-server", self._start_sites, self._stop_sites, daemon=True
        )
        self._runners: list[web.AppRunner] = []
        self._counter = 0

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> RemoteServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        for served in self.files.values():
            served.behaviour.release.set()  # a request held mid-body would block the stop
        self._thread.stop(30)

    async def _start_sites(self) -> None:
        main = web.Application()
        main.router.add_route("*", "/files/{name}", self._handle_file)
        main.router.add_route("*", "/{org}/{repo}/resolve/{revision}/{path:.+}", self._handle_hf)
        main.router.add_get("/api/v1/model-versions/{id}", self._handle_civitai_version)
        main.router.add_get("/api/v1/models/{id}", self._handle_civitai_model)
        main.router.add_get("/api/download/models/{id}", self._handle_civitai_download)
        cdn = web.Application()
        cdn.router.add_route("*", "/cdn/{key}", self._handle_cdn)
        for app, attr in ((main, "base_url"), (cdn, "cdn_url")):
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await runner.setup()
            site = web.TCPSite(runner, self.host, 0, ssl_context=self.tls)
            await site.start()
            port = runner.addresses[0][1]
            scheme = "https" if self.tls is not None else "http"
            host = f"[{self.host}]" if ":" in self.host else self.host
            setattr(self, attr, f"{scheme}://{host}:{port}")
            self._runners.append(runner)

    async def _stop_sites(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    # -- plain files ---------------------------------------------------------

    def serve(self, name: str, path: Path, **behaviour: object) -> ServedFile:
        """Serve ``path`` at ``/files/<name>``; keyword arguments set its `Behaviour`."""
        served = ServedFile(path, self._etag(path), formatdate(usegmt=True), Behaviour(**behaviour))
        self.files[name] = served
        return served

    def replace(self, name: str, path: Path) -> ServedFile:
        """Serve new content under the same name: new ETag and Last-Modified, same behaviour."""
        served = self.files[name]
        served.path = path
        served.etag = self._etag(path)
        served.last_modified = formatdate(time.time() + 1, usegmt=True)
        return served

    def url(self, name: str) -> str:
        return f"{self.base_url}/files/{name}"

    def _etag(self, path: Path) -> str:
        self._counter += 1
        stat = path.stat()
        return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}-{self._counter}"'

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        served = self.files.get(request.match_info["name"])
        if served is None:
            raise web.HTTPNotFound(text="no such file")
        return await self._send(request, served)

    async def _send(self, request: web.Request, served: ServedFile) -> web.StreamResponse:
        behaviour = served.behaviour
        log = Request(request.method, request.path_qs, dict(request.headers))
        served.requests.append(log)
        bearer = behaviour.require_bearer
        if bearer is not None and request.headers.get("Authorization") != f"Bearer {bearer}":
            log.status = 401
            raise web.HTTPUnauthorized(text="a valid token is required")
        basic = behaviour.require_basic
        if basic is not None:
            wanted = "Basic " + base64.b64encode(basic.encode()).decode()
            if request.headers.get("Authorization") != wanted:
                log.status = 401
                raise web.HTTPUnauthorized(
                    text="a user and password are required",
                    headers={"WWW-Authenticate": 'Basic realm="models"'},
                )
        wanted = behaviour.require_query
        if wanted is not None and request.query.get(wanted[0]) != wanted[1]:
            log.status = 401
            raise web.HTTPUnauthorized(text="a valid token is required in the query")
        if behaviour.failures:
            status, headers = behaviour.failures.pop(0)
            log.status = status
            return web.Response(status=status, headers=headers, text="try again later")
        size = served.size
        start, status = 0, 200
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        range_applies = if_range is None or if_range in (served.etag, served.last_modified)
        if range_header and range_applies and not behaviour.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            status = 206
            if start >= size:
                log.status = 416
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        length = size - start
        headers = {
            "ETag": served.etag,
            "Last-Modified": served.last_modified,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if behaviour.content_disposition:
            headers["Content-Disposition"] = behaviour.content_disposition
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        if not behaviour.chunked:
            headers["Content-Length"] = str(behaviour.content_length or length)
        log.status = status
        response = web.StreamResponse(status=status, headers=headers)
        if behaviour.close_connection:
            response.force_close()
        if behaviour.chunked:
            response.enable_chunked_encoding()
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        to_send = length
        if behaviour.short_by_bytes and behaviour.short_times != 0:
            to_send -= behaviour.short_by_bytes
            if behaviour.short_times is not None:
                behaviour.short_times -= 1
        offset = start
        sent = 0
        began = time.monotonic()
        with open(served.path, "rb") as handle:
            handle.seek(start)
            while sent < to_send:
                want = min(SEND_BYTES, to_send - sent)
                if behaviour.drop_every_bytes:
                    want = min(want, behaviour.drop_every_bytes - sent)
                if behaviour.hold_at_byte is not None and offset < behaviour.hold_at_byte:
                    want = min(want, behaviour.hold_at_byte - offset)
                if behaviour.hold_at_byte is not None and offset == behaviour.hold_at_byte:
                    await asyncio.get_running_loop().run_in_executor(None, behaviour.release.wait)
                    if behaviour.drop_after_hold:
                        break
                chunk = handle.read(want)
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
                offset += len(chunk)
                served.bytes_sent += len(chunk)
                log.bytes_sent += len(chunk)
                if behaviour.throttle_bytes_per_second:
                    ahead = sent / behaviour.throttle_bytes_per_second - (time.monotonic() - began)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                if behaviour.drop_every_bytes and sent >= behaviour.drop_every_bytes:
                    break
        if sent < length:
            # End the connection mid-body, as a dying server or a proxy timing out would. A
            # close (FIN), not a reset: bytes already sent still arrive, so the counts are exact.
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    # -- Hugging Face --------------------------------------------------------

    def add_hf_file(
        self,
        repo_id: str,
        path_in_repo: str,
        path: Path,
        revision: str = "main",
        **behaviour: object,
    ) -> ServedFile:
        """Publish ``path`` as an LFS file of ``repo_id``: resolve redirects to a signed CDN."""
        served = ServedFile(path, "", formatdate(usegmt=True), Behaviour(**behaviour))
        served.etag = f'"{sha256_of(path)}"'
        self.hf_files[(repo_id, revision, path_in_repo)] = served
        return served

    def expire_signed_urls(self) -> None:
        """Every signed CDN URL handed out so far stops working (403), as after their TTL."""
        self.signatures_valid_after = time.time() + 0.001
        time.sleep(0.002)  # the clock must move past the mark before new URLs are signed

    async def _handle_hf(self, request: web.Request) -> web.StreamResponse:
        repo_id = f"{request.match_info['org']}/{request.match_info['repo']}"
        key = (repo_id, request.match_info["revision"], request.match_info["path"])
        served = self.hf_files.get(key)
        if served is None:
            return web.Response(
                status=404,
                headers={"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"},
            )
        token = self.hf_gated_token
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(
                status=401,
                headers={
                    "X-Error-Code": "GatedRepo",
                    "X-Error-Message": "Access to this gated repo is restricted",
                },
            )
        self.resolve_count += 1
        sha = served.etag.strip('"')
        issued = time.time()
        expires = issued + self.signed_url_seconds
        location = f"{self.cdn_url}/cdn/{sha}?issued={issued!r}&expires={expires!r}"
        return web.Response(
            status=302,
            headers={
                "Location": location,
                "X-Repo-Commit": self.hf_commit,
                "X-Linked-Etag": served.etag,
                "X-Linked-Size": str(served.size),
                "ETag": served.etag,
            },
        )

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        if "Authorization" in request.headers:
            self.cdn_saw_authorization = True
        key = request.match_info["key"]
        served = next((f for f in self._all_files() if f.etag.strip('"') == key), None)
        if served is None:
            raise web.HTTPNotFound(text="no such object")
        issued = float(request.query.get("issued", "0"))
        expires = float(request.query.get("expires", "0"))
        if time.time() > expires or issued < self.signatures_valid_after:
            self.cdn_refusals += 1
            return web.Response(status=403, text="Request has expired")
        return await self._send(request, served)

    def _all_files(self) -> list[ServedFile]:
        return [*self.files.values(), *self.hf_files.values()]

    # -- Civitai -------------------------------------------------------------

    def add_civitai_version(
        self,
        version_id: int,
        model_id: int,
        path: Path,
        file_name: str,
        model_type: str = "LORA",
        sha256: str | None = None,
        **behaviour: object,
    ) -> ServedFile:
        """Publish ``path`` as the primary file of a Civitai model version."""
        served = self.serve(f"civitai-{version_id}", path, **behaviour)
        served.behaviour.content_disposition = f'attachment; filename="{file_name}"'
        self.civitai_versions[version_id] = {
            "id": version_id,
            "modelId": model_id,
            "name": f"v{version_id}",
            "air": f"urn:air:sdxl:{model_type.lower()}:civitai:{model_id}@{version_id}",
            "model": {"name": f"model {model_id}", "type": model_type},
            "files": [
                {
                    "id": version_id * 10,
                    "name": "training-data.zip",
                    "type": "Training Data",
                    "sizeKB": 1.0,
                    "hashes": {},
                    "downloadUrl": f"{self.base_url}/api/download/models/{version_id}?t=data",
                    "primary": False,
                },
                {
                    "id": version_id * 10 + 1,
                    "name": file_name,
                    "type": "Model",
                    "sizeKB": served.size / 1024,
                    "metadata": {"format": "SafeTensor", "fp": "fp16"},
                    "hashes": {"SHA256": (sha256 or sha256_of(path)).upper(), "AutoV2": "X"},
                    "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
                    "primary": True,
                },
            ],
            "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
        }
        return served

    def _civitai_auth_ok(self, request: web.Request) -> bool:
        return self.civitai_key is None or (
            request.headers.get("Authorization") == f"Bearer {self.civitai_key}"
        )

    async def _handle_civitai_version(self, request: web.Request) -> web.Response:
        version = self.civitai_versions.get(int(request.match_info["id"]))
        if version is None:
            return web.json_response({"error": "Model version not found"}, status=404)
        return web.json_response(version)

    async def _handle_civitai_model(self, request: web.Request) -> web.Response:
        model_id = int(request.match_info["id"])
        versions = [v for v in self.civitai_versions.values() if v["modelId"] == model_id]
        if not versions:
            return web.json_response({"error": "No model with id"}, status=404)
        versions.sort(key=lambda v: -int(v["id"]))  # newest first, as the API lists them
        first = versions[0]
        return web.json_response(
            {
                "id": model_id,
                "name": first["model"]["name"],
                "type": first["model"]["type"],
                "modelVersions": versions,
            }
        )

    async def _handle_civitai_download(self, request: web.Request) -> web.Response:
        if not self._civitai_auth_ok(request):
            return web.json_response({"error": "Unauthorized"}, status=401)
        version_id = int(request.match_info["id"])
        if version_id not in self.civitai_versions:
            return web.json_response({"error": "not found"}, status=404)
        served = self.files[f"civitai-{version_id}"]
        # Civitai redirects to a short-lived signed URL on its storage host.
        issued = time.time()
        key = served.etag.strip('"')
        return web.Response(
            status=307,
            headers={
                "Location": f"{self.cdn_url}/cdn/{key}?issued={issued!r}"
                f"&expires={issued + self.signed_url_seconds!r}"
            },
        )
