"""Invalidation across processes: what one process deletes or overwrites, every other drops from its local tier.

Rules of this file:
- One Redis pub/sub channel per namespace (``CacheConfig.invalidation_channel``),
  received on the process's one shared ``Subscriber`` (``drivers.redis.pubsub``)
  and published through the pipelined ``RedisClient``.
- A message is ``origin (8 bytes) | kind (1 byte) | body``: kind ``k`` with keys
  separated by newlines (keys cannot contain one, ``drivers.cache.keys``), ``p`` with a
  prefix, ``*`` for everything.  A process ignores its own messages (``origin`` is
  random per bus): it already changed its local tier.
- Pub/sub delivers at most once: when the subscription is lost, whatever was
  published meanwhile is gone.  So when the subscriber comes back
  (``on_resubscribed``) the local tier is flushed whole, counted as a flush for
  ``subscription``, and refills from the remote tier.  Until then the local tier
  keeps serving: with Redis itself down, it is all there is.
- Publishing goes through the client's boundary: a failure is the client's typed
  error (``BackendUnavailable`` ...), raised to the caller of the write.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from drivers.redis import RedisClient, Subscriber

KEYS = b"k"
PREFIX = b"p"
EVERYTHING = b"*"


class InvalidationBus:
    """Publishes this process's invalidations and hands the others' to ``on_keys`` / ``on_prefix`` / ``on_flush``."""

    def __init__(self, client: RedisClient, subscriber: Subscriber, channel: str = "cache:invalidate") -> None:
        self.client = client
        self.subscriber = subscriber
        self.channel = channel
        self.origin = os.urandom(8)
        self.received = 0
        self.published = 0
        self.resubscriptions = 0
        self.on_keys: Callable[[list[str]], None] = lambda keys: None
        self.on_prefix: Callable[[str], None] = lambda prefix: None
        self.on_flush: Callable[[str], None] = lambda reason: None
        self._listening = False

    def __repr__(self) -> str:
        return f"<InvalidationBus {self.channel!r} on {self.subscriber!r}>"

    async def start(self) -> None:
        """Listen and subscribe (the subscriber must be started)."""
        if not self._listening:
            self.subscriber.listen(self.channel, self)
            self._listening = True
        await self.subscriber.subscribe(self.channel)

    async def aclose(self) -> None:
        self.subscriber.unsubscribe(self.channel)

    @property
    def connected(self) -> bool:
        return self.subscriber.connected and self.channel in self.subscriber.channels

    # -- publishing ----------------------------------------------------------------------------------

    async def keys(self, keys: Iterable[str]) -> None:
        await self._publish(KEYS + "\n".join(keys).encode())

    async def prefix(self, prefix: str) -> None:
        await self._publish(PREFIX + prefix.encode())

    async def everything(self) -> None:
        await self._publish(EVERYTHING)

    async def _publish(self, body: bytes) -> None:
        await self.client.command("PUBLISH", self.channel, self.origin + body)
        self.published += 1

    # -- drivers.redis.pubsub.Listener ---------------------------------------------------------------

    def on_message(self, channel: bytes, payload: bytes) -> None:
        if payload[:8] == self.origin or len(payload) < 9:
            return
        self.received += 1
        kind, body = payload[8:9], payload[9:]
        if kind == KEYS:
            self.on_keys(body.decode().split("\n"))
        elif kind == PREFIX:
            self.on_prefix(body.decode())
        elif kind == EVERYTHING:
            self.on_flush("invalidated")

    def on_batch(self) -> None:
        pass

    def on_lost(self) -> None:
        pass   # the flush on resubscription covers what is missed meanwhile

    def on_resubscribed(self, channels: list[str]) -> None:
        self.resubscriptions += 1
        self.on_flush("subscription")
