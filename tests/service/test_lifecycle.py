"""Graceful shutdown, and ``serve --workers N``."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.conftest import start_server
from tests.service.http import async_client, call, timed_fetch


async def test_sigterm_lets_slow_requests_finish_and_exits_0(seeded: None) -> None:
    # Default pools: 10 slow requests, half the MySQL pool, all admitted and in flight at the signal.
    srv = start_server(env={"ASYNCSTACK_SERVER__SHUTDOWN_GRACE_S": "0.3"})
    client = async_client(100)
    try:
        burst = asyncio.gather(*(timed_fetch(client, srv.url + "/mysql/sleep?s=1") for _ in range(10)))
        await asyncio.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        status, _, body = await asyncio.to_thread(call, srv.url + "/readyz")  # during the grace period
        assert (status, body["status"]) == (503, "draining")
        results = await burst
        assert [r.code for r, _ in results] == [200] * 10
        code = await asyncio.to_thread(srv.proc.wait, 15)
        assert code == 0, srv.stderr()
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
        workers = srv.listening(2)      # start_server returned once the first one answered
        # Each call is a new connection, spread over the two listening sockets by the kernel.
        pids = {call(srv.url + "/now")[2]["pid"] for _ in range(40)}
        assert pids == workers
        assert call(srv.url + "/fanout/7")[0] == 200
    finally:
        assert srv.stop() == 0
    for pid in workers:   # the workers exited with the parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
