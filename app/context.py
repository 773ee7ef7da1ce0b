"""The context: one client per backend for this process, started in order, closed in reverse.

Build it inside the running event loop (after any fork); hand it to handlers
through ``initialize()``.  Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from app.settings import Settings
from app.ws.hub import Hub
from drivers.base import ManagedClient
from drivers.errors import BackendTimeout, DriverError
from drivers.ignite import Client as IgniteClient
from drivers.ignite.cache import Cache
from drivers.mongo import MongoClient
from drivers.mysql import MySQLClient
from drivers.redis import RedisClient


class StartupFailed(Exception):
    """A backend could not be started; the message names it and its address."""


@dataclass
class Context:
    settings: Settings
    mysql: MySQLClient
    redis: RedisClient
    mongo: MongoClient
    ignite: IgniteClient
    hub: Hub
    started: list[ManagedClient] = field(default_factory=list)
    draining: bool = False
    hub_started: bool = False
    in_flight: int = 0
    _caches: dict[str, Cache] = field(default_factory=dict)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is in flight; False when ``timeout`` passed first."""
        if self.in_flight == 0:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    @classmethod
    def build(cls, settings: Settings) -> Context:
        m, r, g, i = settings.mysql, settings.redis, settings.mongo, settings.ignite
        redis = RedisClient(host=r.host, port=r.port, db=r.db, password=r.password, pool_max=r.pool_max,
                            pool_wait_timeout_s=r.pool_wait_timeout_s, connect_timeout_s=r.connect_timeout_s,
                            socket_timeout_s=r.socket_timeout_s, read_retries=r.read_retries)
        return cls(
            settings=settings,
            mysql=MySQLClient(host=m.host, port=m.port, user=m.user, password=m.password, database=m.database,
                              pool_min=m.pool_min, pool_max=m.pool_max, pool_recycle_s=m.pool_recycle_s,
                              connect_timeout_s=m.connect_timeout_s, query_timeout_s=m.query_timeout_s),
            redis=redis,
            mongo=MongoClient(host=g.host, port=g.port, database=g.database, pool_max=g.pool_max,
                              server_selection_timeout_s=g.server_selection_timeout_s,
                              connect_timeout_s=g.connect_timeout_s, socket_timeout_s=g.socket_timeout_s),
            ignite=IgniteClient(i.nodes, username=i.username, password=i.password,
                                timeout=i.request_timeout_s, connect_timeout=i.connect_timeout_s),
            hub=Hub(settings.ws, r, redis.pipe),
        )

    async def ignite_cache(self, name: str) -> Cache:
        """The named Ignite cache, created on first use (once per process)."""
        cache = self._caches.get(name)
        if cache is None:
            cache = self._caches[name] = await self.ignite.get_or_create_cache(name)
        return cache

    @property
    def clients(self) -> list[ManagedClient]:
        return [self.mysql, self.redis, self.mongo, self.ignite]

    async def start(self) -> None:
        """Start every client in order; on failure close those started and raise StartupFailed."""
        for client in self.clients:
            try:
                await client.start()
            except (DriverError, TimeoutError, OSError) as exc:
                await self.aclose()
                address = getattr(client, "address", "?")
                raise StartupFailed(f"{client.name} at {address}: {_first_line(exc)}") from exc
            self.started.append(client)
        try:
            await self.hub.start()
        except (DriverError, TimeoutError, OSError) as exc:
            await self.aclose()
            raise StartupFailed(f"redis subscription at {self.redis.address}: {_first_line(exc)}") from exc
        self.hub_started = True

    async def aclose(self) -> None:
        """Close the hub's subscription, then started clients in reverse order; errors are collected."""
        errors: list[BaseException] = []
        if self.hub_started:
            self.hub_started = False
            try:
                await self.hub.aclose()
            except Exception as exc:
                errors.append(exc)
        while self.started:
            client = self.started.pop()
            try:
                await client.aclose()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise ExceptionGroup("closing backend clients", errors)  # type: ignore[type-var]

    async def readiness(self, timeout: float) -> tuple[bool, dict[str, Any]]:
        """Ping every backend concurrently; (all ok, per-backend result)."""

        async def one(client: ManagedClient) -> dict[str, Any]:
            began = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    await client.ping()
            except TimeoutError as exc:
                why = str(exc) if isinstance(exc, BackendTimeout) else f"no answer within {timeout:g} s"
                return {"ok": False, "address": getattr(client, "address", "?"), "error": why}
            except (DriverError, OSError) as exc:
                return {"ok": False, "address": getattr(client, "address", "?"), "error": _first_line(exc)}
            return {"ok": True, "latency_ms": round((time.perf_counter() - began) * 1000, 3)}

        results = await asyncio.gather(*(one(c) for c in self.clients))
        report = {c.name: r for c, r in zip(self.clients, results, strict=True)}
        return all(r["ok"] for r in results), report


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]
