"""Load through nginx for the multi-host tests: keep-alive GET loops, POSTs sent once, WebSocket subscribers.

Rules of this file:
- Every request carries an ``X-Request-ID`` starting with the run's prefix, so nginx's access log
  (which upstreams were tried, when) can be matched with what the client saw.
- "Failed" is an answer other than 200, no answer on a new connection, an answer cut short, or none
  within ``ANSWER_S``.  A GET on a reused keep-alive connection that closes before any byte of the
  answer (nginx closing an idle connection as a worker retires) is sent again on a new connection and
  counted as ``resent``, as HTTP clients do with an idempotent request (RFC 9110, 9.2.2).  A POST
  goes on a connection of its own and is never sent twice.
- Subscribers resume with the last id they saw (docs/websocket.md); each connection's host and the
  time it subscribed are kept, for the tests to say who reconnected where and when.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from stack.hosts import NGINX_PORT, Host

ANSWER_S = 15.0


@dataclass
class Load:
    """What the HTTP clients saw."""

    prefix: str = ""
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)        # monotonic time each failure was seen
    slow: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds) of answers over 1 s
    resent: int = 0
    posts_sent: int = 0
    posts_ok: int = 0
    posts_failed: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sequence: int = 0
    cancelled_wall: float = 0.0     # when the test cancelled the clients still waiting (time.time())

    def request_id(self) -> str:
        self.sequence += 1
        return f"{self.prefix}-{self.sequence}"

    def fail(self, what: str) -> None:
        self.failures.append(what)
        self.failed_at.append(time.monotonic())


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """One request and its answer.  An answer saying ``Connection: close`` (nginx's after
    ``keepalive_requests`` on one connection) closes the writer: the caller sees it closing."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    if re.search(rb"\r\nconnection:\s*close", head, re.I):
        writer.close()
    return status, body


class KeepAlive:
    """One keep-alive connection to the balancer, opened again whenever it was closed."""

    def __init__(self, port: int = NGINX_PORT) -> None:
        self.port = port
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, request: bytes, timeout_s: float = ANSWER_S) -> tuple[int, bytes] | None:
        """The answer to ``request``; None when the connection, reused, closed before any byte of the
        answer (send it again: see the rules above).  Any other failure raises (``OSError``,
        ``asyncio.IncompleteReadError``, ``TimeoutError``), the connection closed."""
        if self._conn is not None and self._conn[1].is_closing():   # the last answer said Connection: close
            self._conn = None
        reused = self._conn is not None
        try:
            if self._conn is None:
                self._conn = await asyncio.open_connection("127.0.0.1", self.port)
            return await asyncio.wait_for(exchange(*self._conn, request), timeout_s)
        except (asyncio.IncompleteReadError, OSError, TimeoutError) as exc:
            self.close()
            nothing = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
            if reused and nothing and not isinstance(exc, TimeoutError):
                return None
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


async def http_client(load: Load, path: str, port: int = NGINX_PORT) -> None:
    """GETs one after the other on one keep-alive connection (see the rules above)."""
    conn = KeepAlive(port)
    try:
        while not load.stop.is_set():
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: {load.request_id()}\r\n\r\n".encode()
            sent = time.monotonic()
            try:
                answer = await conn.send(request)
            except TimeoutError:
                load.fail(f"GET {path}: no answer within {ANSWER_S:.0f} s")
                continue
            except (asyncio.IncompleteReadError, OSError) as exc:
                load.fail(f"GET {path}: {exc!r}")
                continue
            if answer is None:
                load.resent += 1
                continue
            took = time.monotonic() - sent
            if took > 1:
                load.slow.append((sent, took))
            load.statuses[answer[0]] += 1
            if answer[0] != 200:
                load.fail(f"GET {path}: {answer[0]}")
    finally:
        conn.close()


