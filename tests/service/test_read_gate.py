"""Read pauses (app.http.gate) on a real server, MariaDB behind it, default settings.

A connection whose last request went through the MySQL limit is not read again while that limit
has no room: its next request waits in the kernel, and is read (and started at once) when a slot
frees, instead of being read, queued and turned away with 503.  Connections of cheap routes are
read as usual.  Run on both transports: on Tornado's own server this also fails if a Tornado
release stops calling the serving loop that ``app.http.tornado_server`` replaces.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess, start_server

CONNECTIONS = 100   # five times the default MySQL pool (20): the limit (capped by the pool) is always full, and
                    # the first requests, arriving together, overflow its queue (some are turned away)
SLEEP_S = 0.1
RUN_S = 2.5


@pytest.fixture(scope="module", params=["fast", "tornado"])
def server(request: pytest.FixtureRequest, stack: None) -> Iterator[ServerProcess]:
    """Both transports: the fast one (the default) and Tornado's own with its serving loop replaced."""
    srv = start_server(env={"ASYNCSTACK_SERVER__ACCESS_LOG": "false", "ASYNCSTACK_SERVER__TRANSPORT": request.param})
    yield srv
    srv.stop()


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    """One request on a kept-alive connection; its status."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _closed_loop(port: int, path: str, until: float) -> list[int]:
    """One kept-alive connection sending its next request as soon as the last is answered (like wrk)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses = []
    try:
        while time.monotonic() < until:
            statuses.append(await _get(reader, writer, path))
    finally:
        writer.close()
    return statuses


async def _metric(port: int, name: str) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        body = (await reader.readexactly(length)).decode()
    finally:
        writer.close()
    found = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


async def test_a_saturated_route_waits_unread_instead_of_being_shed_while_cheap_routes_stay_fast(
        server: ServerProcess) -> None:
    until = time.monotonic() + RUN_S
    slow = [asyncio.ensure_future(_closed_loop(server.port, f"/mysql/sleep?s={SLEEP_S}", until))
            for _ in range(CONNECTIONS)]
    await asyncio.sleep(1.0)
    parked = await _metric(server.port, 'backend_limit{backend="mysql",stat="parked"}')
    now_took = []
    for _ in range(10):                                    # a fresh connection to a cheap route: read at once
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        began = time.monotonic()
        assert await _get(reader, writer, "/now") == 200
        now_took.append(time.monotonic() - began)
        writer.close()
        await asyncio.sleep(0.05)
    runs = await asyncio.gather(*slow)

    assert parked > 0, "no connection was held unread while the MySQL limit was full"
    # Each connection's first request came unannounced (several at once, before anything was known
    # about them) and may have been turned away; later ones are read when a slot is free, so they
    # are not shed, but for one read while the limit had room that still waits in its queue: a stall
    # of the machine longer than pool_wait_timeout_s (0.2 s) sheds it (6 of 309 in one CI run, in an
    # hour when the hypervisor took up to 40% of this machine's CPU time).  At this load the queue alone sheds
    # none either (read pauses off: 0 of about 300), so it is `parked` above that tells pauses apart.
    # A connection whose first request was turned away has the limit on its record: its second
    # is read when there is room, not at once, to be turned away again.
    turned_away = [statuses for statuses in runs if statuses[0] == 503 and len(statuses) > 1]
    again = sum(1 for statuses in turned_away if statuses[1] == 503)
    assert turned_away and again <= 0.1 * len(turned_away), f"{again} of {len(turned_away)} turned away twice"
    later = [status for statuses in runs for status in statuses[1:]]
    shed = sum(1 for status in later if status == 503)
    assert later and set(later) <= {200, 503} and shed <= 0.05 * len(later), \
        {s: later.count(s) for s in set(later)}
    served = sum(len(statuses) for statuses in runs)
    assert served >= 0.5 * RUN_S * 20 / SLEEP_S, f"only {served} answers in {RUN_S} s"   # pool 20, 0.1 s each
    # Far below the read pause (1 s) and the slow route's own wait: this route was never paused.
    assert max(now_took) < 0.25, now_took
