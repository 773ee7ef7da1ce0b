"""A TCP proxy in front of a real server, for the faults no real server makes on its own.

    async with Proxy(("127.0.0.1", 13306)) as proxy:   # clients connect to proxy.address
        proxy.latency(2.0)      # ... then proxy.blackhole(), proxy.reset(), proxy.refused(), proxy.half_open()
        proxy.normal()

Rules of this module:
- Each accepted connection is a link: the client's socket and a connection of the
  proxy's own to the target.  Each direction is a reader task and a writer task
  joined by a queue: a chunk is stamped when it is read and written once its delay
  has passed, so chunks never change order.  Everything else the client sees comes
  from the real server.
- The mode is switched by the test at run time, synchronously; a switch applies at
  once to the links already open and to the connections accepted after it:
    normal()     bytes flow both ways (the initial mode)
    latency(s)   every chunk read from now on is written s seconds later, both ways
    blackhole()  links read everything and forward nothing, both ways; a new connection is
                 accepted and does the same (the target is never connected)
    reset()      links are reset (RST: SO_LINGER 0, then close); a new connection is reset
                 as soon as it is accepted
    refused()    the listening socket is closed: connects fail with ECONNREFUSED.  Links are
                 reset too, as a stopped server's would be
    half_open()  links go silent: nothing is read or written any more and the proxy never
                 closes them, not even when the client closes (a peer that vanished without
                 a FIN); a new connection is like blackhole's
  Any mode but refused() listens again, on the same port.  normal() revives a
  blackholed link that dropped nothing.  One that dropped bytes (its stream now has a
  hole) keeps swallowing until its client closes it, and a silent one stays open until
  the proxy is left: like connections to a peer lost for good, the client must give them up.
- Older tests' controls still work in every mode: ``hold_replies`` holds the
  server's bytes back (in order) while True, ``inject()`` writes raw bytes to every
  client, ``cut()`` drops every link at once.
- Leaving the ``async with`` closes every socket and ends every task it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from collections.abc import Coroutine
from typing import Any

_CHUNK = 65536
_CONNECT_TIMEOUT_S = 5.0


class _State(enum.Enum):
    FLOWING = "flowing"
    SWALLOWING = "swallowing"   # reads both ways, drops everything
    SILENT = "silent"           # reads nothing, writes nothing, never closes
    CLOSED = "closed"


class _Link:
    """One client connection and the proxy's own connection to the target."""

    def __init__(self, client: asyncio.StreamWriter, state: _State) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.state = state
        self.holed = state is not _State.FLOWING   # has dropped bytes (or never reached the target)

    def writers(self) -> list[asyncio.StreamWriter]:
        return [self.client] if self.upstream is None else [self.client, self.upstream]

    def swallow(self) -> None:
        if self.state is _State.FLOWING:
            self.state = _State.SWALLOWING

    def silence(self) -> None:
        if self.state in (_State.FLOWING, _State.SWALLOWING):
            self.state = _State.SILENT
            self.holed = True
            for w in self.writers():
                w.transport.pause_reading()

    def revive(self) -> None:
        if self.state is _State.SWALLOWING and not self.holed:
            self.state = _State.FLOWING

    def close(self, *, rst: bool = False) -> None:
        """Close both sockets at once (``abort``), the client's with an RST if ``rst``."""
        self.state = _State.CLOSED
        if rst:
            _rst(self.client.transport.get_extra_info("socket"))
        for w in self.writers():
            w.transport.abort()


