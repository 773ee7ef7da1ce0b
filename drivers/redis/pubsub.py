"""One Redis pub/sub connection per process, shared by every part of it that listens.

Rules of this file:
- ``SubscriberConnection`` is the I/O pump: an ``asyncio.Protocol`` around hiredis's
  reply parser, built from ``drivers.kit``.  Its matching rule: pushed messages go
  to ``on_message(channel, payload)`` straight from ``data_received`` (no task,
  no queue, no polling); ``subscribe`` acknowledgements complete the waiter of
  their channel; PONGs and the replies to AUTH/SELECT complete FIFOs of their own.
  After the messages of one read, ``on_batch()`` says so: an owner that fans out
  can write everything that arrived together at once.  An idle subscription
  costs no CPU (unlike polling ``get_message()`` with its default zero timeout).
- Only pub/sub commands go out on it (SUBSCRIBE, UNSUBSCRIBE, PING), batched per
  loop iteration like every pump's writes.
- ``Subscriber`` owns the connection, the set of wanted channels and the
  listeners.  A listener registers for a channel prefix (``listen("ws:", hub)``)
  and gets the messages, batch ends and resubscriptions of its channels only.
- When the connection is lost the subscriber reconnects in the background
  (``drivers.retry.reconnect``, forever until ``aclose``), subscribes again to
  every wanted channel in one command, and then tells each listener
  ``on_resubscribed(channels)`` so it can fetch what was published meanwhile.
  Each listener hears ``on_lost()`` before that SUBSCRIBE goes out: messages of
  the new connection can arrive before ``on_resubscribed``.
- Its liveness rule: a PING every ``health_interval_s`` finds a connection that
  died without a FIN (a host gone, a firewall); no PONG within ``health_timeout_s``
  closes it, and reconnection follows.
- States (``kit.State``) per connection: CONNECTING -> READY -> CLOSED; CLOSED is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

import hiredis

from drivers.base import Calls, ClientStats, LifecycleMixin, client_stats
from drivers.errors import BackendTimeout, BackendUnavailable, DriverError, InterfaceError, ProtocolError
from drivers.kit import Closer, Outbox, PumpStats, State, connect, fail_all, set_nodelay
from drivers.redis.config import RedisConfig
from drivers.redis.pipe import ERRORS
from drivers.redis.resp import Arg, encode_command
from drivers.retry import reconnect

log = logging.getLogger("drivers.redis.pubsub")

MessageCallback = Callable[[bytes, bytes], None]


def _resubscribed_to(channels: list[str], prefix: bytes, listener: Listener) -> None:
    listener.on_resubscribed([c for c in channels if c.encode().startswith(prefix)])


class Listener(Protocol):
    """What a part of the process that listens to channels implements (all calls run on the loop)."""

    def on_message(self, channel: bytes, payload: bytes) -> None:
        """A message published to one of its channels, in the order Redis published them."""

    def on_batch(self) -> None:
        """The messages of one read from Redis have all been handed over."""

    def on_lost(self) -> None:
        """The subscription was lost; called before the new connection subscribes again.

        Messages that come on the new connection may reach ``on_message`` before
        ``on_resubscribed`` is called: a listener that fills the gap from elsewhere holds
        them back from here on.
        """

    def on_resubscribed(self, channels: list[str]) -> None:
        """The subscription was lost and is back: what was published meanwhile is gone from pub/sub."""


class SubscriberConnection(asyncio.Protocol):
    """One socket in subscribed mode.  Opened by ``Subscriber``."""

    def __init__(self, where: str, on_message: MessageCallback, on_batch: Callable[[], None] | None = None) -> None:
        self.where = where
        self._on_message = on_message
        self._on_batch = on_batch
        loop = self._loop = asyncio.get_running_loop()
        self.life = Closer(f"redis {where} subscription", loop)
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._out: Outbox[None] = Outbox(loop)  # batching only: the subscription's liveness is its PING
        self._acks: dict[bytes, list[asyncio.Future[None]]] = {}
        self._pongs: list[asyncio.Future[None]] = []
        self._replies: list[asyncio.Future[Any]] = []   # AUTH / SELECT before subscribing

    @property
    def state(self) -> State:
        return self.life.state

    def __repr__(self) -> str:
        return f"<SubscriberConnection redis {self.where} {self.life.state.value}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._out.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        self.life.advance(State.READY)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                self._dispatch(reply)
        except hiredis.ProtocolError as exc:
            self.abort(ProtocolError(f"redis {self.where}: subscription protocol error ({exc})", backend="redis"))
        if self._on_batch is not None:
            try:
                self._on_batch()
            except Exception:
                log.exception("pub/sub batch callback failed")

    def _dispatch(self, reply: Any) -> None:
        if type(reply) is list and reply:
            kind = reply[0]
            if kind == b"message":
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
            self.abort(BackendUnavailable(f"redis {self.where}: error reply on the subscription: {reply}",
                                          backend="redis"))

    def _pong(self) -> None:
        if self._pongs:
            fut = self._pongs.pop(0)
            if not fut.done():
                fut.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        why = f"connection lost ({exc})" if exc else "connection lost"
        self._shutdown(BackendUnavailable(f"redis {self.where}: subscription {why}", backend="redis"))

    # -- commands ----------------------------------------------------------------------------------

    def _write(self, args: list[Arg]) -> None:
        if self.life.state is not State.READY:
            raise BackendUnavailable(f"redis {self.where}: the subscription is not connected", backend="redis")
        self._out.write(encode_command(args))

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

    def abort(self, reason: DriverError | None = None) -> None:
        """Drop the socket now, failing whatever waits (``reason``: why; default: closed by the client)."""
        self._shutdown(reason or BackendUnavailable(f"redis {self.where}: subscription closed by client",
                                                    backend="redis"))
        if self._transport is not None:
            self._transport.abort()

    def _shutdown(self, reason: DriverError) -> None:
        if not self.life.close(reason):
            return
        self._out.close()
        pending = [f for waiters in self._acks.values() for f in waiters] + self._pongs + self._replies
        self._acks, self._pongs, self._replies = {}, [], []
        fail_all(pending, lambda: BackendUnavailable(reason.message, backend="redis"))

    async def wait_lost(self) -> None:
        await self.life.wait_closed()


class Subscriber(LifecycleMixin):
    """The process's Redis subscription: ``listen(prefix, listener)``, then ``await subscribe(channel)``.

    Build it without I/O; ``start()`` connects once (raising ``BackendUnavailable`` /
    ``BackendTimeout`` if Redis is not there) and keeps the connection from then on.
    """

    name = "redis-subscription"

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.address = self.where = config.address
        self.calls = Calls("redis")
        self.channels: set[str] = set()        # wanted: subscribed now, or again after a reconnection
        self.messages = 0
        self.counters = PumpStats()
        self._listeners: list[tuple[bytes, Listener]] = []
        self._conn: SubscriberConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self.connected else "reconnecting"
        return f"<Subscriber redis {self.where} {state} channels={len(self.channels)}>"

    def listen(self, prefix: str, listener: Listener) -> None:
        """Hand the messages of channels starting with ``prefix`` to ``listener`` (register before subscribing)."""
        raw = prefix.encode()
        for other, _ in self._listeners:
            if raw.startswith(other) or other.startswith(raw):
                raise InterfaceError(f"redis: channel prefix {prefix!r} overlaps {other.decode()!r}, which "
                                     "another listener has", backend="redis")
        self._listeners.append((raw, listener))

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.state is State.READY

    async def start(self) -> None:
        if self._task is not None:
            return
        self._closed = False
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
        if not any(channel.encode().startswith(prefix) for prefix, _ in self._listeners):
            raise InterfaceError(f"redis: nothing listens to channel {channel!r}; call listen() with its prefix "
                                 "first", backend="redis")
        self.channels.add(channel)
        calls = self.calls
        began = calls.start()
        try:
            [ack] = conn.subscribe([channel])
            await ack
        except BaseException as exc:
            calls.end("subscribe", began, exc)
            # A lost connection resubscribes to the wanted set; this caller's answer is an error,
            # and it owns the decision to try again, so the channel leaves the set.
            self.channels.discard(channel)
            raise
        calls.end("subscribe", began)

    async def barrier(self) -> None:
        """Return once every message Redis sent this connection before now has been handed to its listener.

        A PING answered on the subscription: what was published before it (say,
        before a stream was read on another connection) has then arrived.
        """
        conn = self._conn
        if conn is None or not self.connected:
            raise BackendUnavailable(f"redis {self.where}: the subscription is reconnecting", backend="redis")
        timeout_s = self.config.subscription.health_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await conn.ping()
        except TimeoutError:
            raise BackendTimeout(f"redis {self.where}: the subscription gave no PONG within {timeout_s:g} s",
                                 backend="redis") from None

    async def _ping(self) -> None:
        await self.barrier()

    def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; messages already on their way are still delivered."""
        self.channels.discard(channel)
        conn = self._conn
        if conn is not None and conn.state is State.READY:
            conn.unsubscribe(channel)

    async def _open(self) -> SubscriberConnection:
        conn = SubscriberConnection(self.where, self._dispatch, self._batch_done)
        await connect(conn, self.config.host, self.config.port, timeout_s=self.config.connect_timeout_s,
                      errors=ERRORS, where=f"redis {self.where}", setup=self._setup)
        self.counters.connects += 1
        return conn

    async def _setup(self, conn: SubscriberConnection) -> None:
        c = self.config
        if c.password is not None:
            await conn.command(*(("AUTH", c.password) if c.username is None else ("AUTH", c.username, c.password)))
        if c.db:
            await conn.command("SELECT", c.db)

    def _dispatch(self, channel: bytes, payload: bytes) -> None:
        self.messages += 1
        for prefix, listener in self._listeners:
            if channel.startswith(prefix):
                listener.on_message(channel, payload)
                return

    def _tell(self, event: str, call: Callable[[bytes, Listener], None]) -> None:
        """``call(prefix, listener)`` for every listener; one that fails is logged, the others still hear."""
        for prefix, listener in self._listeners:
            try:
                call(prefix, listener)
            except Exception:
                log.exception("pub/sub %s callback failed", event)

    def _batch_done(self) -> None:
        self._tell("batch", lambda _, listener: listener.on_batch())

    async def _keep(self, conn: SubscriberConnection) -> None:
        """Watch the connection (PING), and replace it when it is lost; runs until ``aclose``."""
        while not self._closed:
            await self._watch(conn)
            if self._closed:
                return
            log.warning("redis %s: the subscription was lost; reconnecting", self.where)
            self._tell("lost", lambda _, listener: listener.on_lost())
            fresh = await reconnect(self._resubscribed, self.config.subscription.reconnect,
                                    retry_on=(BackendUnavailable, BackendTimeout), stop=lambda: self._closed,
                                    on_failure=self._reconnect_failed)
            if fresh is None:
                return
            conn = self._conn = fresh
            log.warning("redis %s: subscribed again to %d channels", self.where, len(self.channels))
            self._tell("resubscribe", functools.partial(_resubscribed_to, sorted(self.channels)))

    async def _resubscribed(self) -> SubscriberConnection:
        """A new connection, subscribed again to every wanted channel within the health timeout.

        A peer that accepts and then says nothing (a host half gone) would otherwise hold the
        acknowledgement, and with it the reconnection, forever: past the timeout the attempt
        fails with ``BackendTimeout`` and the next one begins.
        """
        conn = await self._open()
        channels = sorted(self.channels)
        if channels:
            timeout_s = self.config.subscription.health_timeout_s
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.gather(*conn.subscribe(channels))
            except TimeoutError:
                conn.abort()
                raise BackendTimeout(f"redis {self.where}: no acknowledgement of SUBSCRIBE within {timeout_s:g} s",
                                     backend="redis", waited_s=timeout_s) from None
            except BaseException:
                conn.abort()
                raise
        return conn

    def _reconnect_failed(self, attempt: int, exc: BaseException) -> None:
        if attempt == 1 or attempt % 20 == 0:
            log.warning("redis %s: resubscribe attempt %d failed: %s", self.where, attempt, exc)

    async def _watch(self, conn: SubscriberConnection) -> None:
        sub = self.config.subscription
        while conn.state is State.READY:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sub.health_interval_s):
                    await conn.wait_lost()
            if conn.state is not State.READY:
                return
            try:
                async with asyncio.timeout(sub.health_timeout_s):
                    await conn.ping()
            except TimeoutError:
                conn.abort(BackendUnavailable(f"redis {self.where}: subscription gave no PONG within "
                                              f"{sub.health_timeout_s:g} s", backend="redis"))
            except BackendUnavailable:
                return

    async def aclose(self) -> None:
        """Stop reconnecting and close the socket; idempotent."""
        self._closed = True
        task, self._task = self._task, None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def stats(self) -> ClientStats:
        return client_stats(self.calls, address=self.address, connected=self.connected,
                            reconnects=self.counters.reconnects,
                            detail={"channels": len(self.channels), "messages": self.messages})
