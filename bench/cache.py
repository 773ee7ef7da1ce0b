"""The cache, measured: ``drivers.cache`` against cashews and aiocache on the same Redis, in one process.

    .venv/bin/python -m bench.cache [--address 127.0.0.1:16379] [--rounds 5] [--seconds 0.25]
                                    [--cold-rounds 3] [--hot-rounds 3] [--hot-seconds 3] [--out DIR]
    .venv/bin/python -m bench.cache --quick

A full run takes about 100 s on this project's 2-CPU machine; ``--quick`` (2 rounds of 0.08 s, one cold
round, one 1.2 s hot round) about 25 s.  Ratios are ours / theirs: below 1, ours spends less.

Rules of this file:
- One process on uvloop (the two-process stampede excepted), one Redis, the same value (a small
  dict, about 100 bytes as JSON) and the same keys for every library (``item:0`` .. ``item:63``,
  ``cold:<round>``, ``hot:<round>``), each library under a namespace of its own that names this run
  (``bench-cache-<pid>-<hex>:<library>``).  Every Redis key the run wrote contains the run's name and
  is deleted at the end (SCAN + UNLINK), whatever happened.
- Rounds alternate over every contender, the order rotating each round: the machine drifts by up
  to 40% between runs, so only numbers taken side by side are compared.  A table shows the median
  over rounds; a ratio is the median of the ratios taken within each round.
- Hit path: CPU per get is ``time.process_time()`` over a run divided by the gets it did (the
  Redis server's own CPU is not counted).  Local hits: one task doing sequential gets (a local hit
  never suspends, so more tasks would change nothing).  Remote hits: one task doing sequential
  gets, and 64 tasks each doing sequential gets of a key of its own (``item:<task>``: single flight
  cannot merge them).  Every contender's answer is checked to be the value, and ours are checked to
  be hits (no loader call; the local or remote hit counter moved).  Two floors frame them: an
  ``await`` of a coroutine that returns at once, and a bare GET of bytes (ours, redis-py).
- Connections: ours are one pipelined connection per process (``drivers.redis``).  cashews and
  aiocache use redis-py pools; both get a ``BlockingConnectionPool`` of 64, the number of tasks,
  so no task ever waits for a connection (cashews' default: the same class with 10; aiocache's
  default ``ConnectionPool`` caps at 100 in redis-py 8 and raises "Too many connections" under a
  stampede of 1,000).  The tables say how many each opened.
- Serializers are each library's default, plus the cheap alternatives: cashews ``pickle_type=json``
  (cashews pickles by default, and ``repr()``s every value it reads back: ``check_repr``), and
  aiocache with ``timeout=None`` (by default each call runs under ``asyncio.wait_for``, 5 s).
- Stampede: the loader is ``await asyncio.sleep(0.05)`` then the value, and counts its calls.  Cold:
  1,000 concurrent requests for one key nobody has (TTL 60 s).  Hot: the key (TTL 1 s) is loaded
  once, then for ``--hot-seconds`` a wave of 1,000 concurrent requests leaves every 100 ms (the next
  at once if a wave took longer).  A request's latency counts from the start of its wave, so it
  includes waiting for the CPU behind the wave's other requests.  A request that raised is counted
  as an error, not timed.  cashews runs on Redis without ``client_side``, ``@cache.early`` and
  ``@cache(lock=True)`` with their defaults; aiocache is ``@cached_stampede`` on ``RedisCache``
  (lease 2 s); ours is ``get_or_load`` with the default ``CacheConfig`` (local tier, single flight,
  lease, XFetch).  Ours also runs in 2 processes at once (spawned, each its own ``Cache`` and
  connection, the same keys, each run started together).
- Garbage: after each setup the surviving objects are frozen out of the collector (``gc.freeze``),
  and each run starts after a collection; collections during a run are the measured code's own.
- Written: ``bench/results/cache.{json,md}`` (or ``--out``); the Markdown is also printed.  Needs
  Redis (``python -m stack up``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
import uvloop
from aiocache import Cache as AioFactory  # type: ignore[import-untyped]
from aiocache import SimpleMemoryCache, cached_stampede  # type: ignore[import-untyped]
from aiocache.backends.redis import RedisCache  # type: ignore[import-untyped]
from cashews import Cache as Cashews

from bench.probe import percentile
from drivers.cache import Cache, CacheConfig, RedisTier
from drivers.redis import RedisClient, RedisConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

VALUE: dict[str, Any] = {"id": 1, "name": "item 1", "price": 9.99, "stock": 12, "tags": ["red", "small"],
                         "updated": "2024-05-01T12:00:00Z"}
KEYS = [f"item:{i}" for i in range(64)]   # remote hits: task i reads KEYS[i] (no two tasks share a key)
KEY = KEYS[0]                                # local hits, and the remote runs of one task
TTL_S = 3600            # hit-path values never expire during the run
POOL = 64               # connections in each redis-py pool (cashews, aiocache, the bare redis-py floor)
TASKS = len(KEYS)       # concurrency of the remote-hit runs
LOCAL_BATCH = 1000      # local hits between two looks at the clock
REQUESTERS = 1000       # concurrent requests in a stampede wave
WAVE_S = 0.1            # a hot-key wave leaves this often
LOAD_S = 0.05           # what the loader takes
HOT_TTL = 1             # the hot key's TTL, seconds
COLD_TTL = 60           # the cold key's: it must outlive the slowest contender's run

Get = Callable[[], Awaitable[Any]]


@dataclass
class Contender:
    """One way of reading a key: ``get_for(key)`` is a get of it; ``check`` (optional) says the run was hits."""

    name: str
    serializer: str
    get_for: Callable[[str], Get]
    connections: Callable[[], int | str] = lambda: "-"
    check: Callable[[], None] = lambda: None
    ours: str = ""          # "get_or_load" / "get" for our rows
    gets: list[Get] = field(init=False)

    def __post_init__(self) -> None:
        self.gets = [self.get_for(key) for key in KEYS]


@dataclass
class Run:
    """What a whole run needs: the Redis address, the names it writes under, and what it opened."""

    host: str
    port: int
    name: str = field(default_factory=lambda: f"bench-cache-{os.getpid()}-{secrets.token_hex(3)}")
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def ns(self, library: str) -> str:
        return f"{self.name}:{library}"

    def redis_config(self) -> RedisConfig:
        return RedisConfig(host=self.host, port=self.port)


@dataclass(frozen=True)
class Plan:
    """How long and how often: the rounds of each part of the run."""

    rounds: int = 5             # hit path: alternating rounds
    seconds: float = 0.25       # hit path: per contender, per mode, per round
    cold_rounds: int = 3
    hot_rounds: int = 3
    hot_seconds: float = 3.0


QUICK = Plan(rounds=2, seconds=0.08, cold_rounds=1, hot_rounds=1, hot_seconds=1.2)


# -- the contenders of the hit path --------------------------------------------------------------------


async def _noop() -> Any:
    return VALUE


def _floor(_: str) -> Get:
    return _noop


async def _ours(run: Run, config: CacheConfig) -> Cache:
    cache = Cache(RedisTier(RedisClient(run.redis_config()), own=True), config)
    await cache.start()
    run.closers.append(cache.aclose)
    return cache


def _ours_contenders(cache: Cache, where: str) -> list[Contender]:
    """get_or_load and get on one of our caches, each checked to be all hits of the tier ``where``."""

    async def loader() -> Any:
        raise AssertionError(f"ours ({where}): the loader was called on the hit path")

    def hits() -> int:
        if where == "local":
            return cache.stats.local_hits
        return cache.stats.requests.get(("remote", "hit"), 0)

    seen = [hits()]

    def check() -> None:
        now = hits()
        assert now > seen[0], f"ours ({where}): no {where} hits counted"
        seen[0] = now
        assert cache.stats.loader_calls == 0, f"ours ({where}): the loader ran"

    one = "1 pipelined" if where == "remote" else "-"
    return [
        Contender(f"ours: get_or_load ({where} hit)", "orjson envelope",
                  lambda key: functools.partial(cache.get_or_load, key, loader, TTL_S), lambda: one, check,
                  "get_or_load"),
        Contender(f"ours: get ({where} hit)", "orjson envelope", lambda key: functools.partial(cache.get, key),
                  lambda: one, check, "get"),
    ]


def _pool_size(pool: Any) -> int:
    return len(pool._available_connections) + len(pool._in_use_connections)


async def _cashews(run: Run, **params: Any) -> tuple[Cashews, Any]:
    cache = Cashews()
    url = params.pop("url", run.url)
    backend = cache.setup(url, **params)
    await cache.init()
    run.closers.append(cache.close)
    return cache, backend


def _aiocache_redis(run: Run, **kwargs: Any) -> RedisCache:
    cache = RedisCache(endpoint=run.host, port=run.port, namespace=run.ns("aiocache"), pool_max_size=POOL,
                       connection_pool_class=aredis.BlockingConnectionPool, **kwargs)
    run.closers.append(cache.close)
    return cache


def _getter(get: Callable[[str], Awaitable[Any]], prefix: str = "") -> Callable[[str], Get]:
    """``key -> get(prefix + key)`` for a library without namespaces (cashews)."""
    return lambda key: functools.partial(get, prefix + key)


async def local_contenders(run: Run) -> list[Contender]:
    ours = await _ours(run, CacheConfig(namespace=run.ns("ours")))

    async def load() -> Any:
        await asyncio.sleep(0.001)
        return VALUE

    assert await ours.get_or_load(KEY, load, TTL_S) == VALUE
    ours.stats.loader_calls = 0
    side, side_backend = await _cashews(run, client_side=True, client_side_prefix=run.ns("cashews-cs") + ":",
                                        max_connections=POOL)
    assert side_backend._listen_started.is_set(), "cashews client_side: its invalidation listener did not start"
    await side.set(KEY, VALUE, expire=TTL_S)
    assert await side.get(KEY) == VALUE
    assert KEY in side_backend._local_cache.store, "cashews client_side: the value is not in its local tier"
    mem, _ = await _cashews(run, url="mem://")
    await mem.set(KEY, VALUE, expire=TTL_S)
    aio_mem = SimpleMemoryCache()
    await aio_mem.set(KEY, VALUE, ttl=TTL_S)
    aio_mem_untimed = SimpleMemoryCache(timeout=None)
    await aio_mem_untimed.set(KEY, VALUE, ttl=TTL_S)
    return [
        Contender("floor: await a coroutine that returns the value", "-", _floor),
        *_ours_contenders(ours, "local"),
        Contender("cashews: redis, client_side=True (local hit)", "pickle (objects kept)", _getter(side.get)),
        Contender("cashews: mem://", "none (objects kept)", _getter(mem.get)),
        Contender("aiocache: SimpleMemoryCache (default timeout=5)", "none (objects kept)", _getter(aio_mem.get)),
        Contender("aiocache: SimpleMemoryCache (timeout=None)", "none (objects kept)",
                  _getter(aio_mem_untimed.get)),
    ]


async def remote_contenders(run: Run) -> list[Contender]:
    ours = await _ours(run, CacheConfig(namespace=run.ns("ours-remote"), local_max_entries=0))
    await ours.set_many(dict.fromkeys(KEYS, VALUE), ttl=TTL_S)
    bare = RedisClient(run.redis_config())
    await bare.start()
    run.closers.append(bare.aclose)
    bare_ns = run.ns("bare") + ":"
    await bare.mset({bare_ns + key: b"x" * 90 for key in KEYS})
    pyredis = aredis.Redis(connection_pool=aredis.BlockingConnectionPool(host=run.host, port=run.port,
                                                                         max_connections=POOL))
    run.closers.append(pyredis.aclose)
    pickled, pickled_backend = await _cashews(run, max_connections=POOL)
    as_json, json_backend = await _cashews(run, max_connections=POOL, pickle_type="json")
    pickled_ns, json_ns = run.ns("cashews") + ":", run.ns("cashews-json") + ":"
    await pickled.set_many({pickled_ns + key: VALUE for key in KEYS}, expire=TTL_S)
    await as_json.set_many({json_ns + key: VALUE for key in KEYS}, expire=TTL_S)
    aio = _aiocache_redis(run)
    aio_untimed = _aiocache_redis(run, timeout=None)
    await aio.multi_set([(key, VALUE) for key in KEYS], ttl=TTL_S)
    return [
        Contender("floor: RedisClient.get, bytes (ours, no cache)", "-", _getter(bare.get, bare_ns),
                  lambda: "1 pipelined"),
        Contender("floor: redis.asyncio get, bytes (no cache)", "-", _getter(pyredis.get, bare_ns),
                  lambda: _pool_size(pyredis.connection_pool)),
        *_ours_contenders(ours, "remote"),
        Contender("cashews: redis (default)", "pickle (default), repr check", _getter(pickled.get, pickled_ns),
                  lambda: _pool_size(pickled_backend._client.connection_pool)),
        Contender("cashews: redis, pickle_type=json", "json (stdlib), repr check", _getter(as_json.get, json_ns),
                  lambda: _pool_size(json_backend._client.connection_pool)),
        Contender("aiocache: RedisCache (default timeout=5)", "json (stdlib, default)", _getter(aio.get),
                  lambda: _pool_size(aio.client.connection_pool)),
        Contender("aiocache: RedisCache (timeout=None)", "json (stdlib, default)", _getter(aio_untimed.get),
                  lambda: _pool_size(aio_untimed.client.connection_pool)),
    ]


# -- measuring the hit path ----------------------------------------------------------------------------


def _settle() -> None:
    """Collect, then freeze what survived (imports, clients, caches) out of the collector's sight.

    Each run then starts from the same state, and a collection during a run walks only what the
    measured code made, not the whole process (a full collection here takes some 30 ms).
    """
    gc.collect()
    gc.freeze()


async def _check_values(c: Contender, gets: list[Get]) -> None:
    for get in gets:
        got = await get()
        if c.name.startswith("floor: ") and isinstance(got, bytes):
            continue
        assert got == VALUE, f"{c.name}: answered {got!r:.100}, not the value"


async def cpu_local(get: Get, seconds: float) -> tuple[float, float]:
    """(CPU µs per get, gets per second) of one task doing sequential gets for ``seconds``."""
    for _ in range(200):
        await get()
    gc.collect()
    done = 0
    wall, cpu = time.perf_counter(), time.process_time()
    stop = wall + seconds
    while True:
        for _ in range(LOCAL_BATCH):
            await get()
        done += LOCAL_BATCH
        if time.perf_counter() >= stop:
            break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return cpu / done * 1e6, done / wall


async def cpu_remote(gets: list[Get], seconds: float) -> tuple[float, float]:
    """(CPU µs per get, gets per second) of one task per getter, each doing sequential gets for ``seconds``."""
    await asyncio.gather(*(get() for get in gets))   # every connection it will use, opened
    for _ in range(100 // len(gets) + 1):
        await asyncio.gather(*(get() for get in gets))
    gc.collect()
    done = 0
    wall, cpu = time.perf_counter(), time.process_time()
    stop = wall + seconds

    async def worker(get: Get) -> None:
        nonlocal done
        n = 0
        clock = time.perf_counter
        while clock() < stop:
            await get()
            n += 1
        done += n

    await asyncio.gather(*(worker(get) for get in gets))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return cpu / done * 1e6, done / wall


Sample = dict[str, float]


async def measure_hits(contenders: list[Contender], modes: list[int], rounds: int,
                       seconds: float) -> dict[str, dict[int, list[Sample]]]:
    """Per contender, per mode (0: local, one task; n: remote, n tasks): one sample per round."""
    for c in contenders:
        await _check_values(c, c.gets[:max(modes)] if max(modes) else c.gets[:1])
        c.check()
    _settle()
    samples: dict[str, dict[int, list[Sample]]] = {c.name: {m: [] for m in modes} for c in contenders}
    for r in range(rounds):
        turn = r % len(contenders)
        for c in contenders[turn:] + contenders[:turn]:
            for mode in modes:
                if mode == 0:
                    cpu_us, rate = await cpu_local(c.gets[0], seconds)
                else:
                    cpu_us, rate = await cpu_remote(c.gets[:mode], seconds)
                await _check_values(c, c.gets[:1])
                c.check()
                samples[c.name][mode].append({"cpu_us": cpu_us, "per_s": rate})
    return samples


def _ratio(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], what: str) -> float | None:
    """The median over rounds of ours / theirs (rounds where theirs is 0 left out; None if all are)."""
    ratios = [a[what] / b[what] for a, b in zip(ours, theirs, strict=True) if b[what]]
    return statistics.median(ratios) if ratios else None


def hit_rows(contenders: list[Contender], samples: dict[str, dict[int, list[Sample]]],
             modes: list[int]) -> list[dict[str, Any]]:
    """One row per contender: medians per mode, and the median per-round ratios of ours against it."""
    ours = {c.ours: c.name for c in contenders if c.ours}
    rows = []
    for c in contenders:
        row: dict[str, Any] = {"contender": c.name, "serializer": c.serializer, "connections": c.connections()}
        for mode in modes:
            runs = samples[c.name][mode]
            row[f"cpu_us_{mode}"] = statistics.median(s["cpu_us"] for s in runs)
            row[f"per_s_{mode}"] = statistics.median(s["per_s"] for s in runs)
            row[f"runs_cpu_us_{mode}"] = [round(s["cpu_us"], 3) for s in runs]
            for kind, name in ours.items():
                if c.ours or c.name.startswith("floor"):
                    continue
                mine = samples[name][mode]
                row[f"ratio_{kind}_{mode}"] = _ratio(mine, runs, "cpu_us")
        rows.append(row)
    return rows


# -- stampedes ------------------------------------------------------------------------------------------


@dataclass
class Loader:
    """The stampede's loader: counts its calls, takes ``LOAD_S``, answers the value."""

    calls: int = 0

    async def __call__(self) -> Any:
        self.calls += 1
        await asyncio.sleep(LOAD_S)
        return VALUE


