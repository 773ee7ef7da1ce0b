"""GET /status in a real headless chromium, against a service with two workers.

The page is read through its DOM: one ``tr.worker`` per worker (``data-host``, ``data-pid``,
``data-state`` up/down/draining, the class ``down`` that paints it red), one ``tr.host`` per host
with the host's totals; each figure's cell has ``data-field`` and its number in ``data-value``.
Chromium comes from the project's setup (``stack.services.chromium()`` installs it if missing) and
is killed at the end of the module, also when a test fails.  The screenshot is written to
bench/results/status.png.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from stack import services
from tests.conftest import ROOT, ServerProcess, start_server
from tests.status.browser import Browser

pytestmark = pytest.mark.timeout(90)

SCREENSHOT = ROOT / "bench" / "results" / "status.png"
STATUS_INTERVAL_S = 1.0        # the default of server.status_interval_s, given explicitly
DOWN_AFTER_S = 3.0             # the page's threshold (app/static/status.js)
T = TypeVar("T")

WORKER_ROWS = """[...document.querySelectorAll("tr.worker")].map((row) => ({
  host: row.dataset.host, pid: Number(row.dataset.pid), state: row.dataset.state,
  down: row.classList.contains("down"),
  background: getComputedStyle(row.querySelector("td")).backgroundColor,
  rps: row.querySelector('[data-field="rps"]').dataset.value,
  p99: row.querySelector('[data-field="p99"]').dataset.value,
  lag: row.querySelector('[data-field="loop_lag"]').dataset.value,
  silent_ms: Number(row.querySelector('[data-field="seen"]').dataset.value),
  backends: [...row.querySelectorAll(".backend")].map((b) => [b.dataset.backend, b.dataset.connected]),
}))"""
HOST_RPS = """(() => {{
  const cell = document.querySelector('tr.host[data-host="{host}"] [data-field="rps"]');
  return cell ? Number(cell.dataset.value) : null;
}})()"""
DOWN_RED = "rgb(253, 226, 226)"    # --down-bg in status.css


def wait_for(check: Callable[[], T | None], within_s: float, what: str, every_s: float = 0.1) -> T:
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        time.sleep(every_s)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = Browser.launch(services.chromium())
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def two_workers(seeded: None) -> Iterator[ServerProcess]:
    server = start_server("--workers", "2", env={"ASYNCSTACK_SERVER__STATUS_INTERVAL_S": str(STATUS_INTERVAL_S)})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(browser: Browser, two_workers: ServerProcess) -> Browser:
    browser.navigate(two_workers.url + "/status")
    return browser


def this_host(server: ServerProcess) -> str:
    """What the workers of ``server`` publish as their host: the machine's name and the listen address."""
    return f"{socket.gethostname()} 127.0.0.1:{server.port}"


def workers(page: Browser, server: ServerProcess) -> list[dict[str, Any]]:
    return [row for row in page.evaluate(WORKER_ROWS) if row["host"] == this_host(server)]


def load(server: ServerProcess, seconds: float, threads: int = 8, pause_s: float = 0.0,
         until: threading.Event | None = None) -> list[int]:
    """GET /now and /mysql/items/7 in turn from ``threads`` threads for ``seconds`` (or until ``until`` is set),
    a new connection each (so the kernel spreads them over the workers); the statuses, 0 for a request
    whose connection failed (its worker was killed)."""
    statuses: list[int] = []
    stop_at = time.monotonic() + seconds
    done = until or threading.Event()

    def client() -> None:
        paths = ["/now", "/mysql/items/7"]
        n = 0
        while time.monotonic() < stop_at and not done.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                conn.request("GET", paths[n % 2])
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
            except OSError:
                statuses.append(0)
            finally:
                conn.close()
            n += 1
            time.sleep(pause_s)

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return statuses


def test_the_page_shows_both_workers_of_this_host_with_their_figures(page: Browser,
                                                                     two_workers: ServerProcess) -> None:
    pids = two_workers.listening(2)

    def both_up() -> list[dict[str, Any]] | None:
        rows = workers(page, two_workers)
        complete = [r for r in rows if r["state"] == "up" and r.get("rps") is not None and r.get("lag") is not None]
        return rows if {r["pid"] for r in complete} == pids else None

    rows = wait_for(both_up, 10, "two workers up with figures")
    assert len(rows) == 2
    for row in rows:
        assert not row["down"]
        assert float(row["rps"]) >= 0 and float(row["lag"]) >= 0
        assert row["backends"] == [["mysql", "true"], ["redis", "true"], ["mongo", "true"], ["ignite", "true"]]
    assert page.evaluate("document.getElementById('connection').dataset.state") == "open"


