"""Heartbeats keep an idle connection alive past the node's idle timeout.

The stack's nodes have no idle timeout, so this module starts a node of its
own with ``--idle-timeout-ms 1500`` on free ports, with its own discovery list
(it never joins the stack's cluster), and stops it at the end.
"""

from __future__ import annotations

import asyncio
import select
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.settings import Settings
from drivers.ignite import Client, IgniteConfig
from drivers.ignite.connection import Connection
from drivers.ignite.errors import IgniteConnectionError
from drivers.ignite.protocol.constants import OpCode
from drivers.ignite.protocol.framing import new_request
from drivers.kit import State
from drivers.retry import Backoff
from stack.services import IgniteNode
from tests.support.proxy import Proxy

IDLE_TIMEOUT_MS = 1500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ScratchNode(IgniteNode):
    """The stack's node program, with its state in a scratch folder."""

    scratch: Path = Path()

    @property
    def dir(self) -> Path:
        return self.scratch


@pytest.fixture(scope="module")
def idle_node(stack: None) -> Iterator[tuple[str, int]]:
    """A one-node cluster of its own whose thin-client connector closes idle connections."""
    with tempfile.TemporaryDirectory(prefix="ignite-idle-") as scratch:
        node = _ScratchNode("ignite-idle", "127.0.0.1", _free_port(), startup_timeout_s=60.0)
        node.scratch = Path(scratch)
        node.install()
        java = node.prepare()
        discovery = _free_port()
        argv = [*java[:java.index("stack.IgniteNode") + 1], "--name", "ignite-idle",
                "--work-dir", str(node.dir / "work"), "--client-port", str(node.port),
                "--discovery-port", str(discovery), "--discovery-addresses", f"127.0.0.1:{discovery}",
                "--communication-port", str(_free_port()), "--idle-timeout-ms", str(IDLE_TIMEOUT_MS)]
        log = (node.dir / "node.log").open("wb")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        try:
            _wait_ready(proc, node, deadline=time.monotonic() + node.startup_timeout_s)
            yield (node.host, node.port)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _wait_ready(proc: subprocess.Popen[bytes], node: _ScratchNode, deadline: float) -> None:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else b""
        if line.startswith(b"IGNITE-NODE-READY"):
            return
        if not line and proc.poll() is not None:
            break
    tail = (node.dir / "node.log").read_text(errors="replace").splitlines()[-5:]
    pytest.fail(f"the idle-timeout node did not start (exit {proc.poll()}):\n" + "\n".join(tail))


@pytest.fixture
async def idle_client(idle_node: tuple[str, int]) -> AsyncIterator[Client]:
    async with Client([idle_node], connect_timeout_s=5.0) as c:
        yield c


def _node(client: Client) -> dict[str, object]:
    """The one node's state as the client reports it."""
    [node] = client.stats()["detail"]["nodes"]
    return node  # type: ignore[no-any-return]


async def _idle_timeout_known(conn: Connection) -> None:
    """The idle timeout is asked right after the handshake, without waiting for the answer."""
    async with asyncio.timeout(2):
        while conn.idle_timeout_s is None:
            await asyncio.sleep(0.01)


async def _wait_closed(conn: Connection, within: float) -> float:
    began = time.monotonic()
    while conn.state is not State.CLOSED and time.monotonic() - began < within:
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def test_a_connection_learns_the_nodes_idle_timeout_and_heartbeats_at_a_third_of_it(
        idle_node: tuple[str, int]) -> None:
    conn = await Connection.open(*idle_node, IgniteConfig(connect_timeout_s=5.0))
    try:
        await _idle_timeout_known(conn)
        assert conn.idle_timeout_s == IDLE_TIMEOUT_MS / 1000
        assert conn.heartbeat_every_s == pytest.approx(IDLE_TIMEOUT_MS / 3000)
    finally:
        await conn.aclose()


async def test_an_idle_client_outlives_the_idle_timeout_on_the_same_connection(idle_client: Client) -> None:
    cache = await idle_client.get_or_create_cache("heartbeat")
    await cache.put(1, "before")
    await asyncio.sleep(5.0)  # more than three idle timeouts with nothing but heartbeats
    node = _node(idle_client)
    assert node["state"] == "ready"
    assert node["reconnects"] == 0          # the same connection all along
    assert int(node["heartbeats_sent"]) >= 5  # type: ignore[call-overload]
    assert await cache.get(1) == "before"


async def test_without_heartbeats_the_node_closes_an_idle_connection(idle_node: tuple[str, int]) -> None:
    conn = await Connection.open(*idle_node, IgniteConfig(request_timeout_s=5.0, heartbeat_interval_s=0))
    try:
        waited = await _wait_closed(conn, within=6.0)
        assert conn.state is State.CLOSED, "the node should have closed a connection idle for 6 s"
        assert waited >= IDLE_TIMEOUT_MS / 1000 * 0.9
        assert conn.heartbeats_sent == 0
        with pytest.raises(IgniteConnectionError):
            await conn.request(new_request(OpCode.HEARTBEAT))
    finally:
        conn.abort()


async def test_client_heartbeat_interval_zero_lets_the_node_close_idle_connections(
        idle_node: tuple[str, int]) -> None:
    async with Client([idle_node], connect_timeout_s=5.0, heartbeat_interval_s=0,
                      reconnect=Backoff(0.05, 0.2)) as client:
        began = time.monotonic()
        while client.stats()["reconnects"] == 0 and time.monotonic() - began < 6.0:
            assert _node(client)["heartbeats_sent"] == 0
            await asyncio.sleep(0.05)
        waited = time.monotonic() - began
        assert client.stats()["reconnects"] >= 1, "the node should have closed a connection idle for 6 s"
        assert waited >= IDLE_TIMEOUT_MS / 1000 * 0.9
        cache = await client.get_or_create_cache("heartbeat_off")  # the router reconnected
        await cache.put(1, 1)


async def test_an_unanswered_heartbeat_closes_the_connection_with_a_connection_error(settings: Settings) -> None:
    async with Proxy(settings.ignite.nodes[0]) as proxy:
        conn = await Connection.open(*proxy.address, IgniteConfig(request_timeout_s=5.0, heartbeat_interval_s=0.2))
        try:
            await _idle_timeout_known(conn)
            assert conn.idle_timeout_s == 0  # the stack's node has none: the interval is ours
            proxy.hold_replies = True
            waited = await _wait_closed(conn, within=5.0)
            assert conn.state is State.CLOSED
            assert waited < 3.0  # one interval, then the heartbeat's own deadline (1 s)
            assert isinstance(conn.life.reason, IgniteConnectionError)
            assert "heartbeat" in str(conn.life.reason)
        finally:
            proxy.hold_replies = False
            conn.abort()


async def test_heartbeats_are_not_sent_while_requests_keep_the_connection_busy(settings: Settings) -> None:
    conn = await Connection.open(*settings.ignite.nodes[0],
                                 IgniteConfig(request_timeout_s=5.0, heartbeat_interval_s=0.2))
    try:
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            await conn.request(new_request(OpCode.CACHE_GET_NAMES))
            await asyncio.sleep(0.05)
        assert conn.heartbeats_sent == 0
        await asyncio.sleep(0.7)
        assert conn.heartbeats_sent >= 1
    finally:
        await conn.aclose()