class Requests:
    """Latencies of the requests that answered the value, and the errors of those that raised."""

    def __init__(self, request: Get) -> None:
        self.request = request
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    async def one(self, since: float) -> None:
        try:
            value = await self.request()
        except Exception as exc:        # a library's failure under load is a result, counted and shown
            what = f"{type(exc).__name__}: {exc}"[:120]
            self.errors[what] = self.errors.get(what, 0) + 1
            return
        self.latencies.append(time.perf_counter() - since)
        assert value == VALUE, f"a request answered {value!r:.100}"

    def summary(self, loader_calls: int, cpu: float) -> dict[str, Any]:
        latencies = sorted(self.latencies)
        done = len(latencies) + sum(self.errors.values())
        return {"requests": done, "errors": sum(self.errors.values()), "error_kinds": self.errors,
                "loader_calls": loader_calls, "p50_ms": percentile(latencies, 50) * 1e3,
                "p99_ms": percentile(latencies, 99) * 1e3, "max_ms": latencies[-1] * 1e3 if latencies else 0.0,
                "cpu_us_per_request": cpu / done * 1e6 if done else 0.0}


async def cold(request: Get, loader: Loader) -> dict[str, Any]:
    """1,000 concurrent requests for a key nobody has: loader calls and latencies (from the common start)."""
    requests = Requests(request)
    gc.collect()
    cpu = time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(requests.one(began) for _ in range(REQUESTERS)))
    return requests.summary(loader.calls, time.process_time() - cpu)


