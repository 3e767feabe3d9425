"""A schema-driven fuzz run over every route: random path parts, queries, bodies, content types
and origins. Whatever comes in: never a 500, always a JSON error ``{code, message}``, and
nothing outside the library root is created, changed or removed.

The server runs on a thread of its own (hypothesis drives it synchronously, through urllib),
with the download engine off: a fuzzed but valid download would otherwise try the network.
"""

from __future__ import annotations

import json
import re
import shutil
import string
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from conftest import tree_snapshot
from downloads_support import quick_settings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from remote_server import write_model_file
from routes_support import ThreadedApp

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.settings import ApiSettings
from model_shelf.server_routes import CONTEXT_KEY, route_table, standalone_app
from model_shelf.server_routes.context import BackgroundJobs, RouteContext, provide

BODY_KEYS = [
    "source", "type", "name", "sha256", "priority", "path", "mode", "confirm", "tags",
    "aliases", "ids", "all", "apply", "keep", "names", "concurrency",
    "bandwidth_limit_bytes_per_second", "hf_token", "civitai_api_key", "root",
]  # fmt: skip
QUERY_KEYS = ["text", "type", "architecture", "tag", "status", "sort", "offset", "limit", "name"]
EXAMPLES = 400

NASTY = [
    "..", "../..", "../../etc/passwd", "%2e%2e%2f", "/etc/passwd", "C:\\Windows", "\x00",
    "a" * 300, "loras", "checkpoints", "x.safetensors", "sub/x.ckpt", ".shelf", "*", '"',
    "NEAR(", "\u202e", "😀", "",
]  # fmt: skip


class FuzzServer:
    """The app on a library with three models, restarted from the same files whenever an
    example may have changed the library (so that every example starts from one state and
    hypothesis can replay what it finds); the library root's parent, and every route but the
    event stream (which never ends by itself)."""

    def __init__(self, top: Path, pristine: Path) -> None:
        self.top = top
        self.library = top / "library"
        self.pristine = pristine
        shelf = Shelf.open(self.library, quick_settings())
        try:
            self.ids = ["0123456789ab"]
            for n in range(3):
                source = write_model_file(top / "incoming" / f"m{n}.safetensors", 4096, seed=n)
                self.ids.append(shelf.import_model(source, "loras", ImportMode.MOVE).id)
            ctx = RouteContext(provide(shelf))
            self.routes = [
                (r.method, r.path) for r in route_table(ctx) if not r.path.endswith("/events")
            ]
            ctx.close()
        finally:
            shelf.close()
        shutil.copytree(self.library, pristine, symlinks=True)
        self._shelf: Shelf | None = None
        self._server: ThreadedApp | None = None
        self._jobs: BackgroundJobs | None = None
        self.dirty = True

    @property
    def server(self) -> ThreadedApp:
        if self.dirty:
            self.stop()
            shutil.rmtree(self.library)
            shutil.copytree(self.pristine, self.library, symlinks=True)
            self._shelf = Shelf.open(self.library, quick_settings())
            # One request per example: a burst above the examples' count keeps the rate limit
            # (issue #11) out of the answers, however fast or slow the machine runs them.
            api = ApiSettings(rate_limit_burst=10 * EXAMPLES)
            ctx = RouteContext(provide(self._shelf), api_settings=api)
            app = standalone_app(self._shelf, run_downloads=False, ctx=ctx)
            self._jobs = app[CONTEXT_KEY].jobs

            async def make() -> Any:
                return app

            self._server = ThreadedApp(make, "test-fuzz-server").__enter__()
            self.dirty = False
        assert self._server is not None
        return self._server

    def settle(self) -> None:
        """Wait for the work a request started in the background (verify all) to end."""
        if self._server is not None and self._jobs is not None:
            self._server.call(self._jobs.wait())

    def stop(self) -> None:
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None
        if self._shelf is not None:
            self._shelf.close()
            self._shelf = None


