"""A server the machine stops running for a while keeps its limits (a real server, MariaDB behind it, defaults).

When a hypervisor or another process takes the CPU, the event loop runs late without having
done any work: admitting fewer MySQL calls would not make it earlier, so it is not congestion
(``drivers.limits.LoopLag`` counts lateness in the share its thread was on the CPU).  Here the
test stops the server (SIGSTOP, then SIGCONT) for 10 ms every 40 ms while 40 connections keep
the default MySQL pool (20) busy.  Counted whole, those stalls cut the limit every window,
down to its minimum (4) within about a second.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess, start_server
from tests.service.test_read_gate import _closed_loop, _metric

CONNECTIONS = 40        # twice the default pool: the limit is what holds calls back, so it may grow
SLEEP_S = 0.05
RUN_S = 3.0
STOP_S, EVERY_S = 0.010, 0.040


@pytest.fixture(scope="module")
def server(stack: None) -> Iterator[ServerProcess]:
    srv = start_server(env={"ASYNCSTACK_SERVER__ACCESS_LOG": "false"})
    yield srv
    srv.stop()


def _stop_now_and_then(pid: int, until: float) -> None:
    """Take the CPU from the server now and then, as a busy machine does; bounded by ``until``."""
    while time.monotonic() < until:
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(STOP_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(EVERY_S - STOP_S)


async def test_a_server_the_machine_stops_now_and_then_keeps_its_limit(server: ServerProcess) -> None:
    (pid,) = server.listening(1)
    until = time.monotonic() + RUN_S
    stopper = threading.Thread(target=_stop_now_and_then, args=(pid, until))
    stopper.start()
    try:
        load = [asyncio.ensure_future(_closed_loop(server.port, f"/mysql/sleep?s={SLEEP_S}", until))
                for _ in range(CONNECTIONS)]
        await asyncio.sleep(1.0)
        limits = []
        while time.monotonic() < until - 0.2:
            limits.append(await _metric(server.port, 'backend_limit{backend="mysql",stat="limit"}'))
            await asyncio.sleep(0.2)
        runs = await asyncio.gather(*load)
    finally:
        stopper.join()
    # The limit starts at the pool's 20 and may only be cut by congestion: the stalls are none.
    # (Counted whole, it was at 4-5 from the second second on.)
    assert limits and statistics.median(limits) >= 15, limits
    served = sum(statuses.count(200) for statuses in runs)
    assert served >= 0.5 * RUN_S * 20 / SLEEP_S, f"only {served} answers in {RUN_S} s"   # pool 20, 50 ms each