async def hot(request: Get, loader: Loader, seconds: float) -> dict[str, Any]:
    """Waves of 1,000 concurrent requests every ``WAVE_S`` for ``seconds`` on a key with a 1 s TTL."""
    assert await request() == VALUE     # loaded once: the run starts hot
    await asyncio.sleep(0.2)            # stores that finish after the answer have landed
    calls_before = loader.calls
    requests = Requests(request)
    gc.collect()
    cpu = time.process_time()
    waves: list[float] = []
    began = tick = time.perf_counter()
    while tick - began < seconds:
        wave = time.perf_counter()
        await asyncio.gather(*(requests.one(wave) for _ in range(REQUESTERS)))
        waves.append(time.perf_counter() - wave)
        tick += WAVE_S
        now = time.perf_counter()
        if tick > now:
            await asyncio.sleep(tick - now)
        else:
            tick = now
    result = requests.summary(loader.calls - calls_before, time.process_time() - cpu)
    result["waves"] = len(waves)
    result["slowest_waves_ms"] = [round(w * 1e3, 1) for w in sorted(waves, reverse=True)[:3]]
    return result


Scenario = Callable[[str, Loader, int], Awaitable[Get]]    # (key, loader, ttl) -> a request for that key


async def stampede_scenarios(run: Run) -> dict[str, Scenario]:
    """Per contender, how to build a request for a key through it (its decorators built per key)."""
    ours = await _ours(run, CacheConfig(namespace=run.ns("ours-stampede")))
    cashews, _ = await _cashews(run, max_connections=POOL)
    aio: list[Any] = []

    async def closing_aio() -> None:
        for fn in aio:
            await fn.cache.close()

    run.closers.append(closing_aio)

    async def our_request(key: str, loader: Loader, ttl: int) -> Get:
        return functools.partial(ours.get_or_load, key, loader, ttl)

    async def cashews_early(key: str, loader: Loader, ttl: int) -> Get:
        @cashews.early(ttl=ttl, key=f"{run.ns('cashews-early')}:{key}")
        async def load() -> Any:
            return await loader()
        return load

    async def cashews_locked(key: str, loader: Loader, ttl: int) -> Get:
        @cashews(ttl=ttl, key=f"{run.ns('cashews-lock')}:{key}", lock=True)
        async def load() -> Any:
            return await loader()
        return load

    async def aiocache_stampede(key: str, loader: Loader, ttl: int) -> Get:
        async def load() -> Any:
            return await loader()

        decorated: Get = cached_stampede(ttl=ttl, key=key, cache=AioFactory.REDIS,
                                         namespace=run.ns("aiocache-stampede"), endpoint=run.host, port=run.port,
                                         pool_max_size=POOL, connection_pool_class=aredis.BlockingConnectionPool)(load)
        aio.append(decorated)
        return decorated

    return {"ours: get_or_load (defaults)": our_request, "cashews: @cache.early": cashews_early,
            "cashews: @cache(lock=True)": cashews_locked, "aiocache: @cached_stampede": aiocache_stampede}


