"""The subscription pump's rules, on a virtual clock against a scripted Redis.

Messages reach their listener straight from the read, one batch end per read; a
subscribe waits for its acknowledgement; a PING every ``health_interval_s`` and no
PONG within ``health_timeout_s`` closes the connection; the subscriber reconnects
with backoff, subscribes again in one command and tells each listener.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from drivers.errors import BackendUnavailable
from drivers.kit import State
from drivers.redis import RedisConfig, Subscriber, SubscriptionConfig
from drivers.redis.resp import encode_command
from drivers.retry import Backoff
from tests.support.fakes import ClockLoop, Peer

ADDRESS = ("127.0.0.1", 16001)


def push(channel: str, payload: str) -> bytes:
    return b"*3\r\n$7\r\nmessage\r\n" + _bulk(channel) + _bulk(payload)


def _bulk(text: str) -> bytes:
    raw = text.encode()
    return b"$%d\r\n%s\r\n" % (len(raw), raw)


class Redis(Peer):
    """Acknowledges SUBSCRIBE (one reply per channel) and answers PING, unless told to stay silent."""

    silent = False

    def on_data(self, data: bytes) -> None:
        if self.silent:
            return
        if data.startswith(b"*") and b"SUBSCRIBE" in data and b"UNSUBSCRIBE" not in data:
            parts = data.split(b"\r\n")
            channels = [p.decode() for p in parts[4::2] if p]
            self.send(b"".join(b"*3\r\n$9\r\nsubscribe\r\n" + _bulk(c) + b":1\r\n" for c in channels))
        if b"PING" in data:
            self.send(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n" * data.count(b"PING"))


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.batches = 0
        self.resubscribed: list[list[str]] = []

    def on_message(self, channel: bytes, payload: bytes) -> None:
        self.messages.append((channel, payload))

    def on_batch(self) -> None:
        self.batches += 1

    def on_lost(self) -> None:
        pass

    def on_resubscribed(self, channels: list[str]) -> None:
        self.resubscribed.append(channels)


CONFIG = RedisConfig(host=ADDRESS[0], port=ADDRESS[1], subscription=SubscriptionConfig(
    health_interval_s=5.0, health_timeout_s=3.0, reconnect=Backoff(0.05, 0.2)))


@pytest.fixture
def loop() -> Iterator[ClockLoop]:
    loop = ClockLoop()
    loop.peers[ADDRESS] = Redis
    yield loop
    loop.close()


def started(loop: ClockLoop) -> tuple[Subscriber, Inbox, Redis]:
    sub = loop.run(lambda: Subscriber(CONFIG))
    inbox = Inbox()
    sub.listen("ch:", inbox)
    loop.run(sub.start)
    loop.run(lambda: sub.subscribe("ch:a"))
    peer = loop.connections[-1].peer
    assert isinstance(peer, Redis)
    return sub, inbox, peer


def test_messages_of_one_read_reach_the_listener_then_one_batch_end(loop: ClockLoop) -> None:
    sub, inbox, peer = started(loop)
    batches = inbox.batches
    peer.send(push("ch:a", "1") + push("ch:a", "2") + push("ch:a", "3"))
    loop.settle()
    assert inbox.messages == [(b"ch:a", b"1"), (b"ch:a", b"2"), (b"ch:a", b"3")]
    assert inbox.batches == batches + 1
    assert sub.messages == 3
    loop.run(sub.aclose)


def test_a_subscribe_returns_once_redis_acknowledged_it(loop: ClockLoop) -> None:
    sub, _, peer = started(loop)
    peer.silent = True
    waiting = loop.run(lambda: asyncio.ensure_future(sub.subscribe("ch:b")))
    loop.settle()
    assert not waiting.done()
    peer.send(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nch:b\r\n:2\r\n")
    loop.settle()
    assert waiting.done() and waiting.exception() is None
    assert sub.channels == {"ch:a", "ch:b"}
    loop.run(sub.aclose)


def test_no_pong_within_the_health_timeout_closes_the_connection_and_it_comes_back(loop: ClockLoop) -> None:
    sub, inbox, peer = started(loop)
    first = loop.connections[-1]
    peer.silent = True
    loop.advance(5.0)                      # the health check's PING leaves ...
    assert not first.closed
    loop.advance(2.99)                     # ... and gets no PONG for 3 s
    assert not first.closed
    loop.advance(0.02)
    assert first.closed
    loop.advance(0.3)                      # reconnect (backoff at most 0.2 s), SUBSCRIBE again in one command
    assert len(loop.connections) == 2 and sub.connected
    fresh = loop.connections[-1].peer
    assert encode_command(["SUBSCRIBE", "ch:a"]) in bytes(fresh.received)
    assert inbox.resubscribed == [["ch:a"]]
    assert sub.stats()["reconnects"] == 1
    fresh.send(push("ch:a", "after"))
    loop.settle()
    assert inbox.messages[-1] == (b"ch:a", b"after")
    loop.run(sub.aclose)


class Broken(Inbox):
    """A listener whose every callback but ``on_message`` raises."""

    def on_batch(self) -> None:
        raise RuntimeError("batch")

    def on_lost(self) -> None:
        raise RuntimeError("lost")

    def on_resubscribed(self, channels: list[str]) -> None:
        raise RuntimeError("resubscribed")


class Lost(Inbox):
    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def on_lost(self) -> None:
        self.lost += 1


def test_a_listener_that_raises_is_logged_and_the_others_still_hear_every_event(
        loop: ClockLoop, caplog: pytest.LogCaptureFixture) -> None:
    sub = loop.run(lambda: Subscriber(CONFIG))
    broken, inbox = Broken(), Lost()
    sub.listen("a:", broken)                # the broken one comes first: the others must not depend on it
    sub.listen("b:", inbox)
    loop.run(sub.start)
    loop.run(lambda: sub.subscribe("a:1"))
    loop.run(lambda: sub.subscribe("b:1"))
    batches = inbox.batches
    loop.connections[-1].peer.send(push("a:1", "x") + push("b:1", "y"))
    loop.settle()
    assert broken.messages == [(b"a:1", b"x")] and inbox.messages == [(b"b:1", b"y")]
    assert inbox.batches == batches + 1
    loop.connections[-1].peer.hang_up()
    loop.advance(0.3)                       # reconnected and subscribed again
    assert sub.connected and inbox.lost == 1 and inbox.resubscribed == [["b:1"]]
    failed = {r.getMessage() for r in caplog.records if "callback failed" in r.getMessage()}
    assert failed == {"pub/sub batch callback failed", "pub/sub lost callback failed",
                      "pub/sub resubscribe callback failed"}
    loop.run(sub.aclose)


def test_an_idle_healthy_subscription_only_pings(loop: ClockLoop) -> None:
    sub, _, peer = started(loop)
    before = len(peer.writes)
    loop.advance(20.0)
    assert peer.received.count(b"PING") == 4 and len(peer.writes) == before + 4
    assert sub.connected and len(loop.connections) == 1
    loop.run(sub.aclose)


def test_commands_of_one_iteration_leave_in_one_write(loop: ClockLoop) -> None:
    sub, _, peer = started(loop)
    before = len(peer.writes)
    loop.run(lambda: [sub.unsubscribe(f"ch:{i}") for i in range(5)])
    loop.settle()
    assert len(peer.writes) == before + 1
    loop.run(sub.aclose)


def test_a_closed_subscriber_refuses_and_stops_reconnecting(loop: ClockLoop) -> None:
    sub, _, _ = started(loop)
    loop.run(sub.aclose)
    assert loop.connections[-1].closed
    with pytest.raises(BackendUnavailable, match="closed"):
        loop.run(lambda: sub.subscribe("ch:x"))
    loop.advance(10.0)
    assert len(loop.connections) == 1
    assert loop.connections[-1].protocol.state is State.CLOSED  # type: ignore[attr-defined]
