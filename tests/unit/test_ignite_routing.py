"""The router's partition-map rules, with the nodes' replies scripted (no sockets, no cluster).

The connection is a stand-in that answers op 1101 with the parsed replies the test gives, in
order; everything else is the real ``Router``.  The behaviour on a real cluster is in
``tests/ignite/cluster/test_partition_awareness.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from drivers.ignite import IgniteConfig, routing
from drivers.ignite.protocol.messages import CacheKeyMapping, CachePartitions, PartitionGroup
from drivers.kit import State

CACHE = 1234
NODE = uuid.uuid4()


class Replies:
    """A ready connection whose op 1101 answers are ``replies``, in order (the last one repeats)."""

    state = State.READY
    features = b""

    def __init__(self, replies: list[CachePartitions]) -> None:
        self.replies = replies
        self.asked = 0

    async def request(self, buf: bytearray) -> Any:
        self.asked += 1
        reply = self.replies[min(self.asked, len(self.replies)) - 1]
        return SimpleNamespace(frame=reply, header=SimpleNamespace(payload_offset=0))

    async def aclose(self) -> None:
        pass


def absent() -> CachePartitions:
    """A reply that does not list the cache at all (the node does not know it yet)."""
    return CachePartitions((7, 1), ())


def listed(applicable: bool = True) -> CachePartitions:
    group = PartitionGroup(applicable, (CacheKeyMapping(CACHE, ()),), {NODE: (0, 1, 2, 3)} if applicable else {},
                           True)
    return CachePartitions((7, 1), (group,))


def router_over(conn: Replies, monkeypatch: pytest.MonkeyPatch) -> routing.Router:
    monkeypatch.setattr(routing, "decode_cache_partitions", lambda frame, offset, features: frame)
    router = routing.Router(IgniteConfig(nodes=(("127.0.0.1", 1), ("127.0.0.1", 2))))
    for node in router.nodes:
        node.conn = conn  # type: ignore[assignment]
    return router


async def _map_within(router: routing.Router, seconds: float) -> bool:
    async with asyncio.timeout(seconds):
        while router.map_for(CACHE) is None:
            await asyncio.sleep(0.005)
    return True


async def test_a_cache_the_node_does_not_list_yet_is_asked_for_again_until_it_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    conn = Replies([absent(), absent(), listed()])
    router = router_over(conn, monkeypatch)
    try:
        assert await _map_within(router, 2.0)        # after 0.1 s and 0.2 s: no topology change needed
        pmap = router.map_for(CACHE)
        assert pmap is not None and set(pmap.primaries) == {NODE}
        assert conn.asked == 3
    finally:
        await router.aclose()


async def test_a_cache_listed_as_not_applicable_is_not_asked_for_again(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = Replies([listed(applicable=False)])
    router = router_over(conn, monkeypatch)
    try:
        assert router.map_for(CACHE) is None
        await asyncio.sleep(0.5)
        assert router.map_for(CACHE) is None and conn.asked == 1
    finally:
        await router.aclose()


async def test_asking_again_stops_after_absent_tries_and_aclose_cancels_what_is_left(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "ABSENT_DELAY_S", 0.001)   # the doubling delays, shortened: 2-32 ms
    conn = Replies([absent()])
    router = router_over(conn, monkeypatch)
    assert router.map_for(CACHE) is None
    await asyncio.sleep(0.5)
    assert conn.asked == 1 + routing.ABSENT_TRIES and router.map_for(CACHE) is None
    await router.aclose()

    again = router_over(Replies([absent()]), monkeypatch)
    monkeypatch.setattr(routing, "ABSENT_DELAY_S", 10.0)
    again.map_for(CACHE)
    await asyncio.sleep(0.05)
    assert again._later_timer is not None
    await again.aclose()
    assert again._later_timer is None


async def test_a_cache_that_had_a_map_and_is_left_out_later_was_destroyed_and_is_not_asked_for_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "ABSENT_DELAY_S", 0.001)
    conn = Replies([listed(), absent()])
    router = router_over(conn, monkeypatch)
    try:
        assert await _map_within(router, 1.0)
        router.refresh_all()                     # as after a topology change
        await asyncio.sleep(0.3)
        assert router.map_for(CACHE) is None and conn.asked == 2
    finally:
        await router.aclose()


async def test_a_cache_this_client_destroys_is_forgotten_and_not_asked_for_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "ABSENT_DELAY_S", 0.01)
    conn = Replies([absent()])
    router = router_over(conn, monkeypatch)
    try:
        router.map_for(CACHE)
        await asyncio.sleep(0.005)               # the first reply is in; the next ask is due in 20 ms
        assert conn.asked == 1
        router.forget(CACHE)
        await asyncio.sleep(0.3)
        assert conn.asked == 1 and CACHE not in router.maps
    finally:
        await router.aclose()


async def test_a_map_that_came_by_another_refresh_is_not_asked_for_again_when_the_timer_fires(
        monkeypatch: pytest.MonkeyPatch) -> None:
    conn = Replies([absent(), listed()])
    router = router_over(conn, monkeypatch)
    try:
        router.map_for(CACHE)
        await asyncio.sleep(0.01)                # left out: asked for again in 0.1 s ...
        router.refresh_all()                     # ... but a topology change refreshes it first
        assert await _map_within(router, 0.08)
        await asyncio.sleep(0.3)
        assert conn.asked == 2
    finally:
        await router.aclose()
