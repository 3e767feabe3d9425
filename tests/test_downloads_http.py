"""HTTP failures -> typed errors (one function), header parsing, the circuit breaker, the
bandwidth limiter."""

from __future__ import annotations

import asyncio
import errno
import http.client
from email.utils import formatdate

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from model_shelf.library.downloads import throttle
from model_shelf.library.downloads.breaker import CircuitBreaker
from model_shelf.library.downloads.http import (
    ContentRange,
    check_secure,
    display_url,
    error_for_exception,
    error_for_status,
    parse_content_range,
    retry_after_seconds,
    unsatisfied_range_total,
)
from model_shelf.library.downloads.transport import ResponseHead
from model_shelf.library.errors import (
    AuthRequiredError,
    HostUnavailableError,
    InsecureURLError,
    OfflineError,
    RemoteError,
)

SIGNED = "https://cdn.example.com/blob/abc?X-Amz-Signature=secret&Expires=1"


def test_statuses_map_to_typed_errors_with_url_and_server_message():
    error = error_for_status(SIGNED, 404, {"X-Error-Message": "Entry not found"})
    assert isinstance(error, RemoteError) and isinstance(error, ConnectionError)
    assert (error.status, error.retryable, error.code) == (404, False, "REMOTE_ERROR")
    assert "Entry not found" in error.message
    assert "secret" not in error.message  # signed URLs carry credentials: never shown
    assert "https://cdn.example.com/blob/abc" in error.message
    cdn = error_for_status(SIGNED, 502, {"X-Amz-Cf-Id": "cf-123"})
    assert "(request id cf-123)" in cdn.message  # what a bug report to the CDN needs

    auth = error_for_status(SIGNED, 403, {}, "AccessDenied")
    assert isinstance(auth, AuthRequiredError) and isinstance(auth, PermissionError)
    assert auth.code == "AUTH_REQUIRED" and "AccessDenied" in auth.message

    for status in (408, 429, 500, 502, 503, 504):
        assert error_for_status(SIGNED, status, {}).retryable
    busy = error_for_status(SIGNED, 503, {"Retry-After": "7"})
    assert busy.retry_after_seconds == 7.0


def test_retry_after_takes_seconds_or_a_date():
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(formatdate(1000.0 + 30, usegmt=True), now=1000.0) == 30.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_content_range_parsing():
    assert parse_content_range("bytes 100-199/1000") == ContentRange(100, 199, 1000)
    assert parse_content_range("bytes 0-9/*") == ContentRange(0, 9, None)
    assert parse_content_range("items 1-2/3") is None
    assert unsatisfied_range_total("bytes */1000") == 1000


def _connector_error(error: OSError) -> aiohttp.ClientConnectorError:
    key = ConnectionKey("example.com", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, error)


def test_transport_failures_are_offline_before_an_answer_and_remote_after():
    refused = error_for_exception(
        _connector_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")),
        SIGNED,
    )
    assert isinstance(refused, OfflineError) and refused.code == "OFFLINE"
    assert refused.message == "cannot reach cdn.example.com: connection refused"

    dropped = error_for_exception(aiohttp.ClientPayloadError("not complete"), SIGNED)
    assert isinstance(dropped, RemoteError) and dropped.retryable

    stalled = error_for_exception(asyncio.TimeoutError(), SIGNED, stall_seconds=60)
    assert isinstance(stalled, RemoteError) and "60 s" in stalled.message

    class ConnectTimeout(Exception):  # huggingface_hub's HTTP clients name theirs so
        pass

    assert isinstance(error_for_exception(ConnectTimeout("x"), SIGNED), OfflineError)


def test_plain_http_only_to_this_machine():
    check_secure("https://example.com/x", allow_insecure_http=False)
    check_secure("http://127.0.0.1:8000/x", allow_insecure_http=False)
    check_secure("http://[::1]:8000/x", allow_insecure_http=False)
    check_secure("http://example.com/x", allow_insecure_http=True)
    with pytest.raises(InsecureURLError):
        check_secure("http://example.com/x", allow_insecure_http=False)
    assert display_url("http://u:p@host:81/a?b=c") == "http://host:81/a?…"


def test_circuit_breaker_opens_after_failures_half_opens_and_backs_off():
    now = [1000.0]
    breaker = CircuitBreaker(threshold=3, cooldown_seconds=60, clock=lambda: now[0])
    for _ in range(2):
        breaker.record_failure("h")
        breaker.check("h")
    breaker.record_failure("h")
    with pytest.raises(HostUnavailableError) as caught:
        breaker.check("h")
    assert caught.value.code == "HOST_UNAVAILABLE" and caught.value.until == 1060.0
    breaker.check("other")  # other hosts are not affected

    now[0] = 1061.0
    breaker.check("h")  # half-open: one request may try...
    with pytest.raises(HostUnavailableError):
        breaker.check("h")  # ...only one
    breaker.record_failure("h")  # it failed: open again, twice as long
    with pytest.raises(HostUnavailableError) as caught:
        breaker.check("h")
    assert caught.value.until == 1061.0 + 120

    now[0] = 1200.0
    breaker.check("h")
    breaker.record_success("h")
    breaker.check("h")
    breaker.check("h")  # closed again


def test_bandwidth_limiter_paces_bytes(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(throttle.time, "monotonic", lambda: clock[0])
    limiter = throttle.BandwidthLimiter(1_000_000)
    waited = 0.0
    for _ in range(10):
        delay = limiter.book(250_000)  # the reader waits this long before its next read
        waited += delay
        clock[0] += delay
    # 2.5 MB at 1 MB/s: 2.5 s, less the quarter-second burst allowance.
    assert waited == pytest.approx(2.5 - throttle.BURST_SECONDS)
    assert limiter.read_size(4_000_000) == 250_000  # a burst's worth per read, never more
    unlimited = throttle.BandwidthLimiter(0)
    assert unlimited.book(10**12) == 0.0
    assert unlimited.read_size(4_000_000) == 4_000_000


def head_with(**headers: str) -> ResponseHead:
    message = http.client.HTTPMessage()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return ResponseHead("https://mirror.example/files/fallback%20name.safetensors", 200, message)


def test_the_file_name_a_server_suggests():
    both = head_with(
        Content_Disposition='attachment; filename="cafe.safetensors"; '
        "filename*=UTF-8''caf%C3%A9%20v2.safetensors"
    )
    assert both.filename == "café v2.safetensors"  # RFC 2231 beats the ASCII fallback
    plain = head_with(Content_Disposition='attachment; filename="detail.safetensors"')
    assert plain.filename == "detail.safetensors"
    # Raw UTF-8 in the header (common), which http.client hands over decoded as Latin-1.
    raw = 'attachment; filename="café.safetensors"'.encode().decode("latin-1")
    assert head_with(Content_Disposition=raw).filename == "café.safetensors"
    assert head_with().filename == "fallback name.safetensors"  # else the URL's last part