async def measure_stampedes(run: Run, plan: Plan) -> dict[str, Any]:
    scenarios = await stampede_scenarios(run)
    _settle()
    names = list(scenarios)
    out: dict[str, dict[str, list[dict[str, Any]]]] = {"cold": {n: [] for n in names},
                                                        "hot": {n: [] for n in names}}
    for phase, count in (("cold", plan.cold_rounds), ("hot", plan.hot_rounds)):
        for r in range(count):
            turn = r % len(names)
            for name in names[turn:] + names[:turn]:
                loader = Loader()
                request = await scenarios[name](f"{phase}:{r}", loader, COLD_TTL if phase == "cold" else HOT_TTL)
                result = await (cold(request, loader) if phase == "cold" else
                                hot(request, loader, plan.hot_seconds))
                out[phase][name].append(result)
                await asyncio.sleep(0.1)    # what finishes after the answers (stores, unlocks) lands apart
    return out


def stampede_rows(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    ours = next(iter(runs.values()))
    rows = []
    for name, results in runs.items():
        row: dict[str, Any] = {"contender": name}
        for k in ("requests", "errors", "loader_calls", "p50_ms", "p99_ms", "max_ms", "cpu_us_per_request"):
            row[k] = statistics.median(r[k] for r in results)
        row["loader_calls_max"] = max(r["loader_calls"] for r in results)
        row["loader_calls_runs"] = [r["loader_calls"] for r in results]
        row["errors_max"] = max(r["errors"] for r in results)
        if results[0].get("slowest_waves_ms"):      # hot runs: the tail of p99 is a few slow waves
            row["slowest_wave_ms_runs"] = [r["slowest_waves_ms"][0] for r in results]
        row["error_kinds"] = sorted({kind for r in results for kind in r["error_kinds"]})
        if results is not ours:
            row["ratio_loader_calls"] = _ratio(ours, results, "loader_calls")
            row["ratio_p99"] = _ratio(ours, results, "p99_ms")
        rows.append(row)
    return rows


# -- ours in two processes -------------------------------------------------------------------------------


def _process(host: str, port: int, namespace: str, plan: Plan, barrier: Any, results: Any) -> None:
    """One of the processes: the same cold and hot runs as ``measure_stampedes``, started with the others."""
    uvloop.run(_process_main(host, port, namespace, plan, barrier, results))


async def _process_main(host: str, port: int, namespace: str, plan: Plan, barrier: Any, results: Any) -> None:
    cache = Cache(RedisTier(RedisClient(RedisConfig(host=host, port=port)), own=True), CacheConfig(namespace=namespace))
    await cache.start()
    _settle()
    out: dict[str, Any] = {"pid": os.getpid(), "cold": [], "hot": []}
    try:
        for phase, count in (("cold", plan.cold_rounds), ("hot", plan.hot_rounds)):
            for r in range(count):
                loader = Loader()
                timeouts = cache.stats.lease_timeouts
                ttl = COLD_TTL if phase == "cold" else HOT_TTL
                request = functools.partial(cache.get_or_load, f"{phase}:{r}", loader, ttl)
                await asyncio.to_thread(barrier.wait, 30)
                result = await (cold(request, loader) if phase == "cold" else
                                hot(request, loader, plan.hot_seconds))
                result["lease_timeouts"] = cache.stats.lease_timeouts - timeouts
                out[phase].append(result)
                await asyncio.sleep(0.1)
    finally:
        await cache.aclose()
        results.put(out)


def two_processes(run: Run, plan: Plan) -> list[dict[str, Any]]:
    """Ours in 2 processes at once (spawned: each starts its own loop and connection), same Redis, same keys."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    args = (run.host, run.port, run.ns("ours-2p"), plan, barrier, results)
    procs = [ctx.Process(target=_process, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    for p in procs:
        if p.exitcode:
            raise RuntimeError(f"a stampede process exited with {p.exitcode}")
    return out


def two_process_rows(per_process: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for phase in ("cold", "hot"):
        rounds = len(per_process[0][phase])
        totals = [sum(p[phase][r]["loader_calls"] for p in per_process) for r in range(rounds)]
        per = [[p[phase][r]["loader_calls"] for p in per_process] for r in range(rounds)]
        rows.append({"phase": phase, "loader_calls_total": statistics.median(totals), "totals": totals,
                     "loader_calls_per_process": per,
                     "lease_timeouts": sum(p[phase][r]["lease_timeouts"] for p in per_process for r in range(rounds)),
                     "p50_ms": statistics.median(p[phase][r]["p50_ms"] for p in per_process for r in range(rounds)),
                     "p99_ms": statistics.median(p[phase][r]["p99_ms"] for p in per_process for r in range(rounds)),
                     "max_ms": max(p[phase][r]["max_ms"] for p in per_process for r in range(rounds))})
    return rows


# -- the run ---------------------------------------------------------------------------------------------


async def cleanup(run: Run) -> int:
    """Every key of this run (they all contain its name), unlinked; how many there were."""
    client = RedisClient(run.redis_config())
    await client.start()
    removed, cursor = 0, b"0"
    try:
        while True:
            cursor, keys = await client.command("SCAN", cursor, "MATCH", f"*{run.name}*", "COUNT", 1000)
            if keys:
                removed += int(await client.command("UNLINK", *keys))
            if cursor in (b"0", 0, "0"):
                return removed
    finally:
        await client.aclose()


async def _close_all(run: Run) -> None:
    """Close what the run opened, newest first; a close that fails is reported and the rest still close."""
    while run.closers:
        close = run.closers.pop()
        try:
            await close()
        except Exception as exc:
            print(f"bench.cache: closing {close!r} failed: {exc!r}", file=sys.stderr)


async def measure(run: Run, plan: Plan) -> dict[str, Any]:
    began = mark = time.perf_counter()
    took: dict[str, float] = {}

    def lap(section: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        took[section] = round(now - mark, 1)
        mark = now

    try:
        try:       # each section closes what it opened: no library's background tasks run in the next one
            local = await local_contenders(run)
            local_samples = await measure_hits(local, [0], plan.rounds, plan.seconds)
            local_rows = hit_rows(local, local_samples, [0])
            await _close_all(run)
            lap("local")
            remote = await remote_contenders(run)
            remote_samples = await measure_hits(remote, [1, TASKS], plan.rounds, plan.seconds)
            remote_rows = hit_rows(remote, remote_samples, [1, TASKS])
            await _close_all(run)
            lap("remote")
            stampedes = await measure_stampedes(run, plan)
            lap("stampede")
        finally:
            await _close_all(run)
        per_process = await asyncio.to_thread(two_processes, run, plan)
        lap("two_processes")
    finally:
        removed = await cleanup(run)
    return {"when": time.strftime("%Y-%m-%d %H:%M"), "address": f"{run.host}:{run.port}", "run": run.name,
            **asdict(plan),
            "versions": _versions(), "local": local_rows, "remote": remote_rows,
            "cold": stampede_rows(stampedes["cold"]), "hot": stampede_rows(stampedes["hot"]),
            "two_processes": two_process_rows(per_process), "processes": per_process,
            "keys_removed": removed, "took_s": time.perf_counter() - began, "took_by_section_s": took}


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("cashews", "aiocache", "redis", "hiredis", "uvloop", "orjson")} | {
        "python": sys.version.split()[0]}


# -- the report ------------------------------------------------------------------------------------------


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    local = {r["contender"]: r for r in result["local"]}
    remote = {r["contender"]: r for r in result["remote"]}
    out = []
    for name in ("ours: get_or_load (local hit)", "ours: get (local hit)"):
        us = local[name]["cpu_us_0"]
        out.append((f"{name}: under 2 µs per get", f"{us:.2f} µs", us < 2.0))
    cashews = remote["cashews: redis (default)"]
    for mode in (1, TASKS):
        ratio = cashews[f"ratio_get_or_load_{mode}"]
        out.append((f"ours get_or_load (remote hit) at most 0.5x cashews redis, {mode} task{'s' * (mode > 1)}",
                    f"{ratio:.2f}x ({remote['ours: get_or_load (remote hit)'][f'cpu_us_{mode}']:.1f} µs against "
                    f"{cashews[f'cpu_us_{mode}']:.1f} µs)", ratio <= 0.5))
    return out


def _stampede_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| contender | requests | errors (max) | loader calls (max) | p50 ms | p99 ms | max ms "
             "| CPU µs per request | ours / this: loader calls | ours / this: p99 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['contender']} | {r['requests']:,.0f} | {r['errors']:g} ({r['errors_max']}) "
                     f"| {r['loader_calls']:g} ({r['loader_calls_max']}) | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
                     f"| {r['max_ms']:.1f} | {r['cpu_us_per_request']:.1f} | {_x(r.get('ratio_loader_calls'))} "
                     f"| {_x(r.get('ratio_p99'))} |")
    failed = [f"{r['contender']}: {', '.join(r['error_kinds'])}" for r in rows if r["error_kinds"]]
    if failed:
        lines += ["", "Errors raised to the requests: " + "; ".join(failed) + "."]
    return lines


def report(result: dict[str, Any]) -> str:
    v = result["versions"]
    lines = [f"# Cache: drivers.cache against cashews {v['cashews']} and aiocache {v['aiocache']} ({result['when']})",
             "",
             f"Redis {result['address']}, one process on uvloop {v['uvloop']}, Python {v['python']}, redis-py "
             f"{v['redis']} with hiredis {v['hiredis']}. Median of {result['rounds']} alternating rounds of "
             f"{result['seconds']:g} s per contender; a ratio is ours / theirs, the median of the per-round "
             "ratios (below 1: ours spends less). Command: `.venv/bin/python -m bench.cache`"
             f"{' --quick' if result.get('quick') else ''}; this run took {result['took_s']:.0f} s.", "",
             "## Hit path: local hits (one task, sequential gets)", "",
             "| contender | serializer | CPU µs per get | gets/s | ours get_or_load / this | ours get / this |",
             "|---|---|---:|---:|---:|---:|"]
    for r in result["local"]:
        lines.append(f"| {r['contender']} | {r['serializer']} | {r['cpu_us_0']:.2f} | {r['per_s_0']:,.0f} "
                     f"| {_x(r.get('ratio_get_or_load_0'))} | {_x(r.get('ratio_get_0'))} |")
    lines += ["", f"## Hit path: remote hits (1 task, and {TASKS} tasks each doing sequential gets)", "",
              "| contender | serializer | Redis connections | CPU µs per get, 1 task | CPU µs per get, "
              f"{TASKS} tasks | gets/s, {TASKS} tasks | ours get_or_load / this (1; {TASKS}) "
              f"| ours get / this (1; {TASKS}) |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["remote"]:
        g = [r.get(f"ratio_get_or_load_{m}") for m in (1, TASKS)]
        s = [r.get(f"ratio_get_{m}") for m in (1, TASKS)]
        lines.append(f"| {r['contender']} | {r['serializer']} | {r['connections']} | {r['cpu_us_1']:.1f} "
                     f"| {r[f'cpu_us_{TASKS}']:.1f} | {r[f'per_s_{TASKS}']:,.0f} | {_x(g[0])}; {_x(g[1])} "
                     f"| {_x(s[0])}; {_x(s[1])} |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets(result)]
    lines += ["", f"## Stampede: one cold key, {REQUESTERS:,} concurrent requests, loader {LOAD_S * 1e3:.0f} ms", "",
              f"Median of {result['cold_rounds']} round(s); latency from the common start.", ""]
    lines += _stampede_table(result["cold"])
    lines += ["", f"## Stampede: one hot key, TTL {HOT_TTL} s, a wave of {REQUESTERS:,} concurrent requests every "
              f"{WAVE_S * 1e3:.0f} ms for {result['hot_seconds']:g} s", "",
              f"Median of {result['hot_rounds']} round(s); loader calls after the first load; latency from the "
              "start of the request's wave; CPU per request includes making its task.", ""]
    lines += _stampede_table(result["hot"])
    lines += ["", "## Stampede across 2 processes: ours, each process its own Cache and connection, same keys", "",
              "The cold and hot runs above, both processes starting each run together. Loader calls per round "
              "as [process 1, process 2].", "",
              "| run | loader calls in total (median) | one process alone (above) | per process, each round "
              "| lease waits that timed out | p50 ms | p99 ms | max ms |",
              "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in result["two_processes"]:
        alone = result[r["phase"]][0]["loader_calls"]
        lines.append(f"| {r['phase']} | {r['loader_calls_total']:g} | {alone:g} | {r['loader_calls_per_process']} "
                     f"| {r['lease_timeouts']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    default = Plan()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:16379", help="Redis host:port")
    parser.add_argument("--rounds", type=int, default=default.rounds, help="hit path: alternating rounds")
    parser.add_argument("--seconds", type=float, default=default.seconds,
                        help="hit path: seconds per contender per round")
    parser.add_argument("--cold-rounds", type=int, default=default.cold_rounds)
    parser.add_argument("--hot-rounds", type=int, default=default.hot_rounds)
    parser.add_argument("--hot-seconds", type=float, default=default.hot_seconds)
    parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK} (the other options ignored)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where cache.json and cache.md go")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan(args.rounds, args.seconds, args.cold_rounds, args.hot_rounds,
                                         args.hot_seconds)
    host, _, port = args.address.rpartition(":")
    result = uvloop.run(measure(Run(host, int(port)), plan))
    result["quick"] = args.quick
    text = report(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cache.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "cache.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
