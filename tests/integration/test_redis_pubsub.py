"""The process's Redis subscription (drivers.redis.pubsub) against the real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis

from app.settings import Settings
from drivers.errors import BackendUnavailable, InterfaceError
from drivers.redis import RedisConfig, Subscriber, SubscriptionConfig
from drivers.retry import Backoff

PREFIX = "sub-"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.resubscribed: list[list[str]] = []
        self.events: list[str] = []   # "lost", "message", "resubscribed", in the order they came
        self.arrived = asyncio.Event()
        self.sub: Subscriber

    def on_message(self, channel: bytes, payload: bytes) -> None:
        self.messages.append((channel, payload))
        self.events.append("message")
        self.arrived.set()

    def on_lost(self) -> None:
        self.events.append("lost")

    def on_batch(self) -> None:
        pass

    def on_resubscribed(self, channels: list[str]) -> None:
        self.resubscribed.append(channels)
        self.events.append("resubscribed")

    async def wait_for(self, n: int, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def plain(settings: Settings) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis(host=settings.redis.host, port=settings.redis.port)
    yield client
    await client.aclose()


@pytest.fixture
async def inbox(settings: Settings) -> AsyncIterator[Inbox]:
    """An inbox fed by a started subscriber (``inbox.sub``), listening to ``sub-*``, with quick reconnects."""
    box = Inbox()
    quick = SubscriptionConfig(reconnect=Backoff(0.01, 0.1))
    box.sub = Subscriber(dataclasses.replace(settings.redis, subscription=quick))
    box.sub.listen(PREFIX, box)
    await box.sub.start()
    yield box
    await box.sub.aclose()


async def test_after_subscribe_returns_every_publish_arrives_in_order(inbox: Inbox, plain: aredis.Redis) -> None:
    sub, channel = inbox.sub, f"{PREFIX}{uuid.uuid4().hex}"
    await sub.subscribe(channel)
    for i in range(100):
        assert await plain.publish(channel, str(i)) == 1
    await inbox.wait_for(100)
    assert inbox.messages == [(channel.encode(), str(i).encode()) for i in range(100)]
    sub.unsubscribe(channel)
    await sub.barrier()
    assert await plain.publish(channel, "gone") == 0


async def test_a_killed_connection_comes_back_subscribed(inbox: Inbox, plain: aredis.Redis) -> None:
    sub, channel = inbox.sub, f"{PREFIX}{uuid.uuid4().hex}"
    await sub.subscribe(channel)
    killed = await plain.client_kill_filter(_type="pubsub", skipme=True)
    assert killed >= 1
    deadline = time.monotonic() + 10
    while not inbox.resubscribed and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert channel in inbox.resubscribed[0]
    assert sub.stats()["reconnects"] == 1
    assert sub.stats()["connected"] is True
    assert await plain.publish(channel, "back") == 1
    await inbox.wait_for(1)
    assert inbox.messages == [(channel.encode(), b"back")]


async def test_the_listener_hears_of_the_loss_before_any_message_of_the_new_connection(
        inbox: Inbox, plain: aredis.Redis) -> None:
    """A listener that fills the gap from elsewhere (the WebSocket hub reads its streams) must hold
    back what the new connection brings before ``on_resubscribed``: ``on_lost`` comes first."""
    sub, channel = inbox.sub, f"{PREFIX}{uuid.uuid4().hex}"
    await sub.subscribe(channel)
    stop = asyncio.Event()

    async def publish() -> int:
        sent = 0
        while not stop.is_set():
            await plain.publish(channel, str(sent))
            sent += 1
        return sent

    publisher = asyncio.create_task(publish())
    await inbox.wait_for(10)
    assert await plain.client_kill_filter(_type="pubsub", skipme=True) >= 1
    deadline = time.monotonic() + 10
    while not inbox.resubscribed and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await inbox.wait_for(len(inbox.messages) + 10)   # the new connection delivers
    stop.set()
    await publisher
    events = inbox.events
    assert events.count("lost") == 1 and events.count("resubscribed") == 1, events[-20:]
    lost = events.index("lost")
    assert "message" in events[:lost] and "message" in events[lost:]
    assert lost < events.index("resubscribed")


async def test_subscribing_while_disconnected_fails_fast(settings: Settings) -> None:
    inbox = Inbox()
    sub = Subscriber(RedisConfig(host=settings.redis.host, port=1))
    sub.listen(PREFIX, inbox)
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1\b"):
        await sub.start()
    with pytest.raises(BackendUnavailable, match="reconnecting"):
        await sub.subscribe(PREFIX + "anything")
    await sub.aclose()


async def test_a_channel_nobody_listens_to_is_refused_before_anything_is_sent(inbox: Inbox,
                                                                              plain: aredis.Redis) -> None:
    other = f"other-{uuid.uuid4().hex}"
    with pytest.raises(InterfaceError, match=f"nothing listens to channel '{other}'"):
        await inbox.sub.subscribe(other)
    assert other not in inbox.sub.channels
    await inbox.sub.barrier()                             # anything sent before has been answered
    assert await plain.pubsub_numsub(other) == [(other.encode(), 0)]   # Redis never heard a SUBSCRIBE
    with pytest.raises(InterfaceError, match="overlaps"):
        inbox.sub.listen("sub-x", Inbox())


async def test_messages_go_to_the_listener_of_their_prefix_only(inbox: Inbox, plain: aredis.Redis) -> None:
    other = Inbox()
    inbox.sub.listen("other-", other)
    mine, theirs = f"{PREFIX}{uuid.uuid4().hex}", f"other-{uuid.uuid4().hex}"
    await inbox.sub.subscribe(mine)
    await inbox.sub.subscribe(theirs)
    await plain.publish(theirs, "for other")
    await plain.publish(mine, "for me")
    await inbox.wait_for(1)
    await other.wait_for(1)
    assert inbox.messages == [(mine.encode(), b"for me")]
    assert other.messages == [(theirs.encode(), b"for other")]


async def test_an_idle_subscription_uses_no_cpu(inbox: Inbox) -> None:
    await inbox.sub.subscribe(f"{PREFIX}idle-{uuid.uuid4().hex}")
    began_cpu, began = time.process_time(), time.monotonic()
    await asyncio.sleep(1.0)
    used = time.process_time() - began_cpu
    assert time.monotonic() - began >= 1.0 - 0.002   # uvloop's clock counts whole milliseconds
    assert used < 0.05, f"an idle subscription used {used:.3f} s of CPU in 1 s"
