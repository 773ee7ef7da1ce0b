"""The pipelined Redis connection against the real Redis: replies in step, cancellation, timeouts, loss.

Delays come from a TCP proxy in front of Redis that holds its replies back
(``tests.support.proxy``); everything else is the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from typing import Any

import pytest

from app.settings import Settings
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError, InterfaceError
from drivers.redis import PipelinedRedis, RedisClient, RedisConfig
from drivers.redis.resp import encode_command
from tests.conftest import run_stack_async
from tests.support.proxy import Proxy


@pytest.mark.parametrize(("args", "wire"), [
    (["PING"], b"*1\r\n$4\r\nPING\r\n"),
    (["GET", "k"], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
    (["SET", "k", b"\x00\r\n", "EX", 60], b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\x00\r\n\r\n$2\r\nEX\r\n$2\r\n60\r\n"),
    (["SET", "ключ", ""], b"*3\r\n$3\r\nSET\r\n$8\r\n\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\r\n$0\r\n\r\n"),
])
def test_commands_are_encoded_as_arrays_of_bulk_strings(args: list[str | bytes | int], wire: bytes) -> None:
    assert encode_command(args) == wire


@pytest.mark.parametrize(("arg", "why"), [
    ("a\ud800b", r"valid Unicode text \(surrogates not allowed at position 1: '\\ud800'\)"),
    (None, "must be str, bytes or int, not NoneType"),
    (1.5, "must be str, bytes or int, not float"),
    ([1, 2], "must be str, bytes or int, not list"),
])
def test_an_argument_redis_cannot_be_sent_is_an_interface_error_naming_it(arg: Any, why: str) -> None:
    with pytest.raises(InterfaceError, match=why) as refused:
        encode_command(["SET", "k", arg])
    assert refused.value.backend == "redis"


async def test_a_refused_argument_sends_nothing_and_the_connection_goes_on(settings: Settings) -> None:
    async with RedisClient(settings.redis) as client:
        key = f"pipe-test:{token()}"
        with pytest.raises(InterfaceError, match="surrogates not allowed"):
            await client.get("k\udc80")
        with pytest.raises(InterfaceError, match="surrogates not allowed"):
            await client.set(key, "v\udc80", ex=60)
        assert await client.get(key) is None
        await client.set(key, "v", ex=60)
        assert await client.get(key) == b"v"


@pytest.fixture
async def redis_address(settings: Settings) -> tuple[str, int]:
    return settings.redis.host, settings.redis.port


def at(address: tuple[str, int], **settings: Any) -> RedisConfig:
    """The Redis settings for a connection to ``address`` (the real server, or a proxy in front of it)."""
    return RedisConfig(host=address[0], port=address[1], **settings)


def token() -> str:
    return uuid.uuid4().hex


async def test_many_concurrent_commands_each_get_their_own_reply(redis_address: tuple[str, int]) -> None:
    pipe = PipelinedRedis(at(redis_address))
    try:
        tokens = [token() for _ in range(1000)]
        replies = await asyncio.gather(*(pipe.execute("ECHO", t) for t in tokens))
        assert replies == [t.encode() for t in tokens]
        assert pipe.in_flight == 0
    finally:
        await pipe.aclose()


async def test_random_cancellations_never_hand_a_reply_to_another_caller(redis_address: tuple[str, int]) -> None:
    pipe = PipelinedRedis(at(redis_address))
    rng = random.Random(404)
    try:
        for _ in range(5):
            tokens = [token() for _ in range(300)]
            tasks = [asyncio.ensure_future(pipe.execute("ECHO", t)) for t in tokens]
            for _ in range(rng.randrange(1, 4)):
                await asyncio.sleep(0)  # some sent, some answered, some neither
            for task in rng.sample(tasks, 100):
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            for t, result in zip(tokens, done, strict=True):
                assert isinstance(result, asyncio.CancelledError) or result == t.encode()
        fresh = token()
        assert await pipe.execute("ECHO", fresh) == fresh.encode()
    finally:
        await pipe.aclose()


async def test_commands_cancelled_in_flight_have_their_replies_dropped(redis_address: tuple[str, int]) -> None:
    async with Proxy(redis_address) as proxy:
        pipe = PipelinedRedis(at(proxy.address))
        try:
            await pipe.execute("PING")
            proxy.hold_replies = True
            tokens = [token() for _ in range(300)]
            tasks = [asyncio.ensure_future(pipe.execute("ECHO", t)) for t in tokens]
            await asyncio.sleep(0.1)  # all written, none answered
            cancelled = set(random.Random(28858).sample(range(300), 150))
            for i in cancelled:
                tasks[i].cancel()
            proxy.hold_replies = False
            done = await asyncio.gather(*tasks, return_exceptions=True)
            for i, (t, result) in enumerate(zip(tokens, done, strict=True)):
                if i in cancelled:
                    assert isinstance(result, asyncio.CancelledError)
                else:
                    assert result == t.encode()
            fresh = token()
            assert await pipe.execute("ECHO", fresh) == fresh.encode()
            assert pipe.counters.late_replies == 150
        finally:
            await pipe.aclose()


async def test_a_command_past_its_deadline_fails_and_later_commands_stay_in_step(
        redis_address: tuple[str, int]) -> None:
    async with Proxy(redis_address) as proxy:
        pipe = PipelinedRedis(at(proxy.address, socket_timeout_s=0.3))
        try:
            await pipe.execute("PING")
            proxy.hold_replies = True
            loop = asyncio.get_running_loop()
            began = loop.time()
            with pytest.raises(BackendTimeout, match=r"no reply within 0\.3 s"):
                await pipe.execute("ECHO", "late")
            # Through the real socket: the deadline, then at most one sweep period (50 ms; its exact
            # timing is tests/unit/test_redis_pipe.py's), and 50 ms for this loop to wake on a busy
            # machine. uvloop keeps time in whole milliseconds: 0.3 s can read as 0.29999.
            took = loop.time() - began
            assert 0.3 - 0.002 <= took < 0.3 + 0.05 + 0.05, f"failed after {took:.3f} s"
            proxy.hold_replies = False
            tokens = [token() for _ in range(50)]
            assert await asyncio.gather(*(pipe.execute("ECHO", t) for t in tokens)) == [t.encode() for t in tokens]
            c = pipe.counters
            assert (c.late_replies, c.timeouts, c.reconnects) == (1, 1, 0)
        finally:
            await pipe.aclose()


async def test_a_caller_waiting_for_a_connection_that_is_closed_meanwhile_gets_a_typed_error(
        redis_address: tuple[str, int]) -> None:
    """The cluster client closes the link of a node that left the table while requests wait for it
    to connect; they get BackendUnavailable (which it retries elsewhere), not a CancelledError."""
    async with Proxy(redis_address) as proxy:
        proxy.hold_replies = True                   # the connection's SELECT waits: still connecting
        pipe = PipelinedRedis(at(proxy.address, db=1, connect_timeout_s=5))
        waiting = asyncio.ensure_future(pipe.execute("PING"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await pipe.aclose()
        with pytest.raises(BackendUnavailable, match="closed while connecting"):
            await asyncio.wait_for(waiting, 2)


async def test_a_connection_that_stops_answering_is_closed_and_replaced(redis_address: tuple[str, int]) -> None:
    async with Proxy(redis_address) as proxy:
        pipe = PipelinedRedis(at(proxy.address, socket_timeout_s=0.6))
        try:
            await pipe.execute("PING")
            proxy.hold_replies = True
            with pytest.raises(BackendTimeout):
                await pipe.execute("ECHO", "stuck")        # fails at 0.6 s; the connection is kept ...
            assert pipe.connected is True
            await asyncio.sleep(0.8)  # ... until 1.2 s (twice the timeout, at least 1 s) pass without a reply
            assert pipe.connected is False
            proxy.hold_replies = False
            assert await pipe.execute("ECHO", "again") == b"again"
            assert pipe.counters.reconnects == 1
        finally:
            await pipe.aclose()


async def test_a_redis_error_reply_is_a_backend_error_for_that_command_only(settings: Settings) -> None:
    async with RedisClient(settings.redis) as client:
        key = f"pipe-test:{token()}"
        await client.set(key, "not a number", ex=60)
        results = await asyncio.gather(client.get(key), client.incr(key), client.get(key), return_exceptions=True)
        assert results[0] == results[2] == b"not a number"
        assert isinstance(results[1], BackendError)
        assert "ERR value is not an integer" in str(results[1])


async def test_a_lost_connection_fails_everything_pending_at_once(redis_address: tuple[str, int]) -> None:
    async with Proxy(redis_address) as proxy:
        pipe = PipelinedRedis(at(proxy.address))
        try:
            await pipe.execute("PING")
            proxy.hold_replies = True
            tasks = [asyncio.ensure_future(pipe.execute("ECHO", token())) for _ in range(100)]
            await asyncio.sleep(0.1)
            proxy.cut()
            done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 1)
            assert all(isinstance(result, BackendUnavailable) for result in done)
            proxy.hold_replies = False
            assert await pipe.execute("ECHO", "back") == b"back"
        finally:
            await pipe.aclose()


async def test_concurrent_callers_share_one_reconnect_attempt(redis_address: tuple[str, int]) -> None:
    async with Proxy(redis_address) as proxy:
        pipe = PipelinedRedis(at(proxy.address))
        try:
            await pipe.execute("PING")
            proxy.cut()
            while pipe.connected:
                await asyncio.sleep(0.005)
            assert await asyncio.gather(*(pipe.execute("PING") for _ in range(50))) == [b"PONG"] * 50
            assert (pipe.counters.connects, pipe.counters.reconnects) == (2, 1)
        finally:
            await pipe.aclose()


async def test_redis_stopped_for_real_fails_pending_commands_and_the_client_recovers(
        redis_address: tuple[str, int]) -> None:
    pipe = PipelinedRedis(at(redis_address, connect_timeout_s=1))
    errors: list[DriverError] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            try:
                await pipe.execute("ECHO", "x")
            except DriverError as exc:
                errors.append(exc)
                await asyncio.sleep(0.02)

    readers = [asyncio.ensure_future(reader()) for _ in range(16)]
    try:
        await asyncio.sleep(0.2)
        stopped = await run_stack_async("down", "redis")
        assert stopped.returncode == 0, stopped.stderr
        await asyncio.sleep(0.3)
    finally:
        restarted = await run_stack_async("up", "redis")
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*readers)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    try:
        assert errors, "no command failed while Redis was down"
        assert {type(e) for e in errors} == {BackendUnavailable}
        assert any("connection lost" in str(e) for e in errors)
        fresh = token()
        assert await pipe.execute("ECHO", fresh) == fresh.encode()
        assert pipe.counters.reconnects >= 1
    finally:
        await pipe.aclose()
