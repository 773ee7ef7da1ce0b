"""The hub's catch-up after a lost subscription, with its two collaborators replaced (no Redis).

The hub is handed ``history`` (the streams) and ``subscriber`` (the subscription); here they are
small fakes that say what the stream holds and whether the subscription is up, so the order of
events around a reconnection can be set exactly.  ``tests/ws/test_push.py`` runs the same against
the real Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.settings import WsSettings
from app.ws.history import Replay
from app.ws.hub import Hub, _Channel
from app.ws.protocol import StreamId
from drivers.errors import BackendUnavailable

PREFIX = "ws:"


class FakeHistory:
    """A stream in memory; ``replay`` can be held until ``release`` is set."""

    def __init__(self) -> None:
        self.stream: list[int] = []
        self.release = asyncio.Event()
        self.release.set()
        self.replays = 0

    def key(self, channel: str) -> str:
        return PREFIX + channel

    async def replay(self, channel: str, since: StreamId | None) -> Replay:
        self.replays += 1
        await self.release.wait()
        after = since.ms if since is not None else -1
        entries = [(StreamId(n, 0), f"{n}-0".encode(), str(n).encode()) for n in self.stream if n > after]
        return Replay(True, StreamId(self.stream[-1], 0) if self.stream else None, True, entries)


class FakeSubscriber:
    def __init__(self) -> None:
        self.connected = True
        self.fail_next_barrier = False   # the PING went out on a connection that died under it

    def listen(self, prefix: str, listener: Any) -> None:
        pass

    async def barrier(self) -> None:
        if not self.connected or self.fail_next_barrier:
            self.fail_next_barrier = False
            raise BackendUnavailable("redis: the subscription is reconnecting", backend="redis")


class FakePeer:
    """What ``_deliver`` writes to: the message ids in the frames, in order."""

    closing = False

    def __init__(self) -> None:
        self.ids: list[int] = []

    def send(self, blob: bytes) -> bool:
        self.ids += [int(part.split(b'"id":"')[1].split(b"-")[0]) for part in blob.split(b'"type":"message"')[1:]]
        return True


def hub_with_channel(last: int) -> tuple[Hub, FakeHistory, FakeSubscriber, _Channel, FakePeer]:
    history, subscriber = FakeHistory(), FakeSubscriber()
    hub = Hub(WsSettings(key_prefix=PREFIX), history, subscriber)  # type: ignore[arg-type]
    channel = hub._channels["news"] = _Channel("news", last=StreamId(last, 0))
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    channel.subscribed = done
    peer = FakePeer()
    channel.live[peer] = None  # type: ignore[index]
    return hub, history, subscriber, channel, peer


def arrive(hub: Hub, *ids: int) -> None:
    """Messages on the (new) subscription connection: one read from Redis."""
    for n in ids:
        hub.on_message(f"{PREFIX}news".encode(), f"{n}-0 {n}".encode())
    hub.on_batch()


async def settle(hub: Hub) -> None:
    while hub._tasks:
        await asyncio.gather(*hub._tasks)


async def test_messages_that_come_before_the_resubscription_wait_for_the_gap() -> None:
    hub, history, _, _, peer = hub_with_channel(last=5)
    history.stream = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]    # 6-8 published while nobody was subscribed
    hub.on_lost()
    arrive(hub, 9, 10)          # the new connection's first messages, before on_resubscribed
    assert peer.ids == []
    hub.on_resubscribed(["news"])
    await settle(hub)
    assert peer.ids == [6, 7, 8, 9, 10]
    assert hub.counters.duplicates == 2      # 9 and 10 came both ways, and went out once


async def test_a_loss_during_the_catch_up_is_caught_up_when_the_subscription_is_back() -> None:
    hub, history, subscriber, channel, peer = hub_with_channel(last=5)
    history.stream = [6, 7]
    hub.on_lost()
    history.release.clear()
    hub.on_resubscribed(["news"])            # the catch-up starts and waits for its read
    await asyncio.sleep(0)
    assert history.replays == 1
    subscriber.connected = False             # lost again before the read came back
    hub.on_lost()
    history.stream += [8, 9]                 # published while down again
    history.release.set()
    await settle(hub)
    assert channel.backlog == [] and peer.ids == [], "the backlog went out while the subscription was down"
    subscriber.connected = True
    arrive(hub, 10)
    history.stream.append(10)
    hub.on_resubscribed(["news"])
    await settle(hub)
    assert peer.ids == [6, 7, 8, 9, 10]
    assert channel.backlog is None and not channel.catching_up


async def test_a_loss_and_return_during_the_catch_up_read_the_stream_again() -> None:
    hub, history, subscriber, _, peer = hub_with_channel(last=5)
    history.stream = [6]
    hub.on_lost()
    history.release.clear()
    hub.on_resubscribed(["news"])
    await asyncio.sleep(0)
    hub.on_lost()                            # lost and back while the read is out: by the time the
    hub.on_resubscribed(["news"])            # barrier fails, the subscription is up again
    subscriber.fail_next_barrier = True
    history.stream += [7, 8]
    history.release.set()
    await settle(hub)
    assert history.replays == 2
    assert peer.ids == [6, 7, 8]
