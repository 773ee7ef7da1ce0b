"""Bad bytes and silent peers: typed errors, no hangs, and the client recovers.

Reads are retried on a lost connection by default; these tests turn retries off
to see the error the lost request itself raised.

The node is real; a proxy in front of it injects what a healthy node never
sends (garbage, truncated and oversized frames) or holds its replies back.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from app.settings import Settings
from drivers.ignite import Client
from drivers.ignite.errors import (
    IgniteConnectionError,
    IgniteError,
    IgniteTimeout,
    RemoteProtocolError,
)
from drivers.retry import NO_RETRY
from tests.support.proxy import Proxy


@pytest.fixture
async def proxy(settings: Settings) -> Proxy:
    async with Proxy(settings.ignite.nodes[0]) as p:
        yield p  # type: ignore[misc]


async def _pending_get(client: Client, proxy: Proxy) -> asyncio.Future[object]:
    cache = await client.get_or_create_cache("adversity")
    proxy.hold_replies = True
    fut = asyncio.ensure_future(cache.get("k"))
    await asyncio.sleep(0.05)
    return fut


@pytest.mark.parametrize("garbage", [
    struct.pack("<i", -5),                       # negative frame length
    struct.pack("<i", 3) + b"abc",               # a frame too short for a reply header
])
async def test_garbage_fails_pending_requests_with_the_protocol_error(proxy: Proxy, garbage: bytes) -> None:
    async with Client([proxy.address], request_timeout_s=5, retry=NO_RETRY) as client:
        fut = await _pending_get(client, proxy)
        proxy.inject(garbage)
        with pytest.raises(RemoteProtocolError):
            await asyncio.wait_for(fut, 5)
        proxy.hold_replies = False
        cache = await client.get_or_create_cache("adversity")
        await cache.put("k", "after")  # reconnected through the proxy, in step again
        assert await cache.get("k") == "after"


async def test_oversized_frame_is_refused(proxy: Proxy) -> None:
    async with Client([proxy.address], request_timeout_s=5, max_frame=1 << 20, retry=NO_RETRY) as client:
        fut = await _pending_get(client, proxy)
        proxy.inject(struct.pack("<i", 50 << 20))
        with pytest.raises(RemoteProtocolError, match="frame length"):
            await asyncio.wait_for(fut, 5)


async def test_truncated_frame_then_close_is_a_connection_error(proxy: Proxy) -> None:
    async with Client([proxy.address], request_timeout_s=5, retry=NO_RETRY) as client:
        fut = await _pending_get(client, proxy)
        proxy.inject(struct.pack("<i", 100) + b"x" * 10)
        await asyncio.sleep(0.05)
        proxy.cut()
        with pytest.raises(IgniteConnectionError):
            await asyncio.wait_for(fut, 5)


async def test_silent_node_times_out_within_the_deadline(proxy: Proxy) -> None:
    async with Client([proxy.address], request_timeout_s=0.3) as client:
        cache = await client.get_or_create_cache("adversity")
        proxy.hold_replies = True
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(IgniteTimeout, match=r"within 0\.3 s"):
            await asyncio.wait_for(cache.get("k"), 5)
        # Through the real socket: the deadline, then at most one sweep period (50 ms; its exact
        # timing is tests/unit/test_ignite_connection.py's), and 50 ms for this loop to wake on a
        # busy machine. uvloop keeps time in whole milliseconds: 0.3 s can read as 0.29999.
        took = loop.time() - began
        assert 0.3 - 0.002 <= took < 0.3 + 0.05 + 0.05, f"failed after {took:.3f} s"


async def test_a_port_that_is_not_ignite_fails_the_handshake_clearly(settings: Settings) -> None:
    r = settings.redis
    with pytest.raises(IgniteError) as err:
        async with Client([(r.host, r.port)], connect_timeout_s=1):
            pass
    assert f"{r.host}:{r.port}" in str(err.value)


async def test_a_closed_port_fails_fast() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(IgniteConnectionError, match=r"127\.0\.0\.1:1\b"):
        async with Client([("127.0.0.1", 1)], connect_timeout_s=3):
            pass
    assert loop.time() - began < 2.0
