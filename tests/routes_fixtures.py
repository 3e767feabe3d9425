"""Fixtures for the HTTP API tests: add ``pytest_plugins = ["routes_fixtures"]``.

A real `Shelf` on a temporary root with quick download settings, the standalone app built on it
(the engine runs in the test's loop), a pytest-aiohttp client, and a real file server on
127.0.0.1 (`RemoteServer`) to download from. Test modules import helpers from `routes_support`,
never from here (pytest must import this module first, as a plugin, to rewrite its asserts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from downloads_support import quick_settings
from remote_server import RemoteServer, write_model_file

from model_shelf.library import ImportMode, ModelRecord, Shelf
from model_shelf.server_routes import standalone_app

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def api_shelf(tmp_path: Path) -> Iterator[Shelf]:
    """The library the API serves (its root's parent is the test's tmp_path)."""
    with Shelf.open(tmp_path / "library", quick_settings()) as shelf:
        yield shelf


@pytest.fixture
async def client(aiohttp_client: ClientFactory, api_shelf: Shelf) -> AsyncIterator[TestClient]:
    """A client of `standalone_app` over `api_shelf`; the download engine runs meanwhile."""
    app = standalone_app(api_shelf)
    client = await aiohttp_client(app)
    yield client
    # The app (and its engine's threads) stops here, before `api_shelf` closes the library:
    # fixtures end in reverse order of their start, and `aiohttp_client` started first, so its
    # own close would come after the library's databases were closed under a running engine.
    await client.close()


@pytest.fixture
def remote() -> Iterator[RemoteServer]:
    with RemoteServer() as server:
        yield server


@pytest.fixture
def add_model(api_shelf: Shelf, tmp_path: Path) -> Callable[..., ModelRecord]:
    """Import a real safetensors file of ``size`` bytes as ``type/name``."""
    counter = iter(range(1_000_000))

    def add(name: str, model_type: str = "loras", size: int = 4096, **kw: Any) -> ModelRecord:
        n = next(counter)
        source = write_model_file(tmp_path / "incoming" / f"{n}-{Path(name).name}", size, seed=n)
        return api_shelf.import_model(source, model_type, ImportMode.MOVE, name=name, **kw)

    return add
