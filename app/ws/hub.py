"""The hub: this process's WebSocket subscribers, its one Redis subscription, and the fan-out between them.

Publishing (``publish``, or ``POST /publish/{channel}``) never delivers locally: the
message goes to Redis (stream + pub/sub, one script) and comes back through the
subscription like everyone else's, so every process — this one included — sees
every channel's messages in one order, the order of their ids.

Per channel and process:

- ``live`` subscribers get each message as soon as it arrives: framed once, the
  same bytes to every socket (``Peer.send``).  A subscriber over its buffer limit
  is closed with 1013 ("try again later"), logged once, and the others go on.
- ``joining`` subscribers are replaying history; live messages wait in a list for
  each of them and are sent after the replay, minus those the replay already had.
- ``last`` is the newest id delivered here.  Messages at or below it are
  duplicates and dropped.  After the subscription reconnects, each channel reads
  its stream from ``last`` and delivers what was published meanwhile, while live
  messages wait in ``backlog``.

A replay and live delivery travel on two different Redis connections.  Before a
replay ends, a PING on the subscription connection comes back: everything
published before the replay was read has then arrived, so nothing is sent twice
or out of order.

Delivery: at least once and in order within the history window (``history_size``
messages, ``history_ttl_s`` seconds); beyond it, at most once — ``subscribed``
says ``"recovered": false`` when a resume could not be complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.settings import WsSettings
from app.ws import protocol
from app.ws.history import History
from app.ws.peer import Peer
from app.ws.protocol import PRIVATE_PREFIX, ClientError, StreamId, Subscribe
from app.ws.tokens import check_token
from drivers.errors import DriverError
from drivers.redis import Subscriber

log = logging.getLogger("app.ws")

SLOW_CONSUMER = 1013      # "try again later"
GOING_AWAY = 1001


@dataclass(eq=False, slots=True)
class _Channel:
    name: str
    live: dict[Peer, None] = field(default_factory=dict)
    joining: dict[Peer, list[tuple[StreamId, bytes]]] = field(default_factory=dict)
    last: StreamId | None = None
    backlog: list[tuple[StreamId, bytes, bytes]] | None = None
    catching_up: bool = False     # a catch-up task runs; ``again`` asks it for one more pass
    again: bool = False
    batch: list[tuple[StreamId, bytes, bytes]] | None = None
    subscribed: asyncio.Future[None] | None = None

    @property
    def empty(self) -> bool:
        return not self.live and not self.joining


@dataclass(slots=True)
class HubStats:
    messages_in: int = 0          # messages received from Redis
    frames_out: int = 0           # message frames handed to sockets
    published: int = 0            # messages published by this process
    slow_consumers: int = 0       # connections closed for not keeping up
    duplicates: int = 0           # messages dropped as already delivered
    client_errors: int = 0        # error frames sent
    fanout_seconds: float = 0.0   # time spent framing and writing live messages


class Hub:
    """The fan-out between one process's WebSocket connections and its Redis subscription.

    It is handed its collaborators: ``history`` (streams and publishing, on the
    pipelined connection) and ``subscriber`` (the process's one subscription,
    started and closed by its owner), where it listens to ``<key_prefix>*`` channels.
    """

    def __init__(self, settings: WsSettings, history: History, subscriber: Subscriber) -> None:
        self.settings = settings
        self.history = history
        self.subscriber = subscriber
        subscriber.listen(settings.key_prefix, self)
        self.peers: dict[Peer, None] = {}
        self.closing = False
        self.counters = HubStats()
        self._channels: dict[str, _Channel] = {}
        self._prefix = settings.key_prefix.encode()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dirty: list[_Channel] = []     # channels with messages of the current read not yet sent
        self._all_gone = asyncio.Event()
        self._all_gone.set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the catch-up tasks (the subscription is closed by its owner); ``close_all`` first says goodbye."""
        self.closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close_all(self, code: int = GOING_AWAY, reason: str = "server shutting down",
                        timeout_s: float = 2.0) -> int:
        """Close every connection with ``code``; wait up to ``timeout_s`` for the handshakes, then drop the rest.

        Returns how many connections there were.
        """
        self.closing = True
        peers = list(self.peers)
        for peer in peers:
            peer.close(code, reason)
        if peers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._all_gone.wait()
            for peer in list(self.peers):
                peer.abort()
        return len(peers)

    # -- connections -------------------------------------------------------------------------------

    def add(self, peer: Peer) -> None:
        self.peers[peer] = None
        self._all_gone.clear()

    def remove(self, peer: Peer) -> None:
        """A connection closed: leave its channels."""
        peer.closing = True
        for name in list(peer.channels):
            self._leave(peer, name)
        self.peers.pop(peer, None)
        if not self.peers:
            self._all_gone.set()

    def send_event(self, peer: Peer, payload: bytes) -> None:
        """A control message (subscribed, error, ...), queued in order with the peer's messages."""
        if not peer.send(protocol.frame(payload)):
            self._slow(peer)

    def client_error(self, peer: Peer, exc: ClientError) -> None:
        self.counters.client_errors += 1
        self.send_event(peer, protocol.error(exc))

    # -- subscribing -------------------------------------------------------------------------------

    async def subscribe(self, peer: Peer, cmd: Subscribe) -> None:
        """Join ``cmd.channel``: replay from ``cmd.since`` if given, then live.  ClientError when refused."""
        name = cmd.channel
        if self.closing:
            raise ClientError("unavailable", "the server is shutting down", name)
        self._authorize(cmd)
        if name in peer.channels:
            raise ClientError("already_subscribed", f"already subscribed to {name}", name)
        if len(peer.channels) >= self.settings.max_channels:
            raise ClientError("too_many_channels", f"at most {self.settings.max_channels} channels per "
                              "connection", name)
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(name)
        peer.channels.add(name)
        channel.joining[peer] = []
        try:
            first = await self._ensure_subscribed(channel)
            replay = None
            if cmd.since is not None or first:
                replay = await self.history.replay(name, cmd.since)
                await self.subscriber.barrier()
                if first and replay.last is not None and (channel.last is None or channel.last < replay.last):
                    channel.last = replay.last
        except DriverError as exc:
            self._leave(peer, name)
            raise ClientError("unavailable", f"cannot subscribe now, try again: {exc}", name) from None
        except BaseException:
            self._leave(peer, name)
            raise
        if peer.closing or channel.joining.get(peer) is None:
            return
        waiting = channel.joining.pop(peer)
        fields: dict[str, Any] = {"channel": name}
        replayed = replay.entries if cmd.since is not None and replay is not None else []
        if cmd.since is not None and replay is not None:
            fields["recovered"] = replay.recovered
            fields["replayed"] = len(replayed)
        self.send_event(peer, protocol.event("subscribed", **fields))
        # The replay, then the live messages that came meanwhile and are newer than it: one write.
        last_sent = replayed[-1][0] if replayed else cmd.since
        frames = [protocol.frame(protocol.message_payload(name, raw_id, data)) for _, raw_id, data in replayed]
        frames += [frame for msg_id, frame in waiting if last_sent is None or msg_id > last_sent]
        if frames and not peer.send(b"".join(frames)):
            self._slow(peer)
            return
        channel.live[peer] = None

    def unsubscribe(self, peer: Peer, name: str) -> None:
        if name not in peer.channels:
            raise ClientError("not_subscribed", f"not subscribed to {name}", name)
        self._leave(peer, name)
        self.send_event(peer, protocol.event("unsubscribed", channel=name))

    def _authorize(self, cmd: Subscribe) -> None:
        if not cmd.channel.startswith(PRIVATE_PREFIX):
            return
        secret = self.settings.channel_secret
        if secret is None:
            raise ClientError("forbidden", "private channels are disabled on this server", cmd.channel)
        if cmd.token is None:
            raise ClientError("forbidden", f"{cmd.channel} is private: a token is required", cmd.channel)
        why = check_token(secret, cmd.channel, cmd.token)
        if why is not None:
            raise ClientError("forbidden", why, cmd.channel)

    async def _ensure_subscribed(self, channel: _Channel) -> bool:
        """Make this process subscribed to the channel; True for the call that did it."""
        current = channel.subscribed
        if _established(channel):
            return False
        first = current is None or current.done()
        if first:
            channel.subscribed = asyncio.ensure_future(self.subscriber.subscribe(self.history.key(channel.name)))
            channel.subscribed.add_done_callback(_retrieve)
        assert channel.subscribed is not None
        await asyncio.shield(channel.subscribed)
        return first

    def _leave(self, peer: Peer, name: str) -> None:
        peer.channels.discard(name)
        channel = self._channels.get(name)
        if channel is None:
            return
        channel.live.pop(peer, None)
        channel.joining.pop(peer, None)
        if channel.empty:
            del self._channels[name]
            if channel.subscribed is not None and not channel.subscribed.done():
                channel.subscribed.cancel()
            self.subscriber.unsubscribe(self.history.key(name))

    # -- delivery ----------------------------------------------------------------------------------

    def on_message(self, redis_channel: bytes, payload: bytes) -> None:
        self.counters.messages_in += 1
        channel = self._channels.get(redis_channel[len(self._prefix):].decode())
        if channel is None:
            return  # unsubscribed here a moment ago
        raw_id, _, data = payload.partition(b" ")
        try:
            msg_id = StreamId.parse(raw_id)
        except ValueError:
            log.warning("ignored a message on %s without an id: %r", channel.name, payload[:60])
            return
        if channel.backlog is not None:
            channel.backlog.append((msg_id, raw_id, data))
        elif channel.batch is None:
            channel.batch = [(msg_id, raw_id, data)]
            self._dirty.append(channel)
        else:
            channel.batch.append((msg_id, raw_id, data))

    def on_batch(self) -> None:
        """The end of one read from Redis: deliver what it brought, one write per subscriber and channel."""
        dirty, self._dirty = self._dirty, []
        for channel in dirty:
            batch, channel.batch = channel.batch, None
            if batch:
                self._deliver(channel, batch)

    def _deliver(self, channel: _Channel, messages: list[tuple[StreamId, bytes, bytes]]) -> None:
        """Frame each new message once and write them, joined, to every live subscriber of the channel.

        Under load several messages arrive in one read from Redis; joining their frames
        makes one socket write per subscriber instead of one per message.
        """
        began = time.perf_counter()
        frames: list[tuple[StreamId, bytes]] = []
        last = channel.last
        for msg_id, raw_id, data in messages:
            if last is not None and msg_id <= last:
                self.counters.duplicates += 1
                continue
            last = msg_id
            frames.append((msg_id, protocol.frame(protocol.message_payload(channel.name, raw_id, data))))
        if not frames:
            return
        channel.last = last
        blob = frames[0][1] if len(frames) == 1 else b"".join([f for _, f in frames])
        slow = [peer for peer in channel.live if not peer.send(blob)]
        for waiting in channel.joining.values():
            waiting.extend(frames)
        counters = self.counters
        counters.frames_out += len(frames) * (len(channel.live) - len(slow))
        counters.fanout_seconds += time.perf_counter() - began
        for peer in slow:
            self._slow(peer)

    def _slow(self, peer: Peer) -> None:
        """Close a consumer that does not keep up: once, with 1013, logged once."""
        if peer.closing:
            return
        self.counters.slow_consumers += 1
        log.warning("closing slow WebSocket consumer %s: %d bytes waiting (limit %d)", peer.name,
                    peer.buffered(), peer.limit)
        for name in list(peer.channels):
            self._leave(peer, name)
        peer.close(SLOW_CONSUMER, "slow consumer: too many messages waiting")

    def on_lost(self) -> None:
        """The subscription is gone: live messages of every established channel wait in its backlog.

        Set before the new connection subscribes, so a message that comes on it before the
        catch-up has read the stream cannot be delivered ahead of what was published meanwhile.
        """
        for channel in self._channels.values():
            if channel.catching_up:
                channel.again = True
            elif _established(channel) and channel.backlog is None:
                channel.backlog = []

    def on_resubscribed(self, channels: list[str]) -> None:
        """The subscription came back: each channel fetches what it missed meanwhile."""
        for channel in self._channels.values():
            if channel.backlog is None:
                continue
            if channel.catching_up:
                channel.again = True   # lost again while catching up: read the stream once more
                continue
            channel.catching_up = True
            task = asyncio.create_task(self._catch_up(channel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, channel: _Channel) -> None:
        """Deliver what the stream holds after ``last``, then the backlog; again if the subscription was lost again."""
        keep = False
        try:
            while True:
                channel.again = False
                try:
                    # Nothing delivered here yet: the whole stream is newer than this process's
                    # subscription (had it held anything then, ``last`` would have been set from it).
                    replay = await self.history.replay(channel.name, channel.last or StreamId(0, 0))
                    await self.subscriber.barrier()
                except DriverError as exc:
                    if channel.again:
                        continue      # lost meanwhile, and perhaps back: start over
                    if not self.subscriber.connected:
                        keep = True   # lost: the backlog stays, and the next on_resubscribed starts over
                    else:
                        log.warning("channel %s: could not fetch what was missed during the reconnection: %s",
                                    channel.name, exc)
                    break
                self._deliver(channel, replay.entries)
                if not replay.recovered:
                    log.warning("channel %s: messages published while the subscription was down are gone "
                                "from its history", channel.name)
                if not channel.again:
                    break
        finally:
            channel.catching_up = False
            if not keep:
                backlog, channel.backlog = channel.backlog or [], None
                self._deliver(channel, backlog)

    # -- publishing --------------------------------------------------------------------------------

    async def publish(self, channel: str, data: Any) -> str:
        """Publish ``data`` (any JSON-serialisable value) to every subscriber of ``channel``; its id."""
        return await self.publish_json(channel, orjson.dumps(data))

    async def publish_json(self, channel: str, data: bytes) -> str:
        """Publish ``data``, a JSON text; its id."""
        protocol.check_channel(channel)
        msg_id = await self.history.publish(channel, data)
        self.counters.published += 1
        return msg_id

    def stats(self) -> dict[str, Any]:
        subscriptions = sum(len(c.live) + len(c.joining) for c in self._channels.values())
        return {"connections": len(self.peers), "subscriptions": subscriptions, "channels": len(self._channels),
                "subscriber": self.subscriber.stats(), **dataclasses.asdict(self.counters)}


def _established(channel: _Channel) -> bool:
    done = channel.subscribed
    return done is not None and done.done() and not done.cancelled() and done.exception() is None


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
