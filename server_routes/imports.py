"""``/model-shelf/import`` (a path on the server) and ``/model-shelf/upload`` (a file streamed
from the browser).

An upload never sits in memory: its body is read in chunks and written, in batches, by the API's
threads to ``.shelf/partial/upload-<id>/<file>`` while every digest is computed from the same
bytes; then the file is moved into its type folder (a rename: same filesystem) with those
digests, so a multi-gigabyte drop is read exactly once. If anything fails, the temporary folder
is removed; one abandoned by a crash is removed later by ``clean`` as an orphan.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from aiohttp import ClientPayloadError, web

from ..library import ImportMode, Shelf
from ..library.errors import IncompleteUploadError, NotAModelError
from ..library.fsutil import remove_path, require_free_space, storage_errors
from ..library.hashing import Hashes, MultiHasher
from ..library.layout import MODEL_EXTENSIONS, check_type, safe_name
from ..library.records import ModelRecord
from . import events
from .context import RouteContext
from .guard import accepts_upload, read_json
from .models import detail
from .paths import PREFIX
from .responses import json_model, query_params
from .schemas import ImportRequest, ModelDetail, UploadQuery

UPLOAD_READ_BYTES = 1024 * 1024
UPLOAD_WRITE_BYTES = 8 * 1024 * 1024
"""Received bytes are written (and hashed) in batches this large, off the event loop."""
PROGRESS_INTERVAL_SECONDS = 0.25


class _Progress:
    """Import progress as ``model-shelf.import`` events, at most every quarter second."""

    def __init__(self, ctx: RouteContext, name: str, total: int | None) -> None:
        self.ctx, self.name, self.total = ctx, name, total
        self.done = 0
        self._last = 0.0

    def __call__(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL_SECONDS or self.done == self.total:
            self._last = now
            self.ctx.events.publish(
                events.IMPORT,
                {"name": self.name, "bytes_done": self.done, "total_bytes": self.total},
            )


class _Receiver:
    """Writes and hashes one upload on the API's threads (one call at a time, in order)."""

    def __init__(self, shelf: Shelf, filename: str, expected: int | None) -> None:
        self.folder = shelf.layout.partial_dir / f"upload-{uuid.uuid4().hex}"
        self.path = self.folder / filename
        self.expected = expected
        self.margin = shelf.downloads.settings.free_space_margin_bytes
        self.handle: BinaryIO | None = None
        self.hasher: MultiHasher | None = None
        self.written = 0

    def open(self) -> None:
        self.folder.mkdir(parents=True)
        if self.expected:
            require_free_space(self.path, self.expected, self.margin)
        self.handle = open(self.path, "xb")  # noqa: SIM115 (closed in finish/discard)
        self.hasher = MultiHasher()

    def write(self, data: bytearray) -> None:
        """Append ``data`` and add it to the digests."""
        assert self.handle is not None and self.hasher is not None
        with storage_errors(self.path):  # a full disk is STORAGE_FULL (507), not a crash
            self.handle.write(data)
        self.hasher.update(data)  # never changed afterwards: `upload` starts a new batch
        self.written += len(data)

    def finish(self) -> Hashes:
        assert self.handle is not None and self.hasher is not None
        with storage_errors(self.path):
            self.handle.flush()
            os.fsync(self.handle.fileno())
        self.handle.close()
        self.handle = None
        return self.hasher.hexdigests()

    def discard(self) -> None:
        """Close and remove what was received (our own temporary: nothing to journal)."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self.hasher is not None:
            self.hasher.close()
            self.hasher = None
        with contextlib.suppress(FileNotFoundError):
            remove_path(self.folder)


def routes(ctx: RouteContext) -> list[web.RouteDef]:
    """The import routes, bound to ``ctx``."""

    async def import_path(request: web.Request) -> web.Response:
        """``{"path", "type", "mode": "copy"|"link", "name"?}``: import from the server's disk."""
        body = await read_json(request, ImportRequest)
        shelf = ctx.shelf()
        progress = _Progress(ctx, Path(body.path).name, None)

        def work() -> ModelDetail:
            record = shelf.import_model(
                Path(body.path),
                body.type,
                ImportMode(body.mode),
                name=body.name,
                progress=progress,
            )
            return detail(shelf, record)

        answer = await ctx.run_long(work)
        ctx.events.library_changed([answer.record["type"]])
        return json_model(answer, status=201)

    async def upload(request: web.Request) -> web.Response:
        """The request body is the file (``application/octet-stream``, ``X-Model-Shelf: 1``);
        ``?type=loras&name=x.safetensors`` says where it goes."""
        params = UploadQuery.model_validate(query_params(request))
        model_type = check_type(params.type)
        name = safe_name(params.name)
        filename = PurePosixPath(name).name
        if PurePosixPath(filename).suffix.lower() not in MODEL_EXTENSIONS:
            raise NotAModelError(
                f"{filename} is not a model file ({', '.join(sorted(MODEL_EXTENSIONS))})"
            )
        shelf = ctx.shelf()
        receiver = _Receiver(shelf, filename, request.content_length)
        progress = _Progress(ctx, filename, request.content_length)
        try:
            await ctx.run_long(receiver.open)
            batch = bytearray()
            try:
                async for chunk in request.content.iter_chunked(UPLOAD_READ_BYTES):
                    batch += chunk
                    if len(batch) >= UPLOAD_WRITE_BYTES:
                        await ctx.run_long(receiver.write, batch)
                        progress(len(batch))
                        batch = bytearray()  # the old one may still be referenced by a digest
            except (ClientPayloadError, ConnectionError) as exc:
                raise IncompleteUploadError(f"the upload of {filename} broke off: {exc}") from exc
            if batch:
                await ctx.run_long(receiver.write, batch)
                progress(len(batch))
            if receiver.expected is not None and receiver.written != receiver.expected:
                raise IncompleteUploadError(
                    f"the upload of {filename} ended after {receiver.written} of "
                    f"{receiver.expected} bytes"
                )
            hashes = await ctx.run_long(receiver.finish)

            def place() -> ModelDetail:
                record: ModelRecord = shelf.import_received(receiver.path, model_type, name, hashes)
                return detail(shelf, record)

            answer = await ctx.run_long(place)
        finally:
            await ctx.run_long(receiver.discard)
        ctx.events.library_changed([model_type])
        return json_model(answer, status=201)

    return [
        web.post(f"{PREFIX}/import", import_path),
        web.post(f"{PREFIX}/upload", accepts_upload(upload)),
    ]