def test_requests_per_second_rise_for_this_host_under_load(page: Browser, two_workers: ServerProcess) -> None:
    host_rps = HOST_RPS.format(host=this_host(two_workers))
    wait_for(lambda: page.evaluate(host_rps) is not None, 10, "the host's row")
    idle = page.evaluate(host_rps)
    highest = [idle]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            highest.append(page.evaluate(host_rps))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        statuses = load(two_workers, seconds=3.0)
        time.sleep(STATUS_INTERVAL_S + 0.3)          # the figures of the last second of load
    finally:
        sampling.set()
        sampler.join()
    assert len(statuses) >= 300 and set(statuses) == {200}, (len(statuses), set(statuses))
    peak = max(v for v in highest if v is not None)
    assert idle < 20, idle
    assert peak > max(5 * idle, 50), (idle, peak, len(statuses))
    p99 = [float(r["p99"]) for r in workers(page, two_workers) if r.get("p99") is not None]
    assert p99 and all(v > 0 for v in p99)


def test_a_killed_worker_is_shown_down_in_red_then_its_replacement_up(page: Browser,
                                                                       two_workers: ServerProcess) -> None:
    pids = two_workers.listening(2)
    wait_for(lambda: {r["pid"] for r in workers(page, two_workers) if r["state"] == "up"} == pids, 10,
             "both workers up before the kill")
    victim, survivor = sorted(pids)
    # A light load meanwhile, so the page (and its screenshot) has figures to show.
    stop_load = threading.Event()
    background = threading.Thread(target=load, args=(two_workers, 60.0), daemon=True,
                                  kwargs={"threads": 2, "pause_s": 0.02, "until": stop_load})
    background.start()
    try:
        check_kill_and_restart(page, two_workers, pids, victim, survivor)
    finally:
        stop_load.set()
        background.join()


def check_kill_and_restart(page: Browser, two_workers: ServerProcess, pids: set[int], victim: int,
                           survivor: int) -> None:
    time.sleep(STATUS_INTERVAL_S + 0.5)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    def victim_down() -> dict[str, Any] | None:
        return next((r for r in workers(page, two_workers) if r["pid"] == victim and r["state"] == "down"), None)

    # Its last figures were sent up to one interval before the kill; the page waits 3 s of silence.
    row = wait_for(victim_down, DOWN_AFTER_S + STATUS_INTERVAL_S + 2.0, f"worker {victim} shown down",
                   every_s=0.05)
    took = time.monotonic() - killed_at
    # Down once its last figures are 3 s old (the page redraws every 0.25 s), not before, not much later.
    assert DOWN_AFTER_S * 1000 <= row["silent_ms"] <= DOWN_AFTER_S * 1000 + 700, row
    assert DOWN_AFTER_S - STATUS_INTERVAL_S - 0.1 <= took <= DOWN_AFTER_S + STATUS_INTERVAL_S + 1.0, took
    assert row["down"] and row["background"] == DOWN_RED
    assert next(r for r in workers(page, two_workers) if r["pid"] == survivor)["state"] == "up"

    def replacement() -> dict[str, Any] | None:
        return next((r for r in workers(page, two_workers) if r["pid"] not in pids and r["state"] == "up"), None)

    new = wait_for(replacement, 20, "the restarted worker's figures")
    assert new["backends"] == [["mysql", "true"], ["redis", "true"], ["mongo", "true"], ["ignite", "true"]]
    states = {r["pid"]: r["state"] for r in workers(page, two_workers)}
    assert states == {victim: "down", survivor: "up", new["pid"]: "up"}
    page.screenshot(SCREENSHOT)
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"worker {victim} shown down {took:.2f} s after SIGKILL, {row['silent_ms']} ms after its last figures; "
          f"replacement pid {new['pid']}; {SCREENSHOT}")

