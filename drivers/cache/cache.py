"""The cache: an in-process tier in front of a remote tier, with stampede, penetration and avalanche protection.

Rules of this file:
- Reads go local -> remote -> loader.  A fresh local entry is answered inline (no
  await inside, no clock read beyond one ``clock()``): that is every hot read.
- One loader per key per process (single flight): the first miss of a key is its
  flight; every other caller for that key awaits the same flight's answer, shielded,
  so one caller giving up never cancels it for the others.  The first caller reads
  the remote tier itself (no task: a remote hit costs what ``get`` costs); only when
  a load is needed does the flight become a task.  Across processes, a lease
  (``SET NX PX`` on ``<ns>:l:<key>``) lets one process load while the others serve
  the stale value or poll the remote tier for up to ``lease_wait_s`` (each poll
  also tries the lease, so a holder that died or failed is replaced at once).
  Past that wait a process loads by itself: a slow holder delays, it never blocks.
  A new holder looks at the remote tier once more before loading: the holder before
  it may have just stored the value.
- Early refresh (XFetch, Vattani et al., PVLDB 8(8) 2015): a read of a fresh value
  refreshes it in the background when ``now + delta * beta * -ln(U) >= fresh_until``
  (``delta`` is what the last load took), so hot keys are reloaded before they
  expire and no reader waits for it.  A stale local value is also answered at once
  while a flight reloads it (stale-while-revalidate, for at most ``stale_s``).
- A loader that raises caches nothing: its error reaches every caller waiting on
  that flight, and the next read tries again.  A loader's ``None`` means "not found"
  and is remembered for ``negative_ttl_s`` (penetration); an optional Bloom filter
  (``drivers.cache.bloom``) answers "not found" for keys it has never seen with no I/O.
- Every TTL is drawn from ``ttl * [1 - jitter, 1 + jitter]`` (avalanche); the remote
  copy lives ``stale_s`` longer than its TTL so it can be served stale.
- The remote tier sits behind a circuit breaker (``drivers.cache.breaker``).  Reads
  through ``get_or_load`` never fail because the remote tier is down: they go to the
  local tier (stale entries included) and the loader, still one per key.  Explicit
  writes (``set``, ``delete``, ``invalidate*``) do fail then, with the tier's typed
  error (``BackendUnavailable`` backend=<tier>), because what they promise (every
  process sees it) did not happen; the local tier has been changed already.
- Writes and deletes publish an invalidation (``drivers.cache.invalidation``) after the
  remote tier has changed; a flight that was loading a key when it was invalidated
  answers its waiters but does not store its (maybe older) value locally.
- Keys are checked (``drivers.cache.keys``) and values encoded (``drivers.cache.codec``)
  before any I/O; both refuse with ``InterfaceError``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from drivers.cache.breaker import Breaker, BreakerState
from drivers.cache.codec import Codec, Corrupt, Envelope
from drivers.cache.config import CacheConfig
from drivers.cache.invalidation import InvalidationBus
from drivers.cache.keys import Layout, check_key
from drivers.cache.local import Entry, LocalTier
from drivers.cache.remote.base import RemoteTier
from drivers.errors import BackendTimeout, BackendUnavailable, DriverError, InterfaceError

log = logging.getLogger("drivers.cache")

T = TypeVar("T")
P = ParamSpec("P")
Loader = Callable[[], Awaitable[Any]]


class Bloom(Protocol):
    """A filter of the keys that exist (``drivers.cache.bloom``): False means certainly absent."""

    def might_contain(self, key: str) -> Any:
        """A bool, or an awaitable of one (a filter shared through Redis)."""

_FAILED: Any = object()          # a remote call that failed (the breaker has been told)
_log = math.log


_UNREAD: Any = object()          # a flight that has not read the remote tier yet


class Flight:
    """One load of one key in this process.

    ``done`` is what every caller for the key awaits (shielded): the load's task itself, or a
    future the task answers when the first caller read the remote tier inline.  ``dirty``: the
    key was invalidated meanwhile.  ``early_until``: for an early refresh, the expiry of the
    value it refreshes (0: not one).  ``refresh_after``: an early refresh to start as it ends.
    """

    __slots__ = ("dirty", "done", "early_until", "refresh_after")

    def __init__(self, done: asyncio.Future[Any] | None = None, early_until: float = 0.0) -> None:
        self.dirty = False
        self.done: asyncio.Future[Any] = done  # type: ignore[assignment]   # a task's flight gets it at once
        self.early_until = early_until
        self.refresh_after = 0.0


class CacheStats:
    """Counters since start; the service copies them into its metrics."""

    __slots__ = ("corrupt", "flushes", "invalidations", "lease_timeouts", "loader_calls", "loader_errors",
                 "loader_seconds", "local_hits", "remote_errors", "requests")

    def __init__(self) -> None:
        self.local_hits = 0
        # (tier, result) -> count; tier: local, remote, bloom; result: hit, miss, stale, negative, rejected.
        # Local hits are counted apart (``local_hits``): they are every hot read.
        self.requests: dict[tuple[str, str], int] = {}
        self.loader_calls = 0
        self.loader_errors = 0
        self.loader_seconds = 0.0
        self.invalidations: dict[str, int] = {}      # sent / received, by kind
        self.flushes: dict[str, int] = {}            # local tier flushed whole, by reason
        self.remote_errors = 0
        self.lease_timeouts = 0
        self.corrupt = 0

    def count(self, tier: str, result: str) -> None:
        key = (tier, result)
        self.requests[key] = self.requests.get(key, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        requests = dict(self.requests)
        requests[("local", "hit")] = requests.get(("local", "hit"), 0) + self.local_hits
        return {"requests": requests, "loader_calls": self.loader_calls, "loader_errors": self.loader_errors,
                "loader_seconds": self.loader_seconds, "invalidations": dict(self.invalidations),
                "flushes": dict(self.flushes), "remote_errors": self.remote_errors,
                "lease_timeouts": self.lease_timeouts, "corrupt": self.corrupt}


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A flight's answer may find no caller left to read it: its error is not "never retrieved"."""
    if not future.cancelled():
        future.exception()


