"""One Redis pub/sub connection per process: subscribe to channels, get their messages by callback.

Rules of this file:
- ``SubscriberConnection`` is the I/O pump: an ``asyncio.Protocol`` around hiredis's
  reply parser.  Messages are handed to ``on_message(channel, payload)`` straight
  from ``data_received``: no task, no queue, no polling.  After the messages of
  one read, ``on_batch()`` says so: an owner that fans out can write everything
  that arrived together at once.  Reading waits on the
  socket like any other asyncio protocol, so an idle subscription costs no CPU
  (unlike polling ``get_message()`` with its default zero timeout).
- Only pub/sub commands go out on it (SUBSCRIBE, UNSUBSCRIBE, PING).  A
  SUBSCRIBE is acknowledged by one ``subscribe`` reply per channel; the caller
  of ``subscribe`` waits for that acknowledgement, after which every message
  published to the channel reaches ``on_message``.
- ``Subscriber`` owns the connection and the set of wanted channels.  When the
  connection is lost it reconnects in the background (exponential backoff with
  full jitter, forever until ``aclose``), subscribes again to every wanted
  channel in one command, and then calls ``on_resubscribed(channels)`` so the
  owner can fetch what was published while the connection was down.
- A PING every ``health_interval`` seconds finds a connection that died without
  a FIN (a host gone, a firewall): no PONG within ``health_timeout`` closes it,
  and reconnection follows.
- States: CONNECTING -> READY -> CLOSED per connection; CLOSED is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from typing import Any, cast

import hiredis

from drivers.errors import BackendTimeout, BackendUnavailable
from drivers.redis_pipe import State
from drivers.resp import Arg, encode_command

log = logging.getLogger("drivers.redis_pubsub")

MessageCallback = Callable[[bytes, bytes], None]
BatchCallback = Callable[[], None]
ResubscribedCallback = Callable[[list[str]], None]


class SubscriberConnection(asyncio.Protocol):
    """One socket in subscribed mode.  Opened by ``Subscriber``."""

    def __init__(self, where: str, on_message: MessageCallback, on_batch: BatchCallback | None = None) -> None:
        self.where = where
        self.state = State.CONNECTING
        self._on_message = on_message
        self._on_batch = on_batch
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._acks: dict[bytes, list[asyncio.Future[None]]] = {}
        self._pongs: list[asyncio.Future[None]] = []
        self._replies: list[asyncio.Future[Any]] = []   # AUTH / SELECT before subscribing
        self.lost: asyncio.Future[None] = self._loop.create_future()
        self.messages = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state = State.READY

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                self._dispatch(reply)
        except hiredis.ProtocolError as exc:
            self.abort(f"protocol error ({exc})")
        if self._on_batch is not None:
            try:
                self._on_batch()
            except Exception:
                log.exception("pub/sub batch callback failed")

    def _dispatch(self, reply: Any) -> None:
        if type(reply) is list and reply:
            kind = reply[0]
            if kind == b"message":
                self.messages += 1
                try:
                    self._on_message(reply[1], reply[2])
                except Exception:  # the owner's bug must not kill the subscription
                    log.exception("pub/sub message callback failed")
                return
            if kind == b"subscribe":
                waiters = self._acks.get(reply[1])
                if waiters:
                    fut = waiters.pop(0)
                    if not waiters:
                        del self._acks[reply[1]]
                    if not fut.done():
                        fut.set_result(None)
                return
            if kind == b"unsubscribe":
                return
            if kind == b"pong":
                self._pong()
                return
        if reply == b"PONG":  # a PING before subscribing answers plainly
            self._pong()
            return
        if self._replies:
            fut = self._replies.pop(0)
            if not fut.done():
                if type(reply) is hiredis.ReplyError:
                    fut.set_exception(BackendUnavailable(f"redis {self.where}: {reply}", backend="redis"))
                else:
                    fut.set_result(reply)
            return
        if type(reply) is hiredis.ReplyError:
            self.abort(f"error reply on the subscription: {reply}")

    def _pong(self) -> None:
        if self._pongs:
            fut = self._pongs.pop(0)
            if not fut.done():
                fut.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._shutdown(f"connection lost ({exc})" if exc else "connection lost")

    # -- commands ----------------------------------------------------------------------------------

    def _write(self, args: list[Arg]) -> None:
        if self.state is not State.READY or self._transport is None:
            raise BackendUnavailable(f"redis {self.where}: the subscription is not connected", backend="redis")
        self._transport.write(encode_command(args))

    def command(self, *args: Arg) -> asyncio.Future[Any]:
        """A plain command before subscribing (AUTH, SELECT); the future of its reply."""
        self._write(list(args))
        fut = self._loop.create_future()
        self._replies.append(fut)
        return fut

    def subscribe(self, channels: list[str]) -> list[asyncio.Future[None]]:
        """Send one SUBSCRIBE; a future per channel, done when Redis acknowledged it."""
        self._write(["SUBSCRIBE", *channels])
        futures = []
        for channel in channels:
            fut = self._loop.create_future()
            self._acks.setdefault(channel.encode(), []).append(fut)
            futures.append(fut)
        return futures

    def unsubscribe(self, channel: str) -> None:
        self._write(["UNSUBSCRIBE", channel])

    def ping(self) -> asyncio.Future[None]:
        self._write(["PING"])
        fut = self._loop.create_future()
        self._pongs.append(fut)
        return fut

    # -- closing -----------------------------------------------------------------------------------

    def abort(self, why: str) -> None:
        self._shutdown(why)
        if self._transport is not None:
            self._transport.abort()

    def _shutdown(self, why: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        error = BackendUnavailable(f"redis {self.where}: subscription {why}", backend="redis")
        pending = [f for waiters in self._acks.values() for f in waiters] + self._pongs + self._replies
        self._acks, self._pongs, self._replies = {}, [], []
        for fut in pending:
            if not fut.done():
                fut.set_exception(error)
        if not self.lost.done():
            self.lost.set_result(None)


class Subscriber:
    """The process's Redis subscription: ``await subscribe("ch")``; messages arrive at ``on_message``.

    ``on_message(channel, payload)`` is called on the event loop for every message of a
    wanted channel, in the order Redis published them.  ``on_resubscribed(channels)`` is
    called after a reconnection, once Redis acknowledged the channels again.
    """

    def __init__(self, host: str, port: int, *, on_message: MessageCallback, on_batch: BatchCallback | None = None,
                 on_resubscribed: ResubscribedCallback | None = None, db: int = 0,
                 password: str | None = None, connect_timeout: float = 2.0, health_interval: float = 5.0,
                 health_timeout: float = 3.0, backoff_base: float = 0.05, backoff_cap: float = 2.0) -> None:
        self.host, self.port = host, port
        self.where = f"{host}:{port}"
        self.on_message = on_message
        self.on_batch = on_batch
        self.on_resubscribed = on_resubscribed
        self.db, self.password = db, password
        self.connect_timeout = connect_timeout
        self.health_interval, self.health_timeout = health_interval, health_timeout
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.channels: set[str] = set()        # wanted: subscribed now, or again after a reconnection
        self.reconnects = 0
        self._conn: SubscriberConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._retired_messages = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.state is State.READY

    async def start(self) -> None:
        """Connect once (raising ``BackendUnavailable``/``BackendTimeout`` if Redis is not there), then keep it."""
        if self._task is not None:
            return
        conn = await self._open()
        self._conn = conn
        self._task = asyncio.create_task(self._keep(conn), name=f"redis-subscriber-{self.where}")

    async def subscribe(self, channel: str) -> None:
        """Subscribe (if not already); returns once Redis acknowledged.  Fails fast while disconnected."""
        if self._closed:
            raise BackendUnavailable(f"redis {self.where}: the subscriber is closed", backend="redis")
        conn = self._conn
        if conn is None or conn.state is not State.READY:
            raise BackendUnavailable(f"redis {self.where}: the subscription is reconnecting", backend="redis")
        self.channels.add(channel)
        try:
            [ack] = conn.subscribe([channel])
            await ack
        except BaseException:
            # A lost connection resubscribes to the wanted set; this caller's answer is an error,
            # and it owns the decision to try again, so the channel leaves the set.
            self.channels.discard(channel)
            raise

    async def barrier(self) -> None:
        """Return once every message Redis sent this connection before now has been handed to ``on_message``.

        A PING answered on the subscription: what was published before it (say,
        before a stream was read on another connection) has then arrived.
        """
        conn = self._conn
        if conn is None or not self.connected:
            raise BackendUnavailable(f"redis {self.where}: the subscription is reconnecting", backend="redis")
        try:
            async with asyncio.timeout(self.health_timeout):
                await conn.ping()
        except TimeoutError:
            raise BackendTimeout(f"redis {self.where}: the subscription gave no PONG within "
                                 f"{self.health_timeout:g} s", backend="redis") from None

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; messages already on their way are still delivered."""
        self.channels.discard(channel)
        conn = self._conn
        if conn is not None and conn.state is State.READY:
            conn.unsubscribe(channel)

    async def _open(self) -> SubscriberConnection:
        loop = asyncio.get_running_loop()
        conn = SubscriberConnection(self.where, self._dispatch, self._batch_done)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: conn, self.host, self.port)
                if self.password is not None:
                    await conn.command("AUTH", self.password)
                if self.db:
                    await conn.command("SELECT", self.db)
        except TimeoutError:
            conn.abort("connect timeout")
            raise BackendTimeout(f"redis {self.where}: no connection within {self.connect_timeout:g} s",
                                 backend="redis") from None
        except OSError as exc:
            conn.abort("connect failed")
            raise BackendUnavailable(f"redis {self.where}: {exc.strerror or exc}", backend="redis") from exc
        except BaseException:
            conn.abort("connect failed")
            raise
        return conn

    def _dispatch(self, channel: bytes, payload: bytes) -> None:
        self.on_message(channel, payload)

    def _batch_done(self) -> None:
        if self.on_batch is not None:
            self.on_batch()

    async def _keep(self, conn: SubscriberConnection) -> None:
        """Watch the connection (PING), and replace it when it is lost; runs until ``aclose``."""
        while not self._closed:
            await self._watch(conn)
            self._retired_messages += conn.messages
            if self._closed:
                return
            log.warning("redis %s: the subscription was lost; reconnecting", self.where)
            conn = await self._reconnect()
            self._conn = conn
            self.reconnects += 1
            log.warning("redis %s: subscribed again to %d channels", self.where, len(self.channels))
            if self.on_resubscribed is not None:
                try:
                    self.on_resubscribed(sorted(self.channels))
                except Exception:
                    log.exception("pub/sub resubscribe callback failed")

    async def _watch(self, conn: SubscriberConnection) -> None:
        while conn.state is State.READY:
            done, _ = await asyncio.wait([conn.lost], timeout=self.health_interval)
            if done or conn.state is not State.READY:
                return
            try:
                async with asyncio.timeout(self.health_timeout):
                    await conn.ping()
            except TimeoutError:
                conn.abort(f"gave no PONG within {self.health_timeout:g} s")
            except BackendUnavailable:
                return

    async def _reconnect(self) -> SubscriberConnection:
        attempt = 0
        while True:
            attempt += 1
            delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** min(attempt, 16)))
            await asyncio.sleep(delay)
            try:
                conn = await self._open()
                channels = sorted(self.channels)
                if channels:
                    await asyncio.gather(*conn.subscribe(channels))
                return conn
            except (BackendUnavailable, BackendTimeout) as exc:
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("redis %s: resubscribe attempt %d failed: %s", self.where, attempt, exc)

    async def aclose(self) -> None:
        """Stop reconnecting and close the socket; idempotent."""
        self._closed = True
        task, self._task = self._task, None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort("closed by client")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def stats(self) -> dict[str, Any]:
        conn = self._conn
        return {"connected": self.connected, "channels": len(self.channels), "reconnects": self.reconnects,
                "messages": self._retired_messages + (conn.messages if conn is not None else 0)}