@pytest.fixture
def fuzz_server(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    """Made once for all the examples (restarted from the same files as needed)."""
    write_model_file(tmp_path / "outside" / "source.safetensors", 4096)
    fuzz = FuzzServer(tmp_path, tmp_path_factory.mktemp("fuzz-pristine") / "library")
    try:
        yield fuzz
    finally:
        fuzz.stop()


def outside_snapshot(top: Path) -> dict[str, tuple[int, int]]:
    """Every file beside the library root (the library itself may change)."""
    return tree_snapshot(top, skip=frozenset({"library"}))


def _fill(path: str, data: st.DataObject, ids: list[str]) -> str:
    def part(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("action"):
            value = data.draw(st.sampled_from(["pause", "resume", "cancel", "retry", "x"]))
        else:
            value = data.draw(st.one_of(st.sampled_from(ids + NASTY), st.text(max_size=40)))
        if data.draw(st.booleans()):
            return quote(value, safe="")
        return quote(value, safe="/.")  # some raw "../" reaches the router

    return re.sub(r"\{([^}]*)\}", part, path)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=60),
    st.sampled_from(NASTY),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _body(data: st.DataObject, outside: Path) -> bytes | None:
    kind = data.draw(st.sampled_from(["none", "known", "json", "bytes"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return data.draw(st.binary(max_size=2000))
    if kind == "json":
        return json.dumps(data.draw(json_values)).encode()
    body: dict[str, Any] = {}
    for key in data.draw(st.lists(st.sampled_from(BODY_KEYS), max_size=4, unique=True)):
        if key in ("path", "root"):
            name = data.draw(st.text(alphabet=string.ascii_letters + "._-/", max_size=30))
            body[key] = data.draw(
                st.sampled_from([str(outside / "source.safetensors"), str(outside / name), name])
            )
        else:
            body[key] = data.draw(st.one_of(scalars, st.lists(scalars, max_size=3)))
    return json.dumps(body).encode()


def _send(url: str, method: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_no_input_breaks_the_api_or_escapes_the_root(
    fuzz_server: FuzzServer, data: st.DataObject
) -> None:
    server, top = fuzz_server.server, fuzz_server.top
    outside_before = outside_snapshot(top)
    method, template = data.draw(st.sampled_from(fuzz_server.routes))
    path = _fill(template, data, fuzz_server.ids)
    if data.draw(st.booleans()):
        path = "/api" + path
    query = data.draw(
        st.dictionaries(
            st.sampled_from(QUERY_KEYS),
            st.one_of(st.text(max_size=30), st.sampled_from(NASTY)),
            max_size=3,
        )
    )
    url = server.url + path + ("?" + urlencode(query) if query else "")
    headers: dict[str, str] = {}
    content_type = data.draw(
        st.sampled_from(
            [
                "application/json",
                "application/json",
                "text/plain",
                "application/octet-stream",
                "application/x-www-form-urlencoded",
                None,
            ]
        )
    )
    if content_type:
        headers["Content-Type"] = content_type
    if data.draw(st.booleans()):
        headers["X-Model-Shelf"] = "1"
    origin = data.draw(st.sampled_from([None, None, server.url, "http://evil.example", "null"]))
    if origin:
        headers["Origin"] = origin
    body = _body(data, top / "outside")
    status, payload = _send(url, method, body, headers)
    event(f"{method} {template.split('{')[0]}: {status}")
    fuzz_server.settle()
    if method != "GET" and status < 400:
        fuzz_server.dirty = True  # the next example starts from the same library again

    assert status < 500, (method, url, headers, body, payload[:500])
    if status >= 400:
        error = json.loads(payload)
        assert set(error) == {"code", "message"}, error
        assert re.fullmatch(r"[A-Z_]+", error["code"])
    assert outside_snapshot(top) == outside_before, "something outside the library root changed"
