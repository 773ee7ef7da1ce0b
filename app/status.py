"""The figures of the status page (``GET /status``): each worker publishes its own once a second.

Every ``server.status_interval_s`` a worker sends one message to the WebSocket channel ``status``
(``CHANNEL``), through the hub's history (the path ``POST /publish`` takes: a Redis stream and
pub/sub, one script): requests per second, p50/p99 of the requests that finished in that second,
requests in flight, the event loop's lag, WebSocket connections, and each backend client's health
(``connected``, errors, pool use).  Counters are turned into rates here, from the process's own
counters (``metrics.RECENT`` and the clients' ``stats()``), never from other workers'.

Publishing never holds anything up: it runs in a task of its own, and a publish that fails or does
not finish within one interval (Redis down or slow) is skipped and counted; the next second tries
again.  These messages are not counted in ``ws_published_total`` (which counts what the service's
users publish).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import orjson

from app import metrics
from app.context import Context
from app.ws import protocol
from drivers.base import ManagedClient
from drivers.errors import DriverError

CHANNEL = "status"


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``ordered`` (sorted); None when it is empty."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class StatusReporter:
    """Makes this worker's figures from its counters, as rates since the previous figures."""

    def __init__(self, ctx: Context, clients: Sequence[ManagedClient] | None = None) -> None:
        s = ctx.settings.server
        self.ctx = ctx
        self.clients = list(ctx.clients if clients is None else clients)
        self.interval_s = s.status_interval_s
        self.listen = f"{s.host}:{s.port}"
        self.host = f"{socket.gethostname()} {self.listen}"
        self.pid = os.getpid()
        self.skipped = 0          # seconds whose figures could not be published
        self._last = time.monotonic()
        self._errors = {client.name: client.stats()["errors"] for client in self.clients}
        metrics.RECENT.take()     # what came before the first interval is not in it

    def figures(self, loop_lag_s: float) -> dict[str, Any]:
        """This worker's figures since the last call."""
        now = time.monotonic()
        elapsed = max(now - self._last, 1e-6)
        self._last = now
        count, durations = metrics.RECENT.take()
        durations.sort()
        backends = []
        for client in self.clients:
            stats = client.stats()
            errors = stats["errors"]
            grown = max(0, errors - self._errors.get(client.name, 0))
            self._errors[client.name] = errors
            backends.append({"name": client.name, "connected": stats["connected"], "errors": errors,
                             "errors_per_s": round(grown / elapsed, 2), "in_flight": stats["in_flight"],
                             "pool_in_use": stats["pool_in_use"], "pool_max": stats["pool_max"]})
        return {
            "host": self.host, "hostname": socket.gethostname(), "listen": self.listen, "pid": self.pid,
            "ts": time.time(), "interval_s": self.interval_s, "draining": self.ctx.draining,
            "requests_per_s": round(count / elapsed, 2),
            "p50_ms": _ms(percentile(durations, 0.5)), "p99_ms": _ms(percentile(durations, 0.99)),
            "in_flight": self.ctx.in_flight, "loop_lag_ms": _ms(loop_lag_s),
            "ws_connections": len(self.ctx.hub.peers), "backends": backends, "skipped": self.skipped,
        }

    async def publish(self, loop_lag_s: float) -> bool:
        """Publish the figures; False (and counted in ``skipped``) if Redis did not take them within an interval."""
        data = orjson.dumps(self.figures(loop_lag_s))
        try:
            async with asyncio.timeout(self.interval_s):
                await self.ctx.hub.history.publish(CHANNEL, data)
        except (DriverError, TimeoutError, OSError):
            self.skipped += 1
            return False
        return True

    async def run(self) -> None:
        """Publish every interval until cancelled; the loop's lag is how late this task's own timer woke."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval_s
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            lag = max(0.0, loop.time() - due)
            await self.publish(lag)
            due += self.interval_s
            if due < loop.time():          # a publish took the whole interval: start again from now
                due = loop.time() + self.interval_s


def start(ctx: Context) -> asyncio.Task[None] | None:
    """The publishing task, started in the running loop; None when ``server.status_interval_s`` is 0."""
    if ctx.settings.server.status_interval_s <= 0:
        return None
    protocol.check_channel(CHANNEL)
    return asyncio.create_task(StatusReporter(ctx).run(), name="status-reporter")


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel the publishing task and wait for it."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