async def post_once(path: str, body: bytes, *, request_id: str, headers: str = "", address: str = "127.0.0.1",
                    port: int = NGINX_PORT, timeout_s: float = ANSWER_S) -> tuple[int, bytes]:
    """One POST on a connection of its own (a POST is never sent twice)."""
    reader, writer = await asyncio.open_connection(address, port)
    try:
        return await asyncio.wait_for(exchange(reader, writer, (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: {request_id}\r\n{headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body), timeout_s)
    finally:
        writer.close()


async def post_client(load: Load, path: str) -> None:
    """POSTs one after the other, each once: those answered 200 and those that failed are counted."""
    while not load.stop.is_set():
        load.posts_sent += 1
        try:
            status, answer = await post_once(path, b"{}", request_id=load.request_id())
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            load.posts_failed.append(repr(exc))
            load.failed_at.append(time.monotonic())
            continue
        if status == 200:
            load.posts_ok += 1
        else:
            load.posts_failed.append(f"{status} {answer[:120]!r}")
            load.failed_at.append(time.monotonic())


async def publish(channel: str, token: str, n: int, *, address: str = "127.0.0.1", port: int = NGINX_PORT) -> str:
    """POST /publish/{channel}, once; the message id."""
    status, answer = await post_once(f"/publish/{channel}", json.dumps({"n": n}).encode(),
                                     request_id=f"publish-{channel}-{n}", address=address, port=port,
                                     headers=f"Authorization: Bearer {token}\r\n", timeout_s=10)
    assert status == 200, f"publish {n}: {status} {answer[:200]!r}"
    return str(json.loads(answer)["id"])


@dataclass
class Subscriber:
    since: str
    received: list[str] = field(default_factory=list)
    hosts: list[int] = field(default_factory=list)            # the host of each connection, in order
    subscribed_at: list[float] = field(default_factory=list)  # monotonic time of each "subscribed"
    closes: list[int | None] = field(default_factory=list)    # the close code that ended each connection
    resumed: list[bool] = field(default_factory=list)         # "recovered" of each subscribe
    failed_handshakes: list[str] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)


def namespaces(hosts: list[Host]) -> dict[str, int]:
    """``net:[inode]`` of each host's namespace -> the host's index."""
    return {f"net:[{os.stat(f'/run/netns/{h.netns}').st_ino}]": h.index for h in hosts}


async def subscribe(sub: Subscriber, channel: str, hosts: dict[str, int], stop: asyncio.Event, *,
                    ping_interval: float | None = None, ping_timeout: float | None = None) -> None:
    """Subscribed with ``since`` the last id seen; on a close, connect again through nginx and resume.

    ``ping_interval``/``ping_timeout``: the client's own pings, how a subscriber notices a host that
    stopped answering without closing anything (frozen, or its network cut)."""
    while not stop.is_set():
        try:
            async with connect(f"ws://127.0.0.1:{NGINX_PORT}/ws", open_timeout=10, close_timeout=2,
                               ping_interval=ping_interval, ping_timeout=ping_timeout, max_queue=None) as ws:
                assert ws.response is not None
                served_by = int(ws.response.headers["X-Served-By"])
                try:
                    sub.hosts.append(hosts.get(os.readlink(f"/proc/{served_by}/ns/net"), -1))
                except OSError:                 # that server has just exited
                    sub.hosts.append(-1)
                await ws.send(json.dumps({"op": "subscribe", "channel": channel, "since": sub.since}))
                reply = json.loads(await ws.recv())
                if reply["type"] != "subscribed":
                    sub.failed_handshakes.append(str(reply))
                    await asyncio.sleep(0.2)
                    continue
                sub.resumed.append(reply["recovered"])
                sub.subscribed_at.append(time.monotonic())
                sub.subscribed.set()
                while True:                     # recv raises ConnectionClosed, whatever the code
                    message = json.loads(await ws.recv())
                    sub.received.append(message["id"])
                    sub.since = message["id"]
        except ConnectionClosed as closed:
            sub.closes.append(closed.rcvd.code if closed.rcvd else None)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            sub.failed_handshakes.append(repr(exc))
            await asyncio.sleep(0.2)


async def catch_up(subs: list[Subscriber], published: list[str], within_s: float) -> None:
    """Until every subscriber has the last message published, or ``within_s`` passed."""
    deadline = time.monotonic() + within_s
    while any(s.received[-1:] != published[-1:] for s in subs) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
