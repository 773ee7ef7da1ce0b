"""The pipelined Redis pump's timing and matching rules, on a virtual clock against a scripted peer.

The same rules are also tested against the real Redis (tests/integration/test_redis_pipe.py);
here each moment is exact: a sweep every min(50 ms, timeout / 4), a deadline that fails
within one sweep period, a connection closed after 2 x the timeout without a reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, ProtocolError
from drivers.kit import PumpStats, State
from drivers.redis import RedisConfig
from drivers.redis.pipe import PipeConnection, PipelinedRedis
from drivers.redis.resp import encode_command
from tests.support.fakes import ClockLoop, Peer

ADDRESS = ("127.0.0.1", 16000)


@pytest.fixture
def loop() -> Iterator[ClockLoop]:
    loop = ClockLoop()
    loop.peers[ADDRESS] = Peer
    yield loop
    loop.close()


def connected(loop: ClockLoop, timeout_s: float = 1.0) -> tuple[PipeConnection, Peer]:
    """A PipeConnection attached to a fresh peer (its state READY)."""
    async def make() -> tuple[PipeConnection, Peer]:
        conn = PipeConnection("fake", timeout_s, counters=PumpStats())
        transport, _ = await loop.create_connection(lambda: conn, *ADDRESS)
        return conn, transport.peer  # type: ignore[attr-defined]
    return loop.run(make)


def send(loop: ClockLoop, conn: PipeConnection, *args: str) -> asyncio.Future[Any]:
    return loop.run(lambda: conn.send(encode_command(args)))


def test_commands_of_one_iteration_leave_in_one_write_and_replies_match_in_order(loop: ClockLoop) -> None:
    conn, peer = connected(loop)

    async def three() -> list[asyncio.Future[Any]]:
        return [conn.send(encode_command(["GET", k])) for k in ("a", "b", "c")]

    futures = loop.run(three)
    loop.settle()
    assert peer.writes == [b"".join(encode_command(["GET", k]) for k in ("a", "b", "c"))]
    peer.send(b"$1\r\nA\r\n$-1\r\n$1\r\nC\r\n")
    loop.settle()
    assert [f.result() for f in futures] == [b"A", None, b"C"]
    assert conn.in_flight == 0 and conn.counters.requests == 3


def test_a_cancelled_command_keeps_its_place_and_its_reply_is_dropped(loop: ClockLoop) -> None:
    conn, peer = connected(loop)
    first, second, third = (send(loop, conn, "ECHO", t) for t in ("1", "2", "3"))
    second.cancel()
    peer.send(b"$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n")
    loop.settle()
    assert (first.result(), third.result()) == (b"1", b"3")   # never "2": that reply was the cancelled one's
    assert conn.counters.late_replies == 1


def test_the_sweep_fails_a_command_within_one_period_after_its_deadline(loop: ClockLoop) -> None:
    conn, peer = connected(loop, timeout_s=0.4)          # sweep period: min(50 ms, 0.4 / 4) = 50 ms
    fut = send(loop, conn, "GET", "slow")
    loop.advance(0.399)
    assert not fut.done()
    loop.advance(0.052)                                   # the deadline, then at most one period (+ float slack)
    assert isinstance(fut.exception(), BackendTimeout)
    assert "no reply within 0.4 s" in str(fut.exception())
    assert conn.counters.timeouts == 1
    peer.send(b"$4\r\nlate\r\n")                          # the late reply pops the timed-out command's place
    loop.settle()
    assert conn.counters.late_replies == 1
    fresh = send(loop, conn, "GET", "next")
    peer.send(b"$4\r\nnext\r\n")
    loop.settle()
    assert fresh.result() == b"next" and conn.state is State.READY


def failed_at(loop: ClockLoop, futures: dict[str, asyncio.Future[Any]]) -> dict[str, float]:
    """Run the clock on until every future is done: the moment each one was failed (virtual seconds)."""
    when: dict[str, float] = {}
    for name, fut in futures.items():
        fut.add_done_callback(lambda f, name=name: when.__setitem__(name, loop.time()))
    loop.advance(0.9)
    assert all(isinstance(f.exception(), BackendTimeout) for f in futures.values())
    return when


def test_the_sweep_runs_every_50_ms_and_fails_each_command_at_the_first_sweep_after_its_deadline(
        loop: ClockLoop) -> None:
    conn, _ = connected(loop, timeout_s=0.41)            # period: min(50 ms, 0.41 / 4) = 50 ms
    t0 = loop.time()
    first = send(loop, conn, "GET", "a")                  # starts the sweep: t0 + 50 ms, + 100 ms, ...
    loop.advance(0.035)
    before = send(loop, conn, "GET", "b")                 # deadline t0 + 0.445: 5 ms before a sweep
    loop.advance(0.006)
    after = send(loop, conn, "GET", "c")                  # deadline t0 + 0.451: 1 ms after one
    when = failed_at(loop, {"first": first, "before": before, "after": after})
    assert {name: round(at - t0, 6) for name, at in when.items()} == {"first": 0.45, "before": 0.45, "after": 0.5}


def test_a_short_timeout_sweeps_at_a_quarter_of_it(loop: ClockLoop) -> None:
    conn, _ = connected(loop, timeout_s=0.08)            # sweep period: 20 ms
    t0 = loop.time()
    first = send(loop, conn, "GET", "x")                  # starts the sweep: t0 + 20 ms, + 40 ms, ...
    loop.advance(0.025)
    mid = send(loop, conn, "GET", "y")                    # deadline t0 + 0.105: failed by the sweep at t0 + 0.12
    when = failed_at(loop, {"first": first, "mid": mid})
    assert 0.08 <= round(when["first"] - t0, 6) <= 0.1   # its deadline falls on a sweep (t0 + 4 x 20 ms)
    assert round(when["mid"] - t0, 6) == 0.12


def test_a_connection_without_a_single_reply_for_twice_the_timeout_and_a_second_is_closed(loop: ClockLoop) -> None:
    conn, peer = connected(loop, timeout_s=0.6)          # stuck after max(2 x 0.6, 1.0) = 1.2 s
    stuck = send(loop, conn, "GET", "x")
    loop.advance(0.65)
    assert isinstance(stuck.exception(), BackendTimeout) and conn.state is State.READY
    later = send(loop, conn, "GET", "y")
    loop.advance(0.5)                                     # 1.15 s without a reply: slow, not gone
    assert conn.state is State.READY
    loop.advance(0.1)                                     # 1.25 s
    assert conn.state is State.CLOSED
    assert isinstance(later.exception(), BackendUnavailable)
    assert "no reply at all" in str(later.exception())
    assert peer.transport is not None and peer.transport.closed


def test_replies_keep_a_slow_connection_alive(loop: ClockLoop) -> None:
    conn, peer = connected(loop, timeout_s=0.2)
    for i in range(10):                                  # 1 s of traffic, every command answered late
        fut = send(loop, conn, "GET", str(i))
        loop.advance(0.1)
        peer.send(b"$1\r\nx\r\n")
        loop.settle()
        assert fut.result() == b"x"
    assert conn.state is State.READY


def test_a_reply_with_nothing_pending_is_a_protocol_error_that_fails_everything(loop: ClockLoop) -> None:
    conn, peer = connected(loop)
    fut = send(loop, conn, "GET", "x")
    peer.send(b"$1\r\nx\r\n$1\r\ny\r\n")
    loop.settle()
    assert fut.result() == b"x"
    assert conn.state is State.CLOSED
    assert isinstance(conn.life.reason, ProtocolError)
    with pytest.raises(BackendUnavailable, match="no command pending"):
        send(loop, conn, "GET", "z")


def test_garbage_fails_every_pending_command_with_the_reason(loop: ClockLoop) -> None:
    conn, peer = connected(loop)
    pending = [send(loop, conn, "GET", str(i)) for i in range(3)]
    peer.send(b"!garbage\r\n")
    loop.settle()
    assert conn.state is State.CLOSED and isinstance(conn.life.reason, ProtocolError)
    for fut in pending:
        assert isinstance(fut.exception(), BackendUnavailable)
        assert "protocol error" in str(fut.exception())
    assert len({id(f.exception()) for f in pending}) == 3   # one exception each, never shared


def test_an_error_reply_fails_that_command_only(loop: ClockLoop) -> None:
    conn, peer = connected(loop)
    a, b, c = (send(loop, conn, "INCR", k) for k in "abc")
    peer.send(b":1\r\n-ERR value is not an integer\r\n:3\r\n")
    loop.settle()
    assert (a.result(), c.result()) == (1, 3)
    assert isinstance(b.exception(), BackendError) and "not an integer" in str(b.exception())
    assert conn.state is State.READY


def test_a_lost_connection_fails_what_is_pending_and_nothing_is_written_after(loop: ClockLoop) -> None:
    conn, peer = connected(loop)
    fut = send(loop, conn, "GET", "x")
    peer.hang_up()
    loop.settle()
    assert isinstance(fut.exception(), BackendUnavailable) and "connection lost" in str(fut.exception())
    with pytest.raises(BackendUnavailable):
        send(loop, conn, "GET", "y")
    assert "in_flight=0" in repr(conn) and "closed" in repr(conn)


def test_counters_survive_a_reconnect(loop: ClockLoop) -> None:
    class Echo(Peer):
        def on_data(self, data: bytes) -> None:
            self.send(b"+PONG\r\n" * data.count(b"PING"))

    loop.peers[ADDRESS] = Echo
    pipe = loop.run(lambda: PipelinedRedis(RedisConfig(host=ADDRESS[0], port=ADDRESS[1], socket_timeout_s=1.0)))
    assert loop.run(lambda: pipe.execute("PING")) == b"PONG"
    loop.connections[-1].peer.hang_up()
    loop.settle()
    assert not pipe.connected
    assert loop.run(lambda: pipe.execute("PING")) == b"PONG"
    assert (pipe.counters.connects, pipe.counters.reconnects, pipe.counters.requests) == (2, 1, 2)
    loop.run(pipe.aclose)


def test_a_short_timeout_does_not_make_a_slow_peer_count_as_gone(loop: ClockLoop) -> None:
    conn, peer = connected(loop, timeout_s=0.05)         # 2x the timeout is 0.1 s; the floor is 1 s
    first = send(loop, conn, "GET", "x")
    loop.advance(0.5)                                     # a pause on the peer's side
    assert isinstance(first.exception(), BackendTimeout) and conn.state is State.READY
    peer.send(b"$1\r\nx\r\n")                             # its late reply is dropped, the connection kept
    loop.settle()
    assert conn.state is State.READY and conn.counters.late_replies == 1
