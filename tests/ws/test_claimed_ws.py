"""WebSocket claims of docs/websocket.md not proven elsewhere, on real servers and the real Redis.

- liveness: the server pings every ``ws.ping_interval_s`` and closes a connection that sends no pong
  within ``ws.ping_timeout_s``; one that answers stays open;
- ``too_many_channels`` past ``ws.max_channels``, and the connection keeps working;
- ``unavailable`` while Redis cannot be reached (a proxy in front of the real Redis refuses), and a
  subscribe succeeds again once it can;
- the ``ws_client_errors_total`` and ``ws_fanout_seconds_total`` counters move;
- a message Redis delivers again (an id already delivered) is dropped and counted in
  ``ws_duplicates_dropped_total``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aredis

from app.settings import Settings
from tests.conftest import ServerProcess, start_server
from tests.service.http import call
from tests.service.test_faults import serve, stop
from tests.support.proxy import Proxy
from tests.ws.conftest import WS_ENV, Client, channel_name, publish_async

PING_INTERVAL_S, PING_TIMEOUT_S = 0.3, 0.2   # (Tornado cuts a timeout longer than the interval to it)


@pytest.fixture(scope="module")
def lively(stack: None) -> Iterator[ServerProcess]:
    """A push server with quick pings and at most 2 channels per connection."""
    srv = start_server(env={**WS_ENV, "ASYNCSTACK_WS__PING_INTERVAL_S": str(PING_INTERVAL_S),
                            "ASYNCSTACK_WS__PING_TIMEOUT_S": str(PING_TIMEOUT_S),
                            "ASYNCSTACK_WS__MAX_CHANNELS": "2"})
    yield srv
    srv.stop()


async def silent_peer(srv: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that completes the handshake and then never reads: it cannot answer a ping."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


PING, CLOSE = 0x9, 0x8


async def frames_until_close(reader: asyncio.StreamReader) -> list[int]:
    """The opcodes of the server's frames (unmasked, short) up to its close frame."""
    opcodes: list[int] = []
    async with asyncio.timeout(5):
        while not opcodes or opcodes[-1] != CLOSE:
            head = await reader.readexactly(2)
            length = head[1] & 0x7F
            assert length < 126, head
            await reader.readexactly(length)
            opcodes.append(head[0] & 0x0F)
    return opcodes


async def test_a_connection_that_answers_no_ping_is_closed_and_one_that_does_stays(lively: ServerProcess) -> None:
    answering = await Client.open(lively)            # the websockets library answers pings by itself
    reader, writer = await silent_peer(lively)
    try:
        began = time.monotonic()
        opcodes = await frames_until_close(reader)
        took = time.monotonic() - began
        assert opcodes[0] == PING and opcodes[-1] == CLOSE, opcodes
        assert took < PING_INTERVAL_S + PING_TIMEOUT_S + 1.0, took   # never, without the timeout
        await asyncio.sleep(PING_INTERVAL_S + PING_TIMEOUT_S)
        assert (await answering.subscribe(channel_name("alive")))["type"] == "subscribed"
    finally:
        writer.close()
        await answering.close()


async def test_too_many_channels_is_an_error_frame_and_the_connection_keeps_working(lively: ServerProcess) -> None:
    client = await Client.open(lively)
    try:
        first, second, third = (channel_name("many") for _ in range(3))
        await client.subscribe(first)
        await client.subscribe(second)
        await client.send({"op": "subscribe", "channel": third})
        error = await client.recv()
        assert (error["type"], error["code"], error["channel"]) == ("error", "too_many_channels", third)
        await client.send({"op": "unsubscribe", "channel": first})
        assert (await client.recv())["type"] == "unsubscribed"
        await client.subscribe(third)                  # room again
        await publish_async(lively, third, {"n": 1})
        [message] = await client.messages(1)
        assert message["data"] == {"n": 1}
    finally:
        await client.close()


