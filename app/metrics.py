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
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from drivers.base import ManagedClient
from drivers.errors import BackendTimeout, BackendUnavailable, DriverError

__all__ = ["CONTENT_TYPE", "backend_call", "observe_request", "render", "sample_forever"]

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
IGNITE = Gauge("ignite_client", "The Ignite client's own counters (in_flight, requests, late_replies, "
               "reconnects, connected, retries, partition_map_refreshes)", ["stat"], multiprocess_mode="livesum")
LOOP_LAG = Gauge("event_loop_lag_seconds", "How late the event loop woke a timer at the last sample",
                 multiprocess_mode="livemax")

REDIS_PIPE = Gauge("redis_pipelined_connection", "The pipelined Redis connection's counters (connected, "
                   "in_flight, late_replies, timeouts, reconnects)", ["stat"], multiprocess_mode="livesum")
_REDIS_PIPE_STATS = {"connected": "pipelined_connected", "in_flight": "pipelined_in_flight",
                     "late_replies": "late_replies", "timeouts": "pipelined_timeouts", "reconnects": "reconnects"}

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

_IGNITE_STATS = ("in_flight", "requests", "late_replies", "reconnects", "connected", "retries",
                 "partition_map_refreshes")


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


def _kind(exc: DriverError) -> str:
    if isinstance(exc, BackendTimeout):
        return "timeout"
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    return "error"


class backend_call:  # lower case: used like the function it replaced, ``with backend_call("redis", "get"):``
    """Time one backend call; count it as an error of its kind if it raises a DriverError."""

    __slots__ = ("_began", "_histogram", "backend")

    def __init__(self, backend: str, op: str) -> None:
        self.backend = backend
        histogram = _backend_latency.get((backend, op))
        if histogram is None:
            histogram = _backend_latency[(backend, op)] = BACKEND_LATENCY.labels(backend, op)
        self._histogram = histogram
        self._began = 0.0

    def __enter__(self) -> None:
        self._began = time.perf_counter()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self._histogram.observe(time.perf_counter() - self._began)
        if isinstance(exc, DriverError):
            BACKEND_ERRORS.labels(self.backend, _kind(exc)).inc()


def sample_clients(clients: Sequence[ManagedClient]) -> None:
    """Copy pool occupancy, the pipelined Redis connection's and the Ignite client's counters into the gauges."""
    for client in clients:
        stats = client.stats()
        if "in_use" in stats:
            POOL.labels(client.name, "in_use").set(stats["in_use"])
            POOL.labels(client.name, "idle").set(stats.get("idle", 0))
        if client.name == "ignite":
            for stat in _IGNITE_STATS:
                IGNITE.labels(stat).set(float(stats.get(stat) or 0))
        elif client.name == "redis":
            for label, key in _REDIS_PIPE_STATS.items():
                REDIS_PIPE.labels(label).set(float(stats.get(key) or 0))


def sample_ws(stats: dict[str, Any]) -> None:
    """Copy the WebSocket hub's gauges, and add its counters' growth since the last sample."""
    WS_CONNECTIONS.set(stats["connections"])
    WS_SUBSCRIPTIONS.set(stats["subscriptions"])
    WS_CHANNELS.set(stats["subscriber"]["channels"])
    WS_SUBSCRIBER_UP.set(1 if stats["subscriber"]["connected"] else 0)
    for name, counter in WS_COUNTERS.items():
        value = float(stats[name])
        grown = value - _ws_seen.get(name, 0.0)
        if grown > 0:
            counter.inc(grown)
        _ws_seen[name] = value


async def sample_forever(clients: Sequence[ManagedClient], in_flight: Callable[[], int], interval: float,
                         ws_stats: Callable[[], dict[str, Any]] | None = None) -> None:
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


def render() -> bytes:
    """The exposition text: this process's registry, or every worker's files in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
