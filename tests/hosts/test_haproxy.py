"""HAProxy in front of the hosts: its checks ask ``/healthz``, so a backend every host shares going
down takes no host out (``/readyz`` would say 503 on all of them at once)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from stack.hosts import HAPROXY, SERVE_PORT, Host
from stack.process import STATE, read_pid
from tests.hosts.conftest import hosts_running, request


@pytest.fixture(scope="module")
def hosts(stack: None) -> Iterator[list[Host]]:
    yield from hosts_running(balancer="haproxy")


def test_a_shared_backend_down_takes_no_host_out_of_haproxy(hosts: list[Host]) -> None:
    mongo = read_pid(STATE / "mongo" / "pid")
    assert mongo is not None, "the stack's MongoDB server is not running"
    os.kill(mongo.pid, signal.SIGSTOP)              # every host's /readyz now fails on mongo
    try:
        ready = Counter(request("GET", "/readyz", address=h.address, port=SERVE_PORT)[0] for h in hosts)
        answers: Counter[int] = Counter()
        deadline = time.monotonic() + 8             # above the 0.5 + 3 x 2 s checks take to mark a host down
        while time.monotonic() < deadline:
            answers[request("GET", "/now")[0]] += 1
            time.sleep(0.05)
        states = {HAPROXY.server_status(h.upstream) for h in hosts}
    finally:
        os.kill(mongo.pid, signal.SIGCONT)
    assert ready == Counter({503: len(hosts)})     # the hosts do say a backend is down
    assert set(answers) == {200} and answers[200] > 20, answers
    assert states == {"UP"}, states