async def test_ws_client_errors_and_fanout_seconds_counters_move(lively: ServerProcess) -> None:
    def counters() -> dict[str, float]:
        _, _, text = call(lively.url + "/metrics")
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                if line.startswith(("ws_client_errors_total", "ws_fanout_seconds_total"))}

    await asyncio.sleep(0.6)      # what earlier tests on this server did is copied into the counters first
    before = await asyncio.to_thread(counters)
    client = await Client.open(lively)
    try:
        channel = channel_name("counted")
        await client.subscribe(channel)
        for bad in ("not json", {"op": "dance", "channel": channel}):
            await client.send(bad)
            assert (await client.recv())["type"] == "error"
        for n in range(20):
            await publish_async(lively, channel, n)
        await client.messages(20)
        await asyncio.sleep(0.6)                       # the sampler copies the hub's counters every 0.25 s
        after = await asyncio.to_thread(counters)
    finally:
        await client.close()
    assert after["ws_client_errors_total"] - before["ws_client_errors_total"] == 2
    assert after["ws_fanout_seconds_total"] > before["ws_fanout_seconds_total"]


@pytest.fixture
async def redis_behind_proxy(settings: Settings) -> AsyncIterator[tuple[Proxy, ServerProcess]]:
    async with Proxy((settings.redis.host, settings.redis.port)) as proxy:
        srv = await serve({**WS_ENV, "ASYNCSTACK_REDIS__PORT": str(proxy.port)})
        try:
            yield proxy, srv
        finally:
            await stop(srv)


async def test_subscribing_while_redis_cannot_be_reached_is_unavailable_then_works_again(
        redis_behind_proxy: tuple[Proxy, ServerProcess]) -> None:
    proxy, srv = redis_behind_proxy
    client = await Client.open(srv)
    try:
        await client.subscribe(channel_name("before"))
        proxy.refused()
        await asyncio.sleep(0.2)                       # the subscription has seen its connection go
        channel = channel_name("during")
        await client.send({"op": "subscribe", "channel": channel})
        error = await client.recv()
        assert (error["type"], error["code"], error["channel"]) == ("error", "unavailable", channel), error
        proxy.normal()
        deadline = time.monotonic() + 10
        while True:                                    # "try again": it reconnects in the background
            await client.send({"op": "subscribe", "channel": channel})
            reply = await client.recv()
            if reply["type"] == "subscribed" or time.monotonic() > deadline:
                break
            assert reply["code"] == "unavailable", reply
            await asyncio.sleep(0.2)
        assert reply["type"] == "subscribed", reply
    finally:
        await client.close()


async def test_a_message_redis_delivers_again_is_dropped_and_counted(lively: ServerProcess, settings: Settings) -> None:
    """A message whose id was already delivered (as a reconnect's catch-up can bring it) is not sent twice."""
    def duplicates() -> float:
        _, _, text = call(lively.url + "/metrics")
        return sum(float(line.split(" ")[1]) for line in text.splitlines()
                   if line.startswith("ws_duplicates_dropped_total "))

    await asyncio.sleep(0.6)      # what earlier tests on this server did is copied into the counters first
    before = await asyncio.to_thread(duplicates)
    channel = channel_name("twice")
    client = await Client.open(lively)
    plain = aredis.Redis(host=settings.redis.host, port=settings.redis.port)
    try:
        await client.subscribe(channel)
        first = await publish_async(lively, channel, {"n": 1})
        [message] = await client.messages(1)
        assert message["id"] == first
        await plain.publish(f"ws:{channel}", f'{first} {{"n": 1}}')   # the same id again, straight from Redis
        second = await publish_async(lively, channel, {"n": 2})
        [after] = await client.messages(1)
        assert after["id"] == second                                 # the repeat never reached the client
        await asyncio.sleep(0.6)                                     # the sampler runs every 0.25 s
        assert await asyncio.to_thread(duplicates) - before == 1
    finally:
        await plain.aclose()
        await client.close()
