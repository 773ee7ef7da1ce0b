"""The process model and shutdown as docs/service.md describes them, on real server processes.

- ``serve`` exits 2 with a one-line message naming the backend when one cannot be reached, with one
  worker and with several (one worker that cannot start stops them all, at once);
- ``--workers 0`` runs one worker per CPU; a worker that dies is replaced by another;
- on SIGTERM: ``/readyz`` says 503 for ``shutdown_grace_s`` while the listener still accepts, then the
  listener closes; requests still running after ``shutdown_timeout_s`` are given up with a warning
  and the process exits 0;
- SIGINT shuts down like SIGTERM, with one worker and with several.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, run_app, start_server
from tests.service.http import async_client, call, timed_fetch
from tests.service.test_faults import fetch


def pids_of(srv: ServerProcess, want: int, within: float = 15.0) -> set[int]:
    """The worker pids answering ``/now`` (each call a new connection), once ``want`` of them did."""
    seen: set[int] = set()
    deadline = time.monotonic() + within
    while len(seen) < want and time.monotonic() < deadline:
        try:
            status, _, body = call(srv.url + "/now", timeout=2)
        except OSError:          # a worker that just died reset its queued connections
            continue
        if status == 200:
            seen.add(int(body["pid"]))
    return seen


def connects(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stderr_after_exit(srv: ServerProcess) -> str:
    assert srv.proc.poll() is not None
    return srv.stderr()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_backend_that_cannot_be_reached_stops_serve_with_exit_2_naming_it(stack: None, workers: str) -> None:
    began = time.monotonic()
    done = run_app("serve", "--port", "1", "--workers", workers, env={"ASYNCSTACK_MYSQL__PORT": "1"}, timeout=60)
    took = time.monotonic() - began
    assert done.returncode == 2, done.stderr
    assert "error: cannot start: mysql at 127.0.0.1:1" in done.stderr
    assert "starting another" not in done.stderr          # a worker that cannot start is not restarted
    assert took < 10, took


def test_workers_0_runs_one_worker_per_cpu(seeded: None) -> None:
    cpus = os.cpu_count() or 1
    srv = start_server("--workers", "0")
    try:
        seen = pids_of(srv, cpus)
        seen |= pids_of(srv, cpus + 1, within=1)                 # and no more
        assert len(seen) == cpus, seen
    finally:
        assert srv.stop() == 0


def test_a_worker_that_dies_is_replaced(seeded: None, tmp_path: Path) -> None:
    """(Two workers from the environment, their metrics in ``server.metrics_dir``.)"""
    srv = start_server(env={"ASYNCSTACK_SERVER__WORKERS": "2", "ASYNCSTACK_SERVER__METRICS_DIR": str(tmp_path)})
    try:
        first = pids_of(srv, 2)
        assert len(first) == 2, first
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        later: set[int] = set()
        deadline = time.monotonic() + 15
        while len(later) < 2 and time.monotonic() < deadline:   # both answer again: one of them new
            later = pids_of(srv, 2, within=1) - {victim}
        assert len(later) == 2 and victim not in later, (first, later)
        assert srv.proc.poll() is None
        assert list(tmp_path.glob("*.db")), "no metrics files in server.metrics_dir"
    finally:
        assert srv.stop() == 0
    assert f"warning: worker {victim} exited with -9; starting another" in stderr_after_exit(srv)


async def test_sigterm_answers_readyz_503_while_still_listening_for_the_grace_period(seeded: None) -> None:
    grace_s = 1.5
    srv = start_server(env={"ASYNCSTACK_SERVER__SHUTDOWN_GRACE_S": str(grace_s)})
    try:
        srv.proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        await asyncio.sleep(0.3)
        status, _, body = await asyncio.to_thread(call, srv.url + "/readyz")   # a new connection: accepted
        assert (status, body["status"]) == (503, "draining")
        assert (await asyncio.to_thread(call, srv.url + "/now"))[0] == 200     # and served
        assert time.monotonic() - began < grace_s - 0.2
        await asyncio.sleep(grace_s + 0.5 - (time.monotonic() - began))
        assert not connects(srv.port)                                          # the listener is closed now
        assert await asyncio.to_thread(srv.proc.wait, 15) == 0
    finally:
        srv.stop()


async def test_requests_still_running_after_shutdown_timeout_s_are_given_up_and_the_exit_is_0(
        seeded: None) -> None:
    timeout_s = 0.5
    srv = start_server(env={"ASYNCSTACK_SERVER__SHUTDOWN_TIMEOUT_S": str(timeout_s)})
    client = async_client(4)
    try:
        slow = asyncio.ensure_future(fetch(client, srv.url + "/mysql/sleep?s=4"))
        await asyncio.sleep(0.3)
        srv.proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        code = await asyncio.to_thread(srv.proc.wait, 15)
        took = time.monotonic() - began
        answer = await slow
    finally:
        client.close()
        srv.stop()
    assert code == 0
    assert timeout_s <= took < timeout_s + 1.5, took     # not the 4 s the request wanted
    assert answer.status == 599, answer.body               # its connection was closed, unanswered
    assert f"warning: 1 requests still in flight after {timeout_s:g} s; closing" in stderr_after_exit(srv)


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sigint_shuts_down_like_sigterm(seeded: None, workers: str) -> None:
    srv = start_server("--workers", workers)
    client = async_client(10)
    try:
        if workers == "2":
            assert len(await asyncio.to_thread(pids_of, srv, 2)) == 2
        burst = asyncio.gather(*(timed_fetch(client, srv.url + "/mysql/sleep?s=1") for _ in range(4)))
        await asyncio.sleep(0.3)
        srv.proc.send_signal(signal.SIGINT)
        results = await burst
        code = await asyncio.to_thread(srv.proc.wait, 15)
    finally:
        client.close()
        srv.stop()
    err = stderr_after_exit(srv)
    assert [r.code for r, _ in results] == [200] * 4          # the requests in flight finished
    assert code == 0, err
    assert "Traceback" not in err

