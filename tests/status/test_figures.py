"""A worker's status figures (app.status), made without a server: rates since the last figures, never blocking."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app import metrics, status
from app.context import Context
from app.settings import load_settings
from drivers.errors import BackendUnavailable


class FakeClient:
    """A backend client as the reporter sees it: a name and ``stats()``."""

    name = "mysql"

    def __init__(self) -> None:
        self.errors = 0
        self.connected = True

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "errors": self.errors, "in_flight": 1, "pool_in_use": 3, "pool_max": 20}


class HangingHistory:
    """A Redis that never answers a publish."""

    async def publish(self, channel: str, data: bytes) -> str:
        await asyncio.sleep(3600)
        return "0-0"


class DownHistory:
    async def publish(self, channel: str, data: bytes) -> str:
        raise BackendUnavailable("redis: connection refused", backend="redis")


@pytest.fixture
async def ctx() -> AsyncIterator[Context]:
    """A context built (no I/O) and never started: the reporter reads only counters from it."""
    yield Context.build(load_settings(server={"status_interval_s": 0.05}))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert status.percentile(values, 0.5) == 50
    assert status.percentile(values, 0.99) == 99
    assert status.percentile([7.0], 0.99) == 7
    assert status.percentile([], 0.5) is None


async def test_figures_are_rates_since_the_last_figures(ctx: Context) -> None:
    client = FakeClient()
    reporter = status.StatusReporter(ctx, clients=[client])  # type: ignore[list-item]  # forgets what came before
    for ms in range(1, 11):
        metrics.observe_request("now", "GET", 200, ms / 1000)
    metrics.observe_request("ws", "GET", 101, 60.0)           # a WebSocket's whole life: counted, not timed
    client.errors = 4
    reporter._last = time.monotonic() - 2.0                    # as if the last figures were 2 s ago
    first = reporter.figures(loop_lag_s=0.003)
    assert first["requests_per_s"] == pytest.approx(11 / 2, rel=0.01)
    assert (first["p50_ms"], first["p99_ms"]) == (5.0, 10.0)
    assert first["loop_lag_ms"] == 3.0
    assert first["backends"] == [{"name": "mysql", "connected": True, "errors": 4,
                                  "errors_per_s": pytest.approx(2.0, rel=0.01), "in_flight": 1,
                                  "pool_in_use": 3, "pool_max": 20}]
    reporter._last = time.monotonic() - 1.0
    second = reporter.figures(loop_lag_s=0.0)
    assert second["requests_per_s"] == 0 and second["p50_ms"] is None and second["p99_ms"] is None
    assert second["backends"][0]["errors_per_s"] == 0
    assert second["pid"] == first["pid"] and second["host"].endswith(" 127.0.0.1:8888")


async def test_a_publish_that_redis_does_not_take_within_an_interval_is_skipped(ctx: Context) -> None:
    reporter = status.StatusReporter(ctx, clients=[])
    ctx.hub.history = HangingHistory()  # type: ignore[assignment]
    began = time.monotonic()
    assert await reporter.publish(0.0) is False
    assert time.monotonic() - began < 0.5
    ctx.hub.history = DownHistory()  # type: ignore[assignment]
    assert await reporter.publish(0.0) is False
    assert reporter.skipped == 2


async def test_nothing_is_published_with_status_interval_0() -> None:
    off = Context.build(load_settings(server={"status_interval_s": 0}))
    assert status.start(off) is None
    assert off.settings.server.status_interval_s == 0
