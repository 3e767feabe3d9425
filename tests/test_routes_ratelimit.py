"""Issue #11: per-client token buckets on the routes that change something: 429 ``RATE_LIMITED``
with ``Retry-After``; reads and the LAN peer routes are not counted. The clock is the test's,
so nothing here depends on how fast the machine is."""

from __future__ import annotations

from typing import Any

import pytest
from routes_support import JSON, json_of

from model_shelf.library import Shelf
from model_shelf.library.errors import RateLimitedError
from model_shelf.library.settings import ApiSettings
from model_shelf.server_routes import CONTEXT_KEY, standalone_app
from model_shelf.server_routes.ratelimit import MAX_CLIENTS, RateLimiter

pytest_plugins = ["routes_fixtures"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_per_client_refilled_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_second=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("10.0.0.1")
    with pytest.raises(RateLimitedError) as limited:
        limiter.take("10.0.0.1")
    assert limited.value.code == "RATE_LIMITED" and limited.value.retry_after_seconds == 1
    assert "10.0.0.1" in limited.value.message and "_BURST" in limited.value.message
    limiter.take("10.0.0.2")  # another client has its own bucket
    clock.now += 0.5  # one token back (2 a second)
    limiter.take("10.0.0.1")
    with pytest.raises(RateLimitedError):
        limiter.take("10.0.0.1")
    clock.now += 3600  # never more than the burst, however long the client was away
    for _ in range(3):
        limiter.take("10.0.0.1")
    with pytest.raises(RateLimitedError):
        limiter.take("10.0.0.1")


def test_memory_stays_bounded_with_many_clients() -> None:
    clock = Clock()
    limiter = RateLimiter(per_second=1.0, burst=2, clock=clock)
    for n in range(MAX_CLIENTS + 500):
        limiter.take(f"client-{n}")
        clock.now += 0.001
    assert len(limiter._buckets) <= MAX_CLIENTS


def test_the_defaults_are_generous_and_the_environment_sets_them() -> None:
    default = ApiSettings()
    assert default.rate_limit_burst >= 500 and default.rate_limit_per_second >= 50
    env = {"MODEL_SHELF_API_RATE_LIMIT_BURST": "7", "MODEL_SHELF_API_RATE_LIMIT_PER_SECOND": "0.5"}
    assert ApiSettings.from_env(env) == ApiSettings(rate_limit_burst=7, rate_limit_per_second=0.5)


async def test_writes_are_limited_reads_and_peers_are_not(
    aiohttp_client: Any, api_shelf: Shelf
) -> None:
    app = standalone_app(api_shelf)
    clock = Clock()
    app[CONTEXT_KEY].limiter = RateLimiter(per_second=1.0, burst=3, clock=clock)
    client = await aiohttp_client(app)

    async def write() -> Any:
        return await client.put("/model-shelf/settings", json={"concurrency": 2}, headers=JSON)

    for _ in range(5):  # another site's writes are refused without spending the user's tokens
        cross_site = await client.post(
            "/model-shelf/downloads", data=b"x", headers={"Origin": "http://evil.example"}
        )
        assert (await json_of(cross_site))["code"] == "CROSS_SITE"
    for _ in range(3):
        assert (await write()).status == 200
    limited = await write()
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "1"
    error = await json_of(limited)
    assert error["code"] == "RATE_LIMITED" and "127.0.0.1" in error["message"]
    # a same-site write that fails later counts too (a flood of bad requests is still a flood)
    bad = await client.post("/model-shelf/downloads", data=b"{", headers=JSON)
    assert bad.status == 429
    for _ in range(20):  # the page polls: reads are never limited
        assert (await client.get("/model-shelf/downloads")).status == 200
    peers = await client.get("/model-shelf/peer/models")
    assert (await json_of(peers))["code"] == "PEER_REFUSED"  # its own check, not the limit
    clock.now += 1.0
    assert (await write()).status == 200
    metrics = await (await client.get("/model-shelf/metrics")).text()
    assert 'code="RATE_LIMITED"' in metrics
