"""The Ignite connection pump's rules, on a virtual clock against a scripted node.

The same connection is tested against real nodes (tests/ignite/integration); here the
moments are exact: the default deadline swept every min(50 ms, timeout / 4), an own
timeout that fails exactly on time, heartbeats after one idle interval and never while
requests flow, an unanswered heartbeat closing the connection.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.ignite import IgniteConfig
from drivers.ignite.connection import Connection
from drivers.ignite.errors import IgniteConnectionError, IgniteTimeout, RemoteProtocolError, ServerError
from drivers.ignite.protocol.constants import CLIENT_FEATURES, OpCode
from drivers.ignite.protocol.framing import new_request
from drivers.kit import PumpStats, State
from tests.support.fakes import ClockLoop, Peer

ADDRESS = ("127.0.0.1", 10999)
NODE_ID = uuid.UUID(int=0x1234)
_FRAME = struct.Struct("<i")
_REQUEST = struct.Struct("<ihq")   # length, op code, request id


class Node(Peer):
    """Answers the handshake (1.7.0, the client's features) and op 2 (its idle timeout); records the rest."""

    idle_timeout_ms = 0
    answer_heartbeats = True

    def __init__(self) -> None:
        super().__init__()
        self.shaken = False
        self.requests: list[tuple[int, int]] = []     # (op code, request id), in the order received
        self.buffer = bytearray()

    def on_data(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 4 and len(self.buffer) >= 4 + _FRAME.unpack_from(self.buffer)[0]:
            size = _FRAME.unpack_from(self.buffer)[0]
            frame = bytes(self.buffer[: 4 + size])
            del self.buffer[: 4 + size]
            if not self.shaken:
                self.shaken = True
                body = (b"\x01" + bytes([12]) + struct.pack("<i", len(CLIENT_FEATURES)) + CLIENT_FEATURES
                        + bytes([10]) + struct.pack("<QQ", NODE_ID.int >> 64, NODE_ID.int & (2**64 - 1)))
                self.send(_FRAME.pack(len(body)) + body)
                continue
            _, op, rid = _REQUEST.unpack_from(frame)
            self.requests.append((op, rid))
            if op == OpCode.GET_IDLE_TIMEOUT:
                self.reply(rid, struct.pack("<q", self.idle_timeout_ms))
            elif op == OpCode.HEARTBEAT and self.answer_heartbeats:
                self.reply(rid)

    def reply(self, rid: int, payload: bytes = b"", *, flags: int = 0, status: int = 0, message: str = "") -> None:
        body = struct.pack("<qh", rid, flags)
        if flags & 2:
            body += struct.pack("<qi", 7, 1)               # a new affinity topology version
        if status:
            raw = message.encode()
            body = struct.pack("<qh", rid, flags | 1) + struct.pack("<i", status) + bytes([9]) \
                + struct.pack("<i", len(raw)) + raw
        self.send(_FRAME.pack(len(body) + len(payload)) + body + payload)

    def ops(self) -> list[int]:
        return [op for op, _ in self.requests]


@pytest.fixture
def loop() -> Iterator[ClockLoop]:
    loop = ClockLoop()
    loop.peers[ADDRESS] = Node
    yield loop
    loop.close()


def open_conn(loop: ClockLoop, **settings: Any) -> tuple[Connection, Node]:
    topology: list[tuple[int, int]] = []
    conn = loop.run(lambda: Connection.open(*ADDRESS, IgniteConfig(**settings), counters=PumpStats(),
                                            on_topology=topology.append))
    loop.settle()
    node = loop.connections[-1].peer
    assert isinstance(node, Node)
    conn.topology_seen = topology  # type: ignore[attr-defined]
    return conn, node


def request(loop: ClockLoop, conn: Connection, op: int = OpCode.CACHE_GET_NAMES,
            timeout_s: float | None = None) -> asyncio.Future[Any]:
    fut = loop.run(lambda: conn.send(new_request(op), timeout_s)[1])
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # failed ones are the tests' to look at
    return fut


def last_rid(node: Node) -> int:
    return node.requests[-1][1]


def test_the_handshake_makes_a_ready_connection_with_the_nodes_id_and_features(loop: ClockLoop) -> None:
    conn, node = open_conn(loop)
    assert conn.state is State.READY and conn.node_id == NODE_ID and conn.features == CLIENT_FEATURES
    assert node.ops() == [OpCode.GET_IDLE_TIMEOUT]      # asked right away, not waited for
    assert conn.idle_timeout_s == 0 and conn.heartbeat_every_s == 0   # the node has none: no heartbeats
    assert repr(conn) == f"<Connection ignite {ADDRESS[0]}:{ADDRESS[1]} ready protocol 1.7.0 in_flight=0>"


def test_replies_complete_the_request_with_their_id_in_any_order(loop: ClockLoop) -> None:
    conn, node = open_conn(loop)
    first, second = request(loop, conn), request(loop, conn)
    loop.settle()
    (_, rid1), (_, rid2) = node.requests[-2:]
    node.reply(rid2, b"\x02")
    node.reply(rid1, b"\x01")
    loop.settle()
    assert bytes(first.result().frame[-1:]) == b"\x01" and bytes(second.result().frame[-1:]) == b"\x02"


def test_requests_of_one_iteration_leave_in_one_write(loop: ClockLoop) -> None:
    conn, node = open_conn(loop)
    before = len(node.writes)
    loop.run(lambda: [conn.send(new_request(OpCode.CACHE_GET_NAMES)) for _ in range(5)])
    loop.settle()
    assert len(node.writes) == before + 1 and len(node.requests) == 1 + 5


def test_the_default_deadline_fails_within_one_sweep_period(loop: ClockLoop) -> None:
    conn, node = open_conn(loop, request_timeout_s=0.4)  # sweep period: 50 ms
    fut = request(loop, conn)
    loop.advance(0.399)
    assert not fut.done()
    loop.advance(0.052)
    assert isinstance(fut.exception(), IgniteTimeout)
    assert conn.counters.timeouts == 1 and conn.in_flight == 0   # it left the table at once
    node.reply(last_rid(node))
    loop.settle()
    assert conn.counters.late_replies == 1 and conn.state is State.READY


def failed_at(loop: ClockLoop, futures: dict[str, asyncio.Future[Any]]) -> dict[str, float]:
    """Run the clock on until every future is done: the moment each one was failed (virtual seconds)."""
    when: dict[str, float] = {}
    for name, fut in futures.items():
        fut.add_done_callback(lambda f, name=name: when.__setitem__(name, loop.time()))
    loop.advance(0.9)
    assert all(isinstance(f.exception(), IgniteTimeout) for f in futures.values())
    return when


def test_the_sweep_runs_every_50_ms_and_fails_each_request_at_the_first_sweep_after_its_deadline(
        loop: ClockLoop) -> None:
    conn, _ = open_conn(loop, request_timeout_s=0.41)    # period: min(50 ms, 0.41 / 4) = 50 ms
    t0 = loop.time()
    first = request(loop, conn)                           # starts the sweep: t0 + 50 ms, + 100 ms, ...
    loop.advance(0.035)
    before = request(loop, conn)                          # deadline t0 + 0.445: 5 ms before a sweep
    loop.advance(0.006)
    after = request(loop, conn)                           # deadline t0 + 0.451: 1 ms after one
    when = failed_at(loop, {"first": first, "before": before, "after": after})
    assert {name: round(at - t0, 6) for name, at in when.items()} == {"first": 0.45, "before": 0.45, "after": 0.5}


def test_a_short_default_timeout_sweeps_at_a_quarter_of_it(loop: ClockLoop) -> None:
    conn, _ = open_conn(loop, request_timeout_s=0.08)    # sweep period: 20 ms
    t0 = loop.time()
    first = request(loop, conn)                           # starts the sweep: t0 + 20 ms, + 40 ms, ...
    loop.advance(0.025)
    mid = request(loop, conn)                             # deadline t0 + 0.105: failed by the sweep at t0 + 0.12
    when = failed_at(loop, {"first": first, "mid": mid})
    assert 0.08 <= round(when["first"] - t0, 6) <= 0.1   # its deadline falls on a sweep (t0 + 4 x 20 ms)
    assert round(when["mid"] - t0, 6) == 0.12


def test_an_own_timeout_fails_exactly_on_time(loop: ClockLoop) -> None:
    conn, _ = open_conn(loop, request_timeout_s=10.0)
    fut = request(loop, conn, timeout_s=0.123)
    loop.advance(0.1229)
    assert not fut.done()
    loop.advance(0.0002)
    assert isinstance(fut.exception(), IgniteTimeout)


def test_a_cancelled_request_leaves_the_table_and_its_reply_is_dropped(loop: ClockLoop) -> None:
    conn, node = open_conn(loop)
    task = loop.run(lambda: asyncio.ensure_future(conn.request(new_request(OpCode.CACHE_GET_NAMES))))
    loop.settle()
    assert conn.in_flight == 1
    task.cancel()
    loop.settle()
    assert conn.in_flight == 0
    other = request(loop, conn)
    loop.settle()
    node.reply(node.requests[-2][1], b"\x05")   # the cancelled request's reply
    node.reply(last_rid(node), b"\x06")
    loop.settle()
    assert bytes(other.result().frame[-1:]) == b"\x06"
    assert conn.counters.late_replies == 1


def test_a_server_error_fails_that_request_only(loop: ClockLoop) -> None:
    conn, node = open_conn(loop)
    bad, good = request(loop, conn), request(loop, conn)
    loop.settle()
    node.reply(node.requests[-2][1], status=1000, message="Cache does not exist")
    node.reply(last_rid(node))
    loop.settle()
    assert isinstance(bad.exception(), ServerError) and bad.exception().status == 1000  # type: ignore[union-attr]
    assert good.result() is not None and conn.state is State.READY


def test_a_reply_flagged_topology_changed_is_reported(loop: ClockLoop) -> None:
    conn, node = open_conn(loop)
    fut = request(loop, conn)
    loop.settle()
    node.reply(last_rid(node), flags=2)
    loop.settle()
    assert fut.done() and conn.topology_seen == [(7, 1)]  # type: ignore[attr-defined]


def test_a_bad_frame_fails_everything_pending_with_the_protocol_error(loop: ClockLoop) -> None:
    conn, node = open_conn(loop)
    pending = [request(loop, conn) for _ in range(3)]
    node.send(_FRAME.pack(-5))
    loop.settle()
    assert conn.state is State.CLOSED
    assert all(isinstance(f.exception(), RemoteProtocolError) for f in pending)
    assert len({id(f.exception()) for f in pending}) == 3
    with pytest.raises(RemoteProtocolError):
        request(loop, conn)


def test_heartbeats_go_out_after_one_idle_interval(loop: ClockLoop) -> None:
    loop.peers[ADDRESS] = type("IdleNode", (Node,), {"idle_timeout_ms": 3000})
    conn, node = open_conn(loop)
    assert conn.idle_timeout_s == 3.0 and conn.heartbeat_every_s == pytest.approx(1.0)
    loop.advance(0.99)
    assert OpCode.HEARTBEAT not in node.ops()
    loop.advance(0.02)
    assert node.ops().count(OpCode.HEARTBEAT) == 1
    loop.advance(3.0)
    assert node.ops().count(OpCode.HEARTBEAT) == 4 and conn.heartbeats_sent == 4


def test_no_heartbeats_while_requests_keep_the_connection_busy(loop: ClockLoop) -> None:
    loop.peers[ADDRESS] = type("IdleNode", (Node,), {"idle_timeout_ms": 3000})
    conn, node = open_conn(loop)
    for _ in range(30):                          # 3 s with a request every 100 ms
        fut = request(loop, conn)
        loop.settle()
        node.reply(last_rid(node))
        loop.advance(0.1)
        assert fut.done()
    assert conn.heartbeats_sent == 0
    loop.advance(2.1)
    assert conn.heartbeats_sent >= 1


def test_an_unanswered_heartbeat_closes_the_connection(loop: ClockLoop) -> None:
    loop.peers[ADDRESS] = type("SilentNode", (Node,), {"answer_heartbeats": False})
    lost: list[BaseException | None] = []
    conn = loop.run(lambda: Connection.open(*ADDRESS, IgniteConfig(heartbeat_interval_s=0.2),
                                            on_lost=lambda c, why: lost.append(why)))
    loop.settle()                              # the idle-timeout answer arms the heartbeat timer
    pending = request(loop, conn)             # a request in flight when the connection dies
    loop.advance(0.2)                          # no request left since the last tick? this one did
    assert conn.state is State.READY
    loop.advance(0.2)                          # now idle: a heartbeat, with a deadline of max(0.2, 1 s)
    assert conn.heartbeats_sent == 1
    loop.advance(0.99)
    assert conn.state is State.READY
    loop.advance(0.06)
    assert conn.state is State.CLOSED
    assert isinstance(conn.life.reason, IgniteConnectionError) and "heartbeat" in str(conn.life.reason)
    assert isinstance(pending.exception(), IgniteConnectionError)
    assert len(lost) == 1


def test_counters_belong_to_the_owner_and_outlive_a_connection(loop: ClockLoop) -> None:
    counters = PumpStats()
    for _ in range(2):
        conn = loop.run(lambda: Connection.open(*ADDRESS, IgniteConfig(), counters=counters))
        loop.settle()
        request(loop, conn)
        loop.run(conn.aclose)
    assert (counters.connects, counters.reconnects, counters.requests) == (2, 1, 4)   # op 2 and one request each