def _bump(table: dict[str, int], key: str, n: int = 1) -> None:
    table[key] = table.get(key, 0) + n


class Cache:
    """``await cache.get_or_load(key, loader, ttl=60)``; also get/set/delete, batches, ``@cache.cached``.

    ``remote``: the shared tier (None: in-process only).  ``bus``: invalidations across
    processes (None: none; only sensible with one process).  ``clock`` gives Unix time
    and ``random`` a float in [0, 1): both injectable for tests.  One per process.
    """

    name = "cache"

    def __init__(self, remote: RemoteTier | None = None, config: CacheConfig | None = None, *,
                 bus: InvalidationBus | None = None, clock: Callable[[], float] = time.time,
                 random: Callable[[], float] = random.random) -> None:
        c = self.config = config or CacheConfig()
        if not 0 <= c.jitter < 1:
            raise InterfaceError(f"cache: jitter is a fraction in [0, 1), not {c.jitter}", backend="cache")
        self.remote = remote
        self.bus = bus
        self.clock = clock
        self._random = random
        self.local = LocalTier(c.local_max_entries, c.local_max_bytes, clock)
        self._entries = self.local.entries
        self.codec = Codec(c.codec, hmac_key=c.hmac_key, max_bytes=c.max_value_bytes)
        self.layout = Layout(c.namespace)
        self.breaker = Breaker(c.breaker)
        self.stats = CacheStats()
        self.on_load: Callable[[float, BaseException | None], None] | None = None   # each loader call
        self.address = remote.address if remote is not None else "in-process"
        self._tier = remote.name if remote is not None else "local"
        self._beta = c.early_refresh_beta if c.early_refresh else 0.0
        self._flights: dict[str, Flight] = {}
        self._background: set[asyncio.Future[Any]] = set()
        self._started = False
        if bus is not None:
            bus.on_keys = self._invalidated_keys
            bus.on_prefix = self._invalidated_prefix
            bus.on_flush = self._flush

    def __repr__(self) -> str:
        return f"<Cache {self._tier} {self.address} local={len(self.local)} breaker={self.breaker.state.name.lower()}>"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the remote tier answers and subscribe to invalidations."""
        if self.remote is not None:
            await self.remote.start()
        if self.bus is not None:
            await self.bus.start()
        self._started = True

    async def aclose(self) -> None:
        """Cancel background refreshes, stop listening, close the remote tier (idempotent)."""
        self._started = False
        tasks, self._background = self._background, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.bus is not None:
            await self.bus.aclose()
        if self.remote is not None:
            await self.remote.aclose()

    async def __aenter__(self) -> Cache:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- reads -------------------------------------------------------------------------------------

    async def get_or_load(self, key: str, loader: Loader, ttl: float | None = None, *,
                          negative_ttl: float | None = None, bloom: Bloom | None = None) -> Any:
        """The value of ``key``: from the local tier, the remote tier, or ``await loader()`` (stored for ``ttl`` s).

        ``loader`` returning None means "not found": None is answered and remembered for
        ``negative_ttl`` (default ``negative_ttl_s``).  ``bloom``: a filter of the keys that
        exist; a key it has never seen is answered None at once.
        """
        # The local tier's lookup, inlined: a fresh entry is never past its stale window.
        entry = self._entries.get(key)
        if entry is not None:
            now = self.clock()
            if now < entry.fresh_until:
                self._entries.move_to_end(key)
                if entry.negative:
                    self.stats.count("local", "negative")
                    return None
                delta = entry.delta
                if delta and now - delta * self._beta * _log(1.0 - self._random()) >= entry.fresh_until:
                    self._refresh_early(key, loader, ttl, negative_ttl, entry.fresh_until)
                self.stats.local_hits += 1
                return entry.value
            entry = self.local.get(key)     # stale (kept) or past its stale window (dropped)
        return await self._load_path(key, loader, ttl, negative_ttl, bloom, entry)

    async def _load_path(self, key: str, loader: Loader, ttl: float | None, negative_ttl: float | None,
                         bloom: Bloom | None, stale: Entry | None) -> Any:
        check_key(key, self.config.max_key_bytes)
        if bloom is not None and not await self._might_contain(bloom, key):
            self.stats.count("bloom", "rejected")
            return None
        self.stats.count("local", "stale" if stale is not None else "miss")
        flight = self._flights.get(key)
        if flight is None and stale is None and self.remote is not None:
            return await self._read_through(key, loader, ttl, negative_ttl)
        if flight is None:
            flight = self._start_flight(key, loader, ttl, negative_ttl)
        if stale is not None:
            return stale.value      # the flight reloads it meanwhile (None for a negative entry)
        return await asyncio.shield(flight.done)

    async def _read_through(self, key: str, loader: Loader, ttl: float | None, negative_ttl: float | None) -> Any:
        """The first miss of a key: read the remote tier inline, and start a load (a task) only if needed.

        Callers arriving meanwhile await the flight's future.  Most misses are remote hits, and
        this way they cost what ``get`` costs: no task, no extra turns of the loop.
        """
        flight = self._flights[key] = Flight(asyncio.get_running_loop().create_future())
        flight.done.add_done_callback(_retrieved)
        try:
            env = await self._remote_read(key)
        except BaseException:
            self._continue(key, loader, ttl, negative_ttl, flight, _UNREAD)   # the others still get an answer
            raise
        if env is not _FAILED and env is not None:
            now = self.clock()
            if now < env.fresh_until:
                if self._flights.get(key) is flight:
                    del self._flights[key]
                self._keep(key, env, now, flight)
                flight.done.set_result(env.value)
                if self._due(env, now):
                    self.stats.count("remote", "early")
                    self._refresh_early(key, loader, ttl, negative_ttl, env.fresh_until)
                return env.value
        self._continue(key, loader, ttl, negative_ttl, flight, env)
        return await asyncio.shield(flight.done)

    def _due(self, env: Envelope, now: float) -> bool:
        """XFetch: whether a read of this fresh value should refresh it early."""
        return bool(self._beta and env.delta) and \
            now - env.delta * self._beta * _log(1.0 - self._random()) >= env.fresh_until

    async def get(self, key: str, default: Any = None) -> Any:
        """The cached value of ``key`` (local, then remote), or ``default``: never loads.

        A stale value is answered only while the remote tier cannot be asked.
        """
        entry = self._entries.get(key)
        now = self.clock()
        if entry is not None:
            if now < entry.fresh_until:
                self._entries.move_to_end(key)
                self.stats.local_hits += 1
                return default if entry.negative else entry.value
            entry = self.local.get(key)
        check_key(key, self.config.max_key_bytes)
        if self.remote is None:
            self.stats.count("local", "stale" if entry is not None else "miss")
            return default
        env = await self._remote_read(key)
        if env is _FAILED:
            if entry is not None:
                self.stats.count("local", "stale")
                return default if entry.negative else entry.value
            self.stats.count("local", "miss")
            return default
        self.stats.count("local", "stale" if entry is not None else "miss")
        if env is None or env.fresh_until <= now:
            return default
        self._keep(key, env, now)
        return default if env.negative else env.value

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached values of ``keys`` that are present (local, then one remote batch): never loads."""
        found: dict[str, Any] = {}
        wanted: list[str] = []
        now = self.clock()
        max_bytes = self.config.max_key_bytes
        for key in keys:
            entry = self.local.get(key)
            if entry is not None and now < entry.fresh_until:
                self.stats.local_hits += 1
                if not entry.negative:
                    found[key] = entry.value
            else:
                wanted.append(check_key(key, max_bytes))
        if not wanted or self.remote is None or not self.breaker.allow():
            return found
        blobs = await self._remote(self.remote.get_many([self.layout.value(k) for k in wanted]))
        if blobs is _FAILED:
            return found
        for key, blob in zip(wanted, blobs, strict=True):
            env = self._decode(blob)
            if env is None or env.fresh_until <= now:
                self.stats.count("remote", "miss" if env is None else "stale")
                continue
            self.stats.count("remote", "negative" if env.negative else "hit")
            self._keep(key, env, now)
            if not env.negative:
                found[key] = env.value
        return found

    # -- writes ------------------------------------------------------------------------------------

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (None: remember "not found") everywhere; other processes drop their copy."""
        await self.set_many({key: value}, ttl)

    async def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        """Store several values: one remote batch (grouped by node), one invalidation message."""
        max_bytes = self.config.max_key_bytes
        now = self.clock()
        rows: list[tuple[str, bytes, int]] = []
        envs: list[tuple[str, Envelope]] = []
        for key, value in items.items():
            check_key(key, max_bytes)
            fresh_until = now + self._ttl(ttl)
            blob = self.codec.encode(key, value, fresh_until)
            envs.append((key, Envelope(value, fresh_until, 0.0, value is None, len(blob))))
            rows.append((self.layout.value(key), blob, self._px(fresh_until, now)))
        for key, env in envs:
            self._dirty(key)
            self._keep(key, env, now)
        if self.remote is not None and rows:
            await self._remote_write(self.remote.set_many, rows)
        await self._publish_keys([k for k, _ in envs])

    async def delete(self, key: str) -> None:
        """Remove ``key`` everywhere: this process, the remote tier, every other process's local tier."""
        await self.invalidate_many([key])

    invalidate = delete

    async def invalidate_many(self, keys: Iterable[str]) -> None:
        max_bytes = self.config.max_key_bytes
        keys = [check_key(k, max_bytes) for k in keys]
        for key in keys:
            self._dirty(key)
            self.local.discard(key)
        if self.remote is not None and keys:
            await self._remote_write(self.remote.delete_many, [self.layout.value(k) for k in keys])
        await self._publish_keys(keys)

    async def invalidate_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix`` (``""``: the whole namespace) everywhere.

        Answers how many the remote tier held.

        The remote tier walks its whole keyspace for it (SCAN on each node, a scan query on
        Ignite): meant for occasional bulk invalidation, not for every request.
        """
        if prefix:      # "": everything in the namespace
            check_key(prefix, self.config.max_key_bytes)
        self._dirty_prefix(prefix)
        self.local.discard_prefix(prefix)
        removed: int = 0
        if self.remote is not None:
            removed = await self._remote_write(self.remote.delete_prefix, self.layout.value(prefix))
        if self.bus is not None:
            await self.bus.prefix(prefix)
            _bump(self.stats.invalidations, "sent")
        return removed

    def cached(self, ttl: float | None = None, *, key: str | Callable[..., str] | None = None,
               negative_ttl: float | None = None) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
        """Decorate a coroutine function so its results go through ``get_or_load``.

        ``key``: a template formatted with the call's arguments by name (``"user:{user_id}"``), a
        function of the same arguments returning the key, or None for
        ``<module>.<qualname>:<arg>:<arg>...``.  Methods need an explicit key (``self`` has no
        stable text).
        """

        def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
            if not inspect.iscoroutinefunction(fn):
                raise InterfaceError(f"cache: @cached decorates coroutine functions, not {fn!r}", backend="cache")
            signature = inspect.signature(fn)
            template = key if key is not None else (
                f"{fn.__module__}.{fn.__qualname__}:" + ":".join(f"{{{p}}}" for p in signature.parameters))

            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                if callable(template):
                    name = template(*args, **kwargs)
                else:
                    bound = signature.bind(*args, **kwargs)
                    bound.apply_defaults()
                    name = template.format_map(bound.arguments)
                value: T = await self.get_or_load(name, lambda: fn(*args, **kwargs), ttl,
                                                  negative_ttl=negative_ttl)
                return value

            return wrapper

        return decorate

    # -- flights -----------------------------------------------------------------------------------

    def _start_flight(self, key: str, loader: Loader, ttl: float | None, negative_ttl: float | None,
                      early_until: float = 0.0) -> Flight:
        """A flight whose task is its answer: it reads the remote tier itself."""
        flight = self._flights[key] = Flight(early_until=early_until)
        task = flight.done = asyncio.ensure_future(self._fill(key, loader, ttl, negative_ttl, flight, _UNREAD))
        task.add_done_callback(functools.partial(self._landed, key, flight))
        return flight

    def _continue(self, key: str, loader: Loader, ttl: float | None, negative_ttl: float | None, flight: Flight,
                  read: Any) -> None:
        """The load of a flight that began inline: a task that answers the flight's future."""
        task = asyncio.ensure_future(self._fill(key, loader, ttl, negative_ttl, flight, read))
        task.add_done_callback(functools.partial(self._landed, key, flight))

    def _landed(self, key: str, flight: Flight, task: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is flight:      # cancelled before it ran: _fill never started
            del self._flights[key]
        done = flight.done
        if task.cancelled():
            if done is not task and not done.done():
                done.cancel()
            return
        exc = task.exception()
        if done is not task and not done.done():
            if exc is None:
                done.set_result(task.result())
            else:
                done.set_exception(exc)
        if exc is not None and not isinstance(exc, DriverError):
            log.debug("cache: loading %r failed: %r", key, exc)

    def _refresh_early(self, key: str, loader: Loader, ttl: float | None, negative_ttl: float | None,
                       until: float) -> None:
        if key in self._flights or (self.remote is not None and not self._started):
            return
        flight = self._start_flight(key, loader, ttl, negative_ttl, early_until=until)
        task = flight.done
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _fill(self, key: str, loader: Loader, ttl: float | None, negative_ttl: float | None,
                    flight: Flight, read: Any) -> Any:
        """One flight's task: the remote tier (unless ``read`` is what it held), the lease, the loader.

        It leaves the table of flights as it ends (not in a callback after it): a caller
        arriving later, say after a delete, must start a flight of its own.  A value found due
        for early refresh is refreshed after that.
        """
        try:
            return await self._fly(key, loader, ttl, negative_ttl, flight, read)
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if flight.refresh_after:
                self._refresh_early(key, loader, ttl, negative_ttl, flight.refresh_after)

    async def _fly(self, key: str, loader: Loader, ttl: float | None, negative_ttl: float | None,
                   flight: Flight, read: Any) -> Any:
        # Each remote call asks the breaker right before it is made, once: in HALF_OPEN only the
        # first ask is granted (the probe), so asking twice for one call would never probe.
        remote = self.remote
        usable = remote is not None
        early = flight.early_until > 0
        stale: Envelope | None = None
        if usable and not early:
            env = await self._remote_read(key) if read is _UNREAD else read
            if env is _FAILED:
                usable = False
            elif env is not None:
                now = self.clock()
                if now < env.fresh_until:
                    self._keep(key, env, now, flight)
                    if self._due(env, now):
                        self.stats.count("remote", "early")
                        flight.refresh_after = env.fresh_until
                    return env.value
                stale = env
        if usable:
            assert remote is not None
            lease_key = self.layout.lease(key)
            token = os.urandom(16)
            lease_ms = max(1, int(self.config.lease_s * 1000))
            deadline = time.monotonic() + self.config.lease_wait_s
            delay = 0.002
            while True:
                got = await self._remote(remote.acquire(lease_key, token, lease_ms)) if self.breaker.allow() \
                    else _FAILED
                if got is _FAILED:
                    break                   # the remote tier failed: load here, keep it local
                if got:
                    try:
                        # One more look first: a holder just before us may have stored it meanwhile.
                        env = await self._remote_read(key, count=False)
                        if env is not _FAILED and env is not None:
                            now = self.clock()
                            if now < env.fresh_until and env.fresh_until > flight.early_until:
                                self._keep(key, env, now, flight)
                                return env.value
                        return await self._load(key, loader, ttl, negative_ttl, flight, True)
                    finally:
                        if self.breaker.allow():
                            await self._remote(remote.release(lease_key, token))
                if early:                   # another process refreshes it: stop asking until it expires
                    entry = self._entries.get(key)
                    if entry is not None and entry.fresh_until == flight.early_until:
                        entry.delta = 0.0
                if stale is not None:       # another process reloads it: serve what we have
                    self.stats.count("remote", "stale")
                    self._keep(key, stale, self.clock(), flight)
                    return stale.value
                if time.monotonic() >= deadline:
                    self.stats.lease_timeouts += 1
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
                env = await self._remote_read(key)
                if env is _FAILED:
                    break
                if env is not None:
                    now = self.clock()
                    if now < env.fresh_until:
                        self._keep(key, env, now, flight)
                        return env.value
            return await self._load(key, loader, ttl, negative_ttl, flight, True)
        return await self._load(key, loader, ttl, negative_ttl, flight, False)

    async def _load(self, key: str, loader: Loader, ttl: float | None, negative_ttl: float | None,
                    flight: Flight, store_remote: bool) -> Any:
        stats = self.stats
        stats.loader_calls += 1
        began = time.perf_counter()
        try:
            value = await loader()
        except BaseException as exc:
            took = time.perf_counter() - began
            stats.loader_seconds += took
            if not isinstance(exc, asyncio.CancelledError):
                stats.loader_errors += 1
            if self.on_load is not None:
                self.on_load(took, exc)
            raise
        took = time.perf_counter() - began
        stats.loader_seconds += took
        if self.on_load is not None:
            self.on_load(took, None)
        now = self.clock()
        if value is None:
            life = self._ttl(negative_ttl if negative_ttl is not None else self.config.negative_ttl_s)
        else:
            life = self._ttl(ttl)
        fresh_until = now + life
        blob = self.codec.encode(key, value, fresh_until, took)
        self._keep(key, Envelope(value, fresh_until, took, value is None, len(blob)), now, flight)
        # Invalidated while loading: what was loaded may predate the change, so it is not shared.
        if store_remote and not flight.dirty and self.remote is not None and self.breaker.allow():
            await self._remote(self.remote.set_many([(self.layout.value(key), blob, self._px(fresh_until, now))]))
        return value

    # -- remote tier -------------------------------------------------------------------------------

    async def _remote(self, call: Awaitable[T]) -> T:
        """``await call``, telling the breaker how it went; ``_FAILED`` instead of raising."""
        try:
            result = await call
        except DriverError as exc:
            self._remote_failed(exc)
            return _FAILED  # type: ignore[no-any-return]
        self.breaker.success()
        return result

    def _remote_failed(self, exc: DriverError) -> None:
        """A remote call raised: unreachable or too slow counts against the breaker; any other error
        was an answer (the tier is up)."""
        self.stats.remote_errors += 1
        if isinstance(exc, (BackendUnavailable, BackendTimeout)):
            self.breaker.failure()
            log.debug("cache: remote tier %s failed: %s", self._tier, exc)
        else:
            self.breaker.success()
            log.warning("cache: remote tier %s refused a command: %s", self._tier, exc)

    async def _remote_read(self, key: str, count: bool = True) -> Any:
        """The remote envelope of ``key``, None when absent (or corrupt), ``_FAILED`` when it cannot be asked."""
        remote = self.remote
        if remote is None or not self.breaker.allow():
            return _FAILED
        blob = await self._remote(remote.get(self.layout.value(key)))
        if blob is _FAILED:
            return _FAILED
        env = self._decode(blob)
        if not count:
            return env
        if env is None:
            self.stats.count("remote", "miss")
        else:
            self.stats.count("remote", "negative" if env.negative else "hit")
        return env

    async def _remote_write(self, method: Callable[[Any], Awaitable[T]], arg: Any) -> T:
        """A write the caller must hear about: the breaker is told, and failures raise."""
        remote = self.remote
        assert remote is not None
        if not self.breaker.allow():
            raise BackendUnavailable(f"cache: the {remote.name} tier at {remote.address} is unavailable (circuit "
                                     "open after repeated failures); the local tier was changed, the remote one "
                                     "was not", backend=remote.name)
        try:
            result = await method(arg)
        except DriverError as exc:
            self._remote_failed(exc)
            raise
        self.breaker.success()
        return result

    async def _publish_keys(self, keys: list[str]) -> None:
        if self.bus is not None and keys:
            await self.bus.keys(keys)
            _bump(self.stats.invalidations, "sent")

    def _decode(self, blob: bytes | None) -> Envelope | None:
        if blob is None:
            return None
        try:
            return self.codec.decode(blob)
        except Corrupt as exc:
            self.stats.corrupt += 1
            log.warning("cache: a remote value was refused (%s); treated as a miss", exc)
            return None

    @staticmethod
    async def _might_contain(bloom: Bloom, key: str) -> bool:
        try:
            answer = bloom.might_contain(key)
            return await answer if inspect.isawaitable(answer) else bool(answer)
        except DriverError:
            return True     # a filter that cannot be asked lets the key through

    # -- the local tier ----------------------------------------------------------------------------

    def _keep(self, key: str, env: Envelope, now: float, flight: Flight | None = None) -> None:
        """Put ``env`` in the local tier, unless the key was invalidated while ``flight`` loaded it."""
        if flight is not None and flight.dirty:
            return
        fresh_until = min(env.fresh_until, now + self.config.local_ttl_s)
        self.local.put(key, Entry(env.value, fresh_until, env.fresh_until + self.config.stale_s, env.delta,
                                  env.negative, env.size))

    def _dirty(self, key: str) -> None:
        """``key`` changed: a flight loading it keeps its value to itself, and later callers start anew."""
        flight = self._flights.pop(key, None)
        if flight is not None:
            flight.dirty = True

    def _dirty_prefix(self, prefix: str) -> None:
        for key in [k for k in self._flights if k.startswith(prefix)]:
            self._dirty(key)

    def _invalidated_keys(self, keys: list[str]) -> None:
        _bump(self.stats.invalidations, "received")
        for key in keys:
            self._dirty(key)
            self.local.discard(key)

    def _invalidated_prefix(self, prefix: str) -> None:
        _bump(self.stats.invalidations, "received")
        self._dirty_prefix(prefix)
        self.local.discard_prefix(prefix)

    def _flush(self, reason: str) -> None:
        flights, self._flights = self._flights, {}
        for flight in flights.values():
            flight.dirty = True
        self.local.clear()
        _bump(self.stats.flushes, reason)

    # -- TTLs --------------------------------------------------------------------------------------

    def _ttl(self, ttl: float | None) -> float:
        """``ttl`` (or the default) with jitter applied."""
        base = self.config.ttl_s if ttl is None else ttl
        if not base > 0:
            raise InterfaceError(f"cache: a TTL is a number of seconds > 0, not {ttl!r}", backend="cache")
        jitter = self.config.jitter
        return base * (1.0 + jitter * (2.0 * self._random() - 1.0)) if jitter else base

    def _px(self, fresh_until: float, now: float) -> int:
        """The remote copy's life in milliseconds: its TTL and the stale window after it."""
        return max(1, int((fresh_until - now + self.config.stale_s) * 1000))

    # -- introspection -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counters and gauges for metrics: requests by (tier, result), loader calls, breaker, local size."""
        out = self.stats.snapshot()
        out.update(tier=self._tier, breaker=self.breaker.state.name.lower(),
                   breaker_state=int(self.breaker.state), breaker_opened=self.breaker.opened,
                   local_entries=len(self.local), local_bytes=self.local.bytes, local_evictions=self.local.evictions,
                   flights=len(self._flights),
                   subscribed=self.bus.connected if self.bus is not None else None)
        return out


__all__ = ["BreakerState", "Cache", "CacheStats"]
