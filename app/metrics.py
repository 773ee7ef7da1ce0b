"""Prometheus metrics of the service, and the sampler that keeps the gauges current.

With more than one worker, ``PROMETHEUS_MULTIPROC_DIR`` must be set before this
module is first imported (``app.workers`` does it before forking): each worker
then writes its samples to files there and ``/metrics`` in any worker merges all
of them.  Gauges say how they merge (``livesum``: summed over live workers,
``livemax``: the worst worker).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from drivers.base import NUMERIC_STATS, ManagedClient, error_kind
from drivers.errors import DriverError

__all__ = ["CONTENT_TYPE", "observe_backend", "observe_request", "render", "sample_forever"]

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("http_requests_total", "HTTP requests answered, by route, method and status",
                   ["route", "method", "status"])
REQUEST_LATENCY = Histogram("http_request_duration_seconds", "Time to answer an HTTP request, by route",
                            ["route", "method"], buckets=_LATENCY_BUCKETS)
IN_FLIGHT = Gauge("http_requests_in_flight", "HTTP requests being handled", multiprocess_mode="livesum")
BACKEND_LATENCY = Histogram("backend_call_duration_seconds", "Time of one backend call, by backend and operation",
                            ["backend", "op"], buckets=_LATENCY_BUCKETS)
BACKEND_ERRORS = Counter("backend_errors_total", "Failed backend calls, by backend and kind "
                         "(unavailable, timeout, error)", ["backend", "kind"])
POOL = Gauge("backend_pool_connections", "Pooled backend connections, by backend and state (in_use, idle)",
             ["backend", "state"], multiprocess_mode="livesum")
CLIENT = Gauge("backend_client", "Each backend client's own counters, the same for every client (connected, "
               "in_flight, requests, errors, timeouts, late_replies, reconnects, retries, pool_in_use, pool_idle, "
               "pool_max)", ["backend", "stat"], multiprocess_mode="livesum")
LIMIT = Gauge("backend_limit", "Each backend's adaptive concurrency limit: the limit, calls in flight, calls "
              "queued for a slot, calls turned away (shed, since start), connections not read until it has room "
              "(parked), waits for a turn of the event loop: calls, and requests before they were parsed "
              "(turn_waits, since start)", ["backend", "stat"], multiprocess_mode="livesum")
LOOP_LAG = Gauge("event_loop_lag_seconds", "How late the event loop woke a timer at the last sample",
                 multiprocess_mode="livemax")

WS_CONNECTIONS = Gauge("ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
WS_SUBSCRIPTIONS = Gauge("ws_subscriptions", "Channel subscriptions of WebSocket connections",
                         multiprocess_mode="livesum")
WS_CHANNELS = Gauge("ws_redis_channels", "Redis pub/sub channels this process is subscribed to",
                    multiprocess_mode="livesum")
WS_SUBSCRIBER_UP = Gauge("ws_redis_subscription_connected", "1 while the Redis pub/sub connection is up",
                         multiprocess_mode="livemin")
WS_COUNTERS = {
    "messages_in": Counter("ws_messages_in", "Messages received from Redis pub/sub"),
    "frames_out": Counter("ws_frames_out", "Message frames written to WebSocket connections"),
    "published": Counter("ws_published", "Messages published by this service"),
    "slow_consumers": Counter("ws_slow_consumer_disconnects", "Connections closed (1013) for not keeping up"),
    "duplicates": Counter("ws_duplicates_dropped", "Messages dropped as already delivered"),
    "client_errors": Counter("ws_client_errors", "Error frames sent for bad client messages"),
    "fanout_seconds": Counter("ws_fanout_seconds", "Time spent framing and writing live messages"),
}
_ws_seen: dict[str, float] = {}

CACHE_REQUESTS = Counter("cache_requests_total", "Cache lookups by tier (local, remote, bloom) and result (hit, "
                         "miss, stale, negative; early: a hit that started an early refresh; rejected: the Bloom "
                         "filter said absent)", ["tier", "result"])
CACHE_LOADER_CALLS = Counter("cache_loader_calls_total", "Loader calls: values missing from every tier")
CACHE_LOADER_ERRORS = Counter("cache_loader_errors_total", "Loader calls that raised (nothing was cached)")
CACHE_LOADER_SECONDS = Histogram("cache_loader_seconds", "Time of one loader call", buckets=_LATENCY_BUCKETS)
CACHE_INVALIDATIONS = Counter("cache_invalidations_total", "Invalidation messages sent by this process and "
                              "received from others", ["direction"])
CACHE_FLUSHES = Counter("cache_local_flushes_total", "Times the local tier was emptied whole, by reason "
                        "(subscription: the invalidation subscription was lost and came back)", ["reason"])
CACHE_REMOTE_ERRORS = Counter("cache_remote_errors_total", "Remote tier calls that failed (the breaker counts the "
                              "unavailable and timed-out ones)")
CACHE_BREAKER = Gauge("cache_breaker_state", "The remote tier's circuit breaker: 0 closed, 1 half open, 2 open",
                      ["tier"], multiprocess_mode="livemax")
CACHE_LOCAL = Gauge("cache_local_size", "The local tier's size, in entries and in encoded bytes", ["unit"],
                    multiprocess_mode="livesum")
_cache_seen: dict[Any, float] = {}


class RecentRequests:
    """Requests finished since the last ``take()``: how many, and the durations of the latest (up to ``keep``).

    What the status page's figures are made from (``app.status``): per second, not since start.  WebSocket
    connections are counted but their durations (a connection's whole life) are left out.
    """

    def __init__(self, keep: int = 4096) -> None:
        self.count = 0
        self.durations: deque[float] = deque(maxlen=keep)

    def take(self) -> tuple[int, list[float]]:
        """The count and the durations since the last call; both start again from nothing."""
        count, durations = self.count, list(self.durations)
        self.count = 0
        self.durations.clear()
        return count, durations


RECENT = RecentRequests()


# Labelled children, looked up once per label set: ``labels()`` validates and joins its
# arguments under a lock on every call, which is most of what a request spends on metrics.
_requests: dict[tuple[str, str, int], Counter] = {}
_request_latency: dict[tuple[str, str], Histogram] = {}
_backend_latency: dict[tuple[str, str], Histogram] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method)
    counter = _requests.get((route, method, status))
    if counter is None:
        counter = _requests[(route, method, status)] = REQUESTS.labels(route, method, str(status))
    histogram = _request_latency.get(key)
    if histogram is None:
        histogram = _request_latency[key] = REQUEST_LATENCY.labels(route, method)
    counter.inc()
    histogram.observe(seconds)
    RECENT.count += 1
    if route != "ws":
        RECENT.durations.append(seconds)


def observe_backend(backend: str, op: str, seconds: float, error: DriverError | None) -> None:
    """The drivers' observer (``drivers.base.Observer``): one finished backend call."""
    histogram = _backend_latency.get((backend, op))
    if histogram is None:
        histogram = _backend_latency[(backend, op)] = BACKEND_LATENCY.labels(backend, op)
    histogram.observe(seconds)
    if error is not None:
        BACKEND_ERRORS.labels(backend, error_kind(error)).inc()


def sample_clients(clients: Sequence[ManagedClient]) -> None:
    """Copy every client's ``stats()`` (one shape for all) into the gauges."""
    for client in clients:
        stats = client.stats()
        backend = client.name
        POOL.labels(backend, "in_use").set(stats["pool_in_use"])
        POOL.labels(backend, "idle").set(stats["pool_idle"])
        CLIENT.labels(backend, "connected").set(1 if stats["connected"] else 0)
        for stat in NUMERIC_STATS:
            CLIENT.labels(backend, stat).set(float(stats[stat]))  # type: ignore[literal-required]
        limit = stats["detail"].get("limit")
        if limit:
            for stat, value in limit.items():
                LIMIT.labels(backend, stat).set(float(value))


def sample_ws(stats: dict[str, Any]) -> None:
    """Copy the WebSocket hub's gauges, and add its counters' growth since the last sample."""
    WS_CONNECTIONS.set(stats["connections"])
    WS_SUBSCRIPTIONS.set(stats["subscriptions"])
    WS_CHANNELS.set(stats["subscriber"]["detail"]["channels"])
    WS_SUBSCRIBER_UP.set(1 if stats["subscriber"]["connected"] else 0)
    for name, counter in WS_COUNTERS.items():
        value = float(stats[name])
        grown = value - _ws_seen.get(name, 0.0)
        if grown > 0:
            counter.inc(grown)
        _ws_seen[name] = value


def _grow(counter: Any, key: Any, value: float) -> None:
    grown = value - _cache_seen.get(key, 0.0)
    if grown > 0:
        counter.inc(grown)
    _cache_seen[key] = value


def sample_cache(snapshot: dict[str, Any]) -> None:
    """Copy the cache's gauges, and add its counters' growth since the last sample."""
    for (tier, result), count in snapshot["requests"].items():
        _grow(CACHE_REQUESTS.labels(tier, result), ("requests", tier, result), float(count))
    _grow(CACHE_LOADER_CALLS, "loader_calls", float(snapshot["loader_calls"]))
    _grow(CACHE_LOADER_ERRORS, "loader_errors", float(snapshot["loader_errors"]))
    _grow(CACHE_REMOTE_ERRORS, "remote_errors", float(snapshot["remote_errors"]))
    for direction, count in snapshot["invalidations"].items():
        _grow(CACHE_INVALIDATIONS.labels(direction), ("invalidations", direction), float(count))
    for reason, count in snapshot["flushes"].items():
        _grow(CACHE_FLUSHES.labels(reason), ("flushes", reason), float(count))
    CACHE_BREAKER.labels(snapshot["tier"]).set(snapshot["breaker_state"])
    CACHE_LOCAL.labels("entries").set(snapshot["local_entries"])
    CACHE_LOCAL.labels("bytes").set(snapshot["local_bytes"])


def observe_load(seconds: float, error: BaseException | None) -> None:
    """The cache's ``on_load`` hook: one loader call."""
    CACHE_LOADER_SECONDS.observe(seconds)


async def sample_forever(clients: Sequence[ManagedClient], in_flight: Callable[[], int], interval: float,
                         ws_stats: Callable[[], dict[str, Any]] | None = None,
                         cache_stats: Callable[[], dict[str, Any]] | None = None) -> None:
    """Every ``interval``: how late the loop woke us (its lag), requests in flight, the client and hub gauges."""
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        await asyncio.sleep(interval)
        LOOP_LAG.set(max(0.0, loop.time() - began - interval))
        IN_FLIGHT.set(in_flight())
        sample_clients(clients)
        if ws_stats is not None:
            sample_ws(ws_stats())
        if cache_stats is not None:
            sample_cache(cache_stats())


def render() -> bytes:
    """The exposition text: this process's registry, or every worker's files in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