def _rst(sock: socket.socket) -> None:
    """Make closing ``sock`` send an RST, not a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Proxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.mode = "normal"
        self._latency_s = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._listener: socket.socket | None = None
        self._links: list[_Link] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._never = asyncio.get_running_loop().create_future()   # what a silent link waits for

    async def __aenter__(self) -> Proxy:
        self._listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._never.cancel()
        self._close_listener()
        for link in self._links:
            link.close()
        self._links.clear()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    # -- modes ---------------------------------------------------------------------------------

    def normal(self) -> None:
        """Forward everything, with no added delay."""
        self._switch("normal", 0.0)
        for link in self._links:
            link.revive()

    def latency(self, seconds: float) -> None:
        """Write every chunk read from now on ``seconds`` after it was read, both ways, in order."""
        self._switch("latency", seconds)
        for link in self._links:
            link.revive()

    def blackhole(self) -> None:
        """Read everything, forward nothing; new connections are accepted and swallowed."""
        self._switch("blackhole")
        for link in self._links:
            link.swallow()

    def reset(self) -> None:
        """Reset every link; new connections are reset as soon as they are accepted."""
        self._switch("reset")
        self._reset_links()

    def refused(self) -> None:
        """Stop listening (connects are refused) and reset every link, like a stopped server."""
        self.mode = "refused"
        self._close_listener()
        self._reset_links()

    def half_open(self) -> None:
        """Links go silent and are never closed by the proxy; new connections are swallowed."""
        self._switch("half_open")
        for link in self._links:
            link.silence()

    def _switch(self, mode: str, latency_s: float | None = None) -> None:
        self.mode = mode
        if latency_s is not None:
            self._latency_s = latency_s
        if self._listener is None:
            self._listen()

    def _reset_links(self) -> None:
        links, self._links = self._links, []
        for link in links:
            link.close(rst=True)

    # -- older controls --------------------------------------------------------------------------

    @property
    def hold_replies(self) -> bool:
        """While True, the server's bytes are held back from the client (then written in order)."""
        return not self._flowing.is_set()

    @hold_replies.setter
    def hold_replies(self, hold: bool) -> None:
        if hold:
            self._flowing.clear()
        else:
            self._flowing.set()

    def inject(self, data: bytes) -> None:
        """Write raw bytes to every connected client, as if the server sent them."""
        for link in self._links:
            if link.state is not _State.CLOSED:
                link.client.write(data)

    def cut(self) -> None:
        """Drop every link at once."""
        links, self._links = self._links, []
        for link in links:
            link.close()

    # -- the listener and the links --------------------------------------------------------------

    def _listen(self) -> None:
        """Listen now, on the same port as before if there was one (a socket of our own: closing it is immediate)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._listener = sock
        asyncio.get_running_loop().add_reader(sock, self._accept_all, sock)

    def _close_listener(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock)
            sock.close()

    def _accept_all(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:   # nothing more to accept now (BlockingIOError), or out of descriptors
                return
            if self.mode == "reset":
                _rst(sock)
                sock.close()
            else:
                self._spawn(self._open(sock))

    async def _open(self, sock: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        flowing = self.mode in ("normal", "latency")   # the mode now: it may have changed since the accept
        link = _Link(writer, _State.FLOWING if flowing else _State.SWALLOWING)
        if self.mode in ("reset", "refused"):
            link.close(rst=True)
            return
        self._links.append(link)
        if flowing:
            await self._connect(link, reader)
        else:
            await self._pump(link, reader, None, replies=False)

    async def _connect(self, link: _Link, client_reader: asyncio.StreamReader) -> None:
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except (OSError, TimeoutError):
            link.close(rst=True)   # the target refused or did not answer: so does the proxy
            return
        link.upstream = up_writer
        if link.state is _State.CLOSED:
            up_writer.transport.abort()
            return
        if link.state is _State.SILENT:
            up_writer.transport.pause_reading()
        self._spawn(self._pump(link, client_reader, up_writer, replies=False))
        self._spawn(self._pump(link, up_reader, link.client, replies=True))

    async def _pump(self, link: _Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter | None, *,
                    replies: bool) -> None:
        """Read ``src`` into a queue that ``_deliver`` writes to ``dst`` (None: nowhere, swallowed)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        if dst is not None:
            self._spawn(self._deliver(link, queue, dst, replies=replies))
        try:
            while link.state is not _State.CLOSED:
                if link.state is _State.SILENT:
                    await self._never
                data = await src.read(_CHUNK)
                if not data:
                    break
                if link.state is _State.FLOWING and dst is not None:
                    queue.put_nowait((loop.time() + self._latency_s, data))
                else:
                    link.holed = True
        except ConnectionError:
            pass
        if link.state is _State.SILENT:
            await self._never   # a vanished peer's socket is never closed
        if dst is None:
            self._drop(link)
        queue.put_nowait(None)  # the end of the stream, after what is still queued

    async def _deliver(self, link: _Link, queue: asyncio.Queue[tuple[float, bytes] | None],
                       dst: asyncio.StreamWriter, *, replies: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                if replies:
                    await self._flowing.wait()
                if link.state is _State.FLOWING:
                    dst.write(data)
                    await dst.drain()
                else:
                    link.holed = True
        except ConnectionError:
            pass
        if link.state is _State.SILENT:
            await self._never
        self._drop(link)

    def _drop(self, link: _Link) -> None:
        """One end closed: close the other and forget the link."""
        if link.state is not _State.CLOSED:
            link.close()
        with contextlib.suppress(ValueError):
            self._links.remove(link)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
