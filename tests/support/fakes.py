"""A loop whose clock moves only when a test says so, and fake transports to scripted peers.

For unit tests of the I/O pumps' timing rules (sweeps, deadlines, late replies,
heartbeats, cancellation) without sleeping over real sockets.  Integration
tests use the real servers; these only pin down what no real server makes
repeatable: exact moments.

``ClockLoop`` is a real asyncio loop (the standard selector loop) with one
change: ``time()`` returns a virtual clock that ``advance()`` moves, after which
every timer now due has run.  ``create_connection`` attaches the protocol to a
``FakeTransport`` wired to the ``Peer`` registered for that address.  Tests drive
it from plain (synchronous) test functions with ``run``/``advance``/``settle``;
nothing in it ever waits on real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Peer:
    """The other end of a fake connection: sees what the client writes, sends what the test says."""

    def __init__(self) -> None:
        self.transport: FakeTransport | None = None
        self.received = bytearray()
        self.writes: list[bytes] = []          # one entry per transport.write the client made

    def connected(self, transport: FakeTransport) -> None:
        self.transport = transport

    def on_data(self, data: bytes) -> None:
        """Called for every client write; answer by overriding (``send`` schedules the bytes)."""

    def send(self, data: bytes) -> None:
        """Deliver ``data`` to the client in the next loop iteration."""
        assert self.transport is not None
        self.transport.deliver(data)

    def hang_up(self) -> None:
        """The peer closes the connection (the client sees a clean EOF)."""
        assert self.transport is not None
        self.transport.lose(None)


class FakeTransport(asyncio.Transport):
    def __init__(self, loop: ClockLoop, protocol: asyncio.Protocol, peer: Peer) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.peer = peer
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            return
        chunk = bytes(data)
        self.peer.received += chunk
        self.peer.writes.append(chunk)
        self.peer.on_data(chunk)

    def deliver(self, data: bytes) -> None:
        self.loop.call_soon(self._deliver, data)

    def _deliver(self, data: bytes) -> None:
        if not self.closed:
            self.protocol.data_received(data)

    def lose(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, exc)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.lose(None)

    def abort(self) -> None:
        self.lose(None)


class ClockLoop(asyncio.SelectorEventLoop):
    """An asyncio loop with a virtual clock, and fake connections to registered peers."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.peers: dict[tuple[str, int], Callable[[], Peer]] = {}
        self.connections: list[FakeTransport] = []

    def time(self) -> float:
        return self.now

    def settle(self) -> None:
        """Run everything that is ready (and what that makes ready), without moving the clock."""
        for _ in range(10):
            self.run_until_complete(asyncio.sleep(0))

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``, stopping at each timer due on the way to run it then."""
        end = self.now + seconds
        self.settle()
        while True:
            # asyncio's own heap of timers (BaseEventLoop._scheduled): the one private name used here.
            due = [h.when() for h in self._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
            upcoming = min(due, default=None)
            if upcoming is None or upcoming > end:
                break
            self.now = max(self.now, upcoming)
            self.settle()
        self.now = end
        self.settle()

    def run(self, fn: Callable[[], Awaitable[T]] | Callable[[], T]) -> T:
        """Call ``fn`` inside the loop (constructors need a running loop); a coroutine it returns is awaited.

        A future it returns is not: it is handed back as it is, for the test to look at as time moves.
        """
        async def inside() -> T:
            result = fn()
            if asyncio.iscoroutine(result):
                return await result  # type: ignore[no-any-return]
            return result  # type: ignore[return-value]
        return self.run_until_complete(inside())

    async def create_connection(self, protocol_factory: Callable[[], asyncio.BaseProtocol],  # type: ignore[override]
                                host: str | None = None, port: int | None = None,
                                **kwargs: Any) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        make_peer = self.peers.get((host or "", port or 0))
        if make_peer is None:
            raise ConnectionRefusedError(111, "Connection refused")
        protocol = protocol_factory()
        peer = make_peer()
        transport = FakeTransport(self, protocol, peer)  # type: ignore[arg-type]
        peer.connected(transport)
        self.connections.append(transport)
        protocol.connection_made(transport)
        return transport, protocol
