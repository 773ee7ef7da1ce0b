"""The service on three simulated hosts behind nginx: spread, forwarded addresses, retries, cleanup.

Real network namespaces, a real nginx and the real stack (``python -m stack hosts``).  Tests that
kill a host run ``hosts up`` again afterwards: it starts only what is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.asyncio.client import connect

from app.settings import load_settings
from stack.hosts import BRIDGE_IP, NGINX_PORT, SERVE_PORT, Host
from tests.conftest import ROOT
from tests.hosts.conftest import (
    access_lines,
    hosts_cmd,
    kill_host,
    leftovers,
    nginx_lines,
    request,
    restore_hosts,
    signal_host,
)


def test_requests_through_nginx_are_spread_over_every_host(hosts: list[Host]) -> None:
    run = f"spread-{uuid.uuid4().hex}"
    for n in range(30):
        status, _ = request("GET", "/now", {"X-Request-ID": f"{run}-{n}"})
        assert status == 200
    answered = {h.netns: len(access_lines(h, run, expect=10)) for h in hosts}
    assert sum(answered.values()) == 30, answered
    assert all(count >= 5 for count in answered.values()), answered     # round robin: about 10 each


def test_status_lists_each_host_its_workers_and_readiness_and_nginx(hosts: list[Host]) -> None:
    done = hosts_cmd("status", timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    for h in hosts:
        row = next(line for line in done.stdout.splitlines() if line.startswith(f"h{h.index} "))
        assert h.netns in row and f"{h.address}:{SERVE_PORT}" in row and "200 ready" in row, row
        parent, workers = row.split(f"{h.address}:{SERVE_PORT}")[1].split("200 ready")[0].split(":")
        assert int(parent) > 0 and len(workers.split()) == 2, row
    assert "nginx" in done.stdout and "running (pid" in done.stdout


def test_a_forwarded_address_is_believed_only_from_the_balancer(hosts: list[Host]) -> None:
    via_nginx = f"xff-nginx-{uuid.uuid4().hex}"
    status, _ = request("GET", "/now", {"X-Request-ID": via_nginx, "X-Forwarded-For": "203.0.113.9"})
    assert status == 200
    lines = [ln for h in hosts for ln in access_lines(h, via_nginx, within_s=1)]
    # nginx appends the peer it saw (127.0.0.1) and sets X-Real-IP to it; the host trusts nginx's address
    assert [ln["remote"] for ln in lines] == ["127.0.0.1"]

    direct = f"xff-direct-{uuid.uuid4().hex}"
    target, other = hosts[0], hosts[1]
    script = ("import http.client, sys; c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5); "
              "c.request('GET', '/now', headers={'X-Request-ID': sys.argv[3], 'X-Forwarded-For': '203.0.113.9', "
              "'X-Real-Ip': '203.0.113.9'}); print(c.getresponse().status)")
    done = subprocess.run(["ip", "netns", "exec", other.netns, sys.executable, "-c", script, target.address,
                           str(SERVE_PORT), direct], capture_output=True, text=True, timeout=15, check=False, cwd=ROOT)
    assert done.stdout.strip() == "200", done.stderr
    (line,) = access_lines(target, direct)
    assert line["remote"] == other.address          # the real peer, another host: not a trusted proxy
    assert other.address != BRIDGE_IP


def test_a_get_whose_host_refuses_connections_is_retried_on_another_host(hosts: list[Host]) -> None:
    refusing = hosts[1]
    kill_host(refusing)
    try:
        run = f"refused-{uuid.uuid4().hex}"
        statuses = [request("GET", "/now", {"X-Request-ID": f"{run}-{n}"})[0] for n in range(6)]
        assert statuses == [200] * 6
        lines = nginx_lines(run, expect=6)
        retried = [ln for ln in lines if ln["upstream"].startswith(refusing.upstream + ", ")]
        assert retried, lines
        assert all(ln["upstream_status"] == "502, 200" for ln in retried), retried
    finally:
        restore_hosts()


def _held_then_killed(host: Host, method: str, path: str, run: str, count: int = 6) -> tuple[Counter[int], list[Any]]:
    """``count`` requests through nginx while ``host`` is stopped, then the host killed: their statuses and log lines.

    A stopped host's kernel still accepts connections and takes the requests nginx sends; killed,
    it resets them: nginx sees an error after the request was sent.
    """
    signal_host(host, signal.SIGSTOP)
    with ThreadPoolExecutor(count) as pool:
        answers = [pool.submit(request, method, path, {"X-Request-ID": f"{run}-{n}"}) for n in range(count)]
        time.sleep(1.5)
        kill_host(host)
        statuses = Counter(a.result()[0] for a in answers)
    return statuses, nginx_lines(run, expect=count)


def test_a_post_sent_to_a_host_that_then_dies_is_not_retried(hosts: list[Host]) -> None:
    key = f"hosts-post-{uuid.uuid4().hex}"
    dying = hosts[0]
    try:
        statuses, lines = _held_then_killed(dying, "POST", f"/redis/counters/{key}/incr", f"post-{uuid.uuid4().hex}")
        assert statuses[502] >= 1 and statuses[200] + statuses[502] == 6, (statuses, lines)
        for ln in lines:                   # one try each: the POSTs sent to the dying host were not resent
            assert "," not in ln["upstream"], ln
            assert (ln["upstream"] == dying.upstream) == (ln["status"] == 502), ln
        counted = subprocess.run(["redis-cli", "-p", str(load_settings().redis.port), "GET", key],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        assert int(counted) == statuses[200]   # each POST that was answered reached the service once
    finally:
        subprocess.run(["redis-cli", "-p", str(load_settings().redis.port), "DEL", key],
                       capture_output=True, timeout=10, check=False)
        restore_hosts()


def test_a_get_sent_to_a_host_that_then_dies_is_retried_on_another(hosts: list[Host]) -> None:
    dying = hosts[2]                       # not one nginx has just seen failing (it would skip it)
    try:
        statuses, lines = _held_then_killed(dying, "GET", "/now", f"get-{uuid.uuid4().hex}")
        assert statuses == Counter({200: 6}), (statuses, lines)
        retried = [ln for ln in lines if ln["upstream"].startswith(dying.upstream + ", ")]
        assert retried and all(ln["upstream_status"] == "502, 200" for ln in retried), lines
    finally:
        restore_hosts()


@pytest.mark.asyncio
async def test_a_websocket_upgrades_through_nginx(hosts: list[Host]) -> None:
    channel = f"hosts-{uuid.uuid4().hex[:8]}"
    async with connect(f"ws://127.0.0.1:{NGINX_PORT}/ws", open_timeout=5, close_timeout=2) as ws:
        served_by = int(ws.response.headers["X-Served-By"])
        await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply == {"type": "subscribed", "channel": channel}
    # a worker inside one of the hosts' namespaces held the upgraded connection
    namespaces = {os.stat(f"/run/netns/{h.netns}").st_ino for h in hosts}
    assert os.readlink(f"/proc/{served_by}/ns/net") in {f"net:[{ino}]" for ino in namespaces}


def test_down_removes_everything_and_again_is_harmless(hosts: list[Host]) -> None:
    # what a crashed `up` could leave: a namespace of ours with a process in it
    subprocess.run(["ip", "netns", "add", "asyncstack-h7"], check=True, timeout=10)
    stray = subprocess.Popen(["ip", "netns", "exec", "asyncstack-h7", "sleep", "300"], start_new_session=True)
    try:
        for _ in range(2):
            began = time.monotonic()
            done = hosts_cmd("down")
            assert done.returncode == 0, done.stdout + done.stderr
            assert time.monotonic() - began < 30
            assert leftovers() == []
        assert stray.wait(5) is not None
    finally:
        if stray.poll() is None:
            stray.kill()


def test_up_without_the_privileges_fails_clearly_and_changes_nothing() -> None:
    # Root without capabilities: an unprivileged user (setpriv --reuid=nobody) cannot run this
    # checkout's interpreter here (its venv links into /root, mode 700); dropping every capability
    # from root is the same lack of permission to the kernel.
    before = leftovers()
    began = time.monotonic()
    done = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-m", "stack",
                           "hosts", "up"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "need root with CAP_SYS_ADMIN and CAP_NET_ADMIN" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - began < 10
    assert leftovers() == before


def test_up_names_a_host_whose_service_cannot_start_and_its_reason(stack: None) -> None:
    began = time.monotonic()
    try:
        done = hosts_cmd("up", "--hosts", "1", "--workers", "1", env={"ASYNCSTACK_MYSQL__PORT": "1"})
        assert done.returncode == 1
        assert "host asyncstack-h0 (10.77.0.11): the service exited while starting" in done.stderr
        assert "cannot start: mysql at 10.77.0.1:1" in done.stderr     # the host's own log, quoted
        assert time.monotonic() - began < 30
    finally:
        assert hosts_cmd("down").returncode == 0
        assert leftovers() == []
