"""The context: one client per backend for this process, started in order, closed in reverse.

Build it inside the running event loop (after any fork); hand it to handlers
through ``initialize()``.  Nothing connects at import time.

The resources are the four backend clients and the Redis pub/sub subscription,
each a ``drivers.base.ManagedClient``; the context starts them in that order and
closes them in reverse.  The cache (``drivers.cache``) starts after them and closes
before them: its remote tier is the one ``cache.backend`` names, built on those
clients (or on a client of its own for Redis Cluster and the shards), and its
invalidations travel on the shared subscription.  Each client's call boundary reports to ``observer``
(the service connects it to Prometheus).  The WebSocket hub is not a resource:
it is handed the subscription and the pipelined Redis connection it works with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from app.settings import Settings
from app.ws.history import History
from app.ws.hub import Hub
from drivers.base import ManagedClient, Observer
from drivers.cache import Cache, InvalidationBus, RedisTier, RemoteTier
from drivers.cache.remote.cluster import RedisClusterTier
from drivers.cache.remote.ignite import IgniteTier
from drivers.cache.remote.shards import ShardedRedisTier, parse_nodes
from drivers.errors import BackendTimeout, DriverError
from drivers.ignite import Cache as IgniteCache
from drivers.ignite import Client as IgniteClient
from drivers.mongo import MongoClient
from drivers.mysql import MySQLClient
from drivers.redis import RedisClient, RedisClusterClient, Subscriber


class StartupFailed(Exception):
    """A backend could not be started; the message names it and its address."""


@dataclass
class Context:
    settings: Settings
    mysql: MySQLClient
    redis: RedisClient
    mongo: MongoClient
    ignite: IgniteClient
    subscriber: Subscriber
    hub: Hub
    cache: Cache
    started: list[ManagedClient] = field(default_factory=list)
    draining: bool = False
    in_flight: int = 0
    _caches: dict[str, IgniteCache] = field(default_factory=dict)
    _cache_started: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def build(cls, settings: Settings, observer: Observer | None = None) -> Context:
        """The clients, built without I/O from their settings sections; ``observer`` sees every backend call."""
        redis = RedisClient(settings.redis)
        subscriber = Subscriber(settings.redis)
        w = settings.ws
        hub = Hub(w, History(redis.pipe, prefix=w.key_prefix, size=w.history_size, ttl_s=w.history_ttl_s),
                  subscriber)
        ignite = IgniteClient(config=settings.ignite)
        cache = Cache(_cache_tier(settings, redis, ignite), settings.cache,
                      bus=InvalidationBus(redis, subscriber, settings.cache.invalidation_channel))
        ctx = cls(settings=settings, mysql=MySQLClient(settings.mysql), redis=redis,
                  mongo=MongoClient(settings.mongo), ignite=ignite, subscriber=subscriber, hub=hub, cache=cache)
        for resource in ctx.resources:
            resource.calls.observer = observer
        for client in _tier_clients(cache.remote):
            client.calls.observer = observer
        return ctx

    @property
    def clients(self) -> list[ManagedClient]:
        """The four backends, in start order (what ``/readyz`` pings)."""
        return [self.mysql, self.redis, self.mongo, self.ignite]

    @property
    def resources(self) -> list[ManagedClient]:
        """Everything the context starts and closes: the backends, then the subscription."""
        return [*self.clients, self.subscriber]

    # -- requests in flight --------------------------------------------------------------------

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False when ``timeout_s`` passed first."""
        if self.in_flight == 0:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def ignite_cache(self, name: str) -> IgniteCache:
        """The named Ignite cache, created on first use (once per process)."""
        cache = self._caches.get(name)
        if cache is None:
            cache = self._caches[name] = await self.ignite.get_or_create_cache(name)
        return cache

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, only: Collection[str] | None = None) -> None:
        """Start the resources in order (``only``: just those named); on failure close those started and raise.

        ``StartupFailed`` names the resource and its address.
        """
        for resource in self.resources:
            if only is not None and resource.name not in only:
                continue
            try:
                await resource.start()
            except (DriverError, TimeoutError, OSError) as exc:
                await self.aclose()
                raise StartupFailed(f"{resource.name} at {resource.address}: {_first_line(exc)}") from exc
            self.started.append(resource)
        if only is None or "cache" in only:
            try:
                await self.cache.start()
            except (DriverError, TimeoutError, OSError) as exc:
                await self.aclose()
                raise StartupFailed(f"cache ({self.cache.remote.name if self.cache.remote else 'local'}) at "
                                    f"{self.cache.address}: {_first_line(exc)}") from exc
            self._cache_started = True

    async def aclose(self) -> None:
        """Stop the hub's tasks and the cache, then close started resources in reverse order; errors are collected."""
        errors: list[BaseException] = []
        try:
            await self.hub.aclose()
        except Exception as exc:
            errors.append(exc)
        if self._cache_started:
            self._cache_started = False
            try:
                await self.cache.aclose()
            except Exception as exc:
                errors.append(exc)
        while self.started:
            resource = self.started.pop()
            try:
                await resource.aclose()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise ExceptionGroup("closing backend clients", errors)  # type: ignore[type-var]

    async def readiness(self, timeout_s: float) -> tuple[bool, dict[str, Any]]:
        """Ping every backend concurrently; (all ok, per-backend result)."""

        async def one(client: ManagedClient) -> dict[str, Any]:
            began = time.perf_counter()
            try:
                async with asyncio.timeout(timeout_s):
                    await client.ping()
            except TimeoutError as exc:
                why = str(exc) if isinstance(exc, BackendTimeout) else f"no answer within {timeout_s:g} s"
                return {"ok": False, "address": client.address, "error": why}
            except (DriverError, OSError) as exc:
                return {"ok": False, "address": client.address, "error": _first_line(exc)}
            return {"ok": True, "latency_ms": round((time.perf_counter() - began) * 1000, 3)}

        results = await asyncio.gather(*(one(c) for c in self.clients))
        report = {c.name: r for c, r in zip(self.clients, results, strict=True)}
        return all(r["ok"] for r in results), report


def _cache_tier(settings: Settings, redis: RedisClient, ignite: IgniteClient) -> RemoteTier | None:
    """The cache's remote tier that ``cache.backend`` names."""
    backend = settings.cache.backend
    if backend == "redis":
        return RedisTier(redis)
    if backend == "ignite":
        return IgniteTier(ignite, settings.cache.ignite_cache)
    if backend == "redis-cluster":
        return RedisClusterTier(RedisClusterClient(settings.redis_cluster), own=True)
    if backend == "redis-shards":
        return ShardedRedisTier(parse_nodes(settings.cache.shards, settings.redis))
    return None         # "local": the in-process tier alone


def _tier_clients(tier: RemoteTier | None) -> list[Any]:
    """The clients a remote tier owns (Redis Cluster's, the shards'): their calls are observed like the others'."""
    if isinstance(tier, RedisClusterTier):
        return [tier.client]
    if isinstance(tier, ShardedRedisTier):
        return [node.client for node in tier.nodes.values()]
    return []


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]
