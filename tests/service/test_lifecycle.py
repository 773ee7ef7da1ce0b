"""Graceful shutdown, and ``serve --workers N``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import pytest

from tests.conftest import ServerProcess, start_server
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
        assert code == 0, srv.proc.stderr.read() if srv.proc.stderr else ""
    finally:
        client.close()
        srv.stop()


def test_sigterm_on_an_idle_server_exits_0_promptly(seeded: None) -> None:
    srv = start_server()
    began = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - began < 3


def _serving(srv: ServerProcess) -> set[int]:
    """The pids of the workers that said they listen ("serving on ... (pid N)" on stdout)."""
    return {int(pid) for pid in re.findall(r"^serving on \S+ \(pid (\d+)\)$", srv.stdout(), re.M)}


def test_workers_share_the_port_and_stop_together(seeded: None) -> None:
    srv = start_server("--workers", "2")
    try:
        # start_server returns once one worker answers: wait until both listen before sampling.
        deadline = time.monotonic() + 30
        while len(workers := _serving(srv)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 2, srv.stdout()
        # Each call is a new connection, spread over the two listening sockets by the kernel.
        pids = {call(srv.url + "/now")[2]["pid"] for _ in range(40)}
        assert pids == workers
        assert call(srv.url + "/fanout/7")[0] == 200
    finally:
        assert srv.stop() == 0
    for pid in workers:   # the workers exited with the parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
