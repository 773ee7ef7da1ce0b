"""Graceful shutdown, and ``serve --workers N``."""

from __future__ import annotations

import asyncio
import signal
import time

from tests.conftest import BIG_POOLS, start_server
from tests.service.http import async_client, call, timed_fetch


async def test_sigterm_lets_slow_requests_finish_and_exits_0(seeded: None) -> None:
    srv = start_server(env={**BIG_POOLS, "ASYNCSTACK_SERVER__SHUTDOWN_GRACE_S": "0.3"})
    client = async_client(100)
    try:
        burst = asyncio.gather(*(timed_fetch(client, srv.url + "/mysql/sleep?s=1") for _ in range(50)))
        await asyncio.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        status, _, body = await asyncio.to_thread(call, srv.url + "/readyz")  # during the grace period
        assert (status, body["status"]) == (503, "draining")
        results = await burst
        assert [r.code for r, _ in results] == [200] * 50
        code = await asyncio.to_thread(srv.proc.wait, 15)
        assert code == 0, srv.proc.stderr.read() if srv.proc.stderr else ""
    finally:
        client.close()
        srv.stop()


def test_sigterm_on_an_idle_server_exits_0_promptly(seeded: None) -> None:
    srv = start_server()
    began = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - began < 3


def test_workers_share_the_port_and_stop_together(seeded: None) -> None:
    srv = start_server("--workers", "2")
    try:
        pids = {call(srv.url + "/now")[2]["pid"] for _ in range(40)}
        assert len(pids) == 2, pids
        assert call(srv.url + "/fanout/7")[0] == 200
    finally:
        assert srv.stop() == 0
