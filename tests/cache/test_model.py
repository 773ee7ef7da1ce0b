"""The cache against a model: a dict of values with expiry times, under a fake clock.

Hypothesis drives random sequences of set / get / get_or_load / get_many / delete /
invalidate_prefix / clock advances, and every answer must be the model's.  Two
machines: the local tier alone, and the local tier (3 entries, so most reads go on
to the remote tier) in front of the real Redis of the stack.

Settings the model needs, and why: ``jitter=0`` (the model's expiry is exact),
``stale_s=0`` (no stale-while-revalidate: an expired value is gone), and
``early_refresh=False`` (XFetch refreshes at random in the background).  Those three
have tests of their own (tests/cache/test_protection.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from app.settings import Settings
from drivers.cache import Cache, CacheConfig, RedisTier
from drivers.redis import RedisClient

KEYS = st.sampled_from(["a", "b", "c", "d:1", "d:2", "{t}x"])
VALUES = st.one_of(st.none(), st.integers(-5, 5), st.text("xyz", max_size=3), st.lists(st.integers(0, 3), max_size=2))
TTLS = st.sampled_from([1, 2, 5])
DEFAULT_TTL = 3


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class CacheMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    redis: RedisClient | None = None

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.model: dict[str, tuple[Any, float]] = {}
        remote = RedisTier(self.redis) if self.redis is not None else None
        config = CacheConfig(namespace=f"model-{uuid.uuid4().hex[:8]}", jitter=0.0, stale_s=0.0, early_refresh=False,
                             ttl_s=DEFAULT_TTL, negative_ttl_s=DEFAULT_TTL,
                             local_max_entries=3 if remote is not None else 1000, local_ttl_s=100.0)
        self.cache = Cache(remote, config, clock=self.clock)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def fresh(self, key: str) -> tuple[bool, Any]:
        if key in self.model:
            value, expires = self.model[key]
            if self.clock.now < expires:
                return True, value
        return False, None

    @initialize()
    def started(self) -> None:
        self.cache._started = True

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def set(self, key: str, value: Any, ttl: int) -> None:
        self.run(self.cache.set(key, value, ttl))
        self.model[key] = (value, self.clock.now + ttl)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        _, want = self.fresh(key)
        assert self.run(self.cache.get(key, default=None)) == want

    @rule(keys=st.lists(KEYS, max_size=4, unique=True))
    def get_many(self, keys: list[str]) -> None:
        want = {}
        for key in keys:
            ok, value = self.fresh(key)
            if ok and value is not None:
                want[key] = value
        assert self.run(self.cache.get_many(keys)) == want

    @rule(key=KEYS, value=VALUES)
    def get_or_load(self, key: str, value: Any) -> None:
        calls = []

        async def loader() -> Any:
            calls.append(1)
            return value

        ok, want = self.fresh(key)
        got = self.run(self.cache.get_or_load(key, loader))
        if ok:
            assert got == want and not calls, "a fresh value was loaded again"
        else:
            assert got == value and calls == [1]
            self.model[key] = (value, self.clock.now + DEFAULT_TTL)

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self.run(self.cache.delete(key))
        self.model.pop(key, None)

    @rule()
    def invalidate_prefix(self) -> None:
        self.run(self.cache.invalidate_prefix("d:"))
        for key in [k for k in self.model if k.startswith("d:")]:
            del self.model[key]

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 4.0]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def local_tier_within_bounds(self) -> None:
        local = self.cache.local
        assert len(local) <= local.max_entries and local.bytes == sum(e.size for e in local.entries.values())


MACHINE_SETTINGS = settings(max_examples=50, stateful_step_count=30, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])


def test_the_local_tier_alone_behaves_like_the_model() -> None:
    loop = uvloop.new_event_loop()
    try:
        LocalMachine = type("LocalMachine", (CacheMachine,), {"loop": loop, "redis": None})
        LocalMachine.TestCase.settings = MACHINE_SETTINGS
        LocalMachine.TestCase().runTest()
    finally:
        loop.close()


def test_local_and_redis_tiers_behave_like_the_model(settings: Settings) -> None:
    loop = uvloop.new_event_loop()
    redis = RedisClient(settings.redis)
    try:
        loop.run_until_complete(redis.start())
        RedisMachine = type("RedisMachine", (CacheMachine,), {"loop": loop, "redis": redis})
        RedisMachine.TestCase.settings = MACHINE_SETTINGS
        RedisMachine.TestCase().runTest()
    finally:
        loop.run_until_complete(redis.aclose())
        loop.close()


@pytest.fixture(autouse=True)
def _no_running_loop() -> None:
    """These tests drive loops of their own: none may be running in this thread."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
