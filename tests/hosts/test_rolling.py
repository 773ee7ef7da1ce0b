"""``stack hosts restart --rolling`` under load: no request fails, every WebSocket resumes, no message lost or repeated.

Through the balancer (nginx, then HAProxy), while the three hosts restart one at a time: a
constant HTTP load (keep-alive connections, GETs of /now and /mysql/items/7), WebSocket subscribers
of one channel, and a publisher posting to that channel at a steady rate.  Subscribers resume with the last id they saw
(docs/websocket.md); every message published must reach every subscriber once, in order.  All of
it stays inside the channel's history window (``ws.history_size`` messages, ``ws.history_ttl_s``).

SUBSCRIBERS is 1,000, the number asked for: on 2 cores shared by this client, nginx, the six serve
processes and the backends, the test still takes about 33 s (the restart about 18 s).  The cores
are then the limit: the publisher manages about 4 of its 10 messages a second (with 200
subscribers, 7), which still tests each subscriber's resume across every restart.

"Failed" and "resent" are as tests/hosts/load.py says.  A retiring nginx worker closes each client's
kept-alive connection (between two requests, or after an answer); a GET sent on it just then is sent
again on a new connection and counted as ``resent``: about one per connection and reload (32 x 6).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from app.settings import load_settings
from stack.hosts import BALANCERS, HAPROXY, NGINX_PORT, Host, balancer, publish_token
from tests.conftest import run_stack_async
from tests.hosts.conftest import hosts_running
from tests.hosts.load import Load, Subscriber, cancel_all, catch_up, http_client, namespaces, publish, subscribe

SUBSCRIBERS = 1000
HTTP_CONCURRENCY = 32               # keep-alive connections, each one GET after the other
PUBLISH_EVERY_S = 0.1               # 10 messages a second
PATHS = ("/now", "/mysql/items/7")
BOUND_S = 60


def _balancer_evidence() -> str:
    """What HAProxy logged besides plain successes (a failed run prints it): answers other than 200 and
    101 with their termination states, and hosts its checks marked down."""
    if balancer() != "haproxy":
        return ""
    lines = HAPROXY.log_file.read_text(errors="replace").splitlines()
    odd = [ln for ln in lines if ("is DOWN" in ln and not ln.startswith("[")) or
           (ln.startswith("{") and '"status":200,' not in ln and '"status":101,' not in ln)]
    return "HAProxy's log, besides its 200s and 101s (last 30):\n" + "\n".join(odd[-30:])


def _restart_times(stdout: str) -> list[float]:
    """Each host's restart duration, from the command's per-host lines."""
    return [float(t) for t in re.findall(r"^  h\d .*; ([\d.]+) s$", stdout, re.M)]


@pytest.fixture(scope="module", params=BALANCERS)
def hosts(request: pytest.FixtureRequest, stack: None) -> Iterator[list[Host]]:
    """The three hosts behind nginx, then behind HAProxy (taken out through its admin socket)."""
    yield from hosts_running(balancer=request.param)


async def test_a_burst_of_websocket_handshakes_through_the_balancer_all_succeed(hosts: list[Host]) -> None:
    """What the restart of a host sends the others: its subscribers all at once.  With Tornado's listen
    queue of 128 the hosts' kernels dropped SYNs over it and nginx answered 504 after its 1 s connect
    timeout (about 1 handshake in 12 here); with app.server.LISTEN_BACKLOG none."""

    async def handshake() -> str:
        try:
            async with connect(f"ws://127.0.0.1:{NGINX_PORT}/ws", open_timeout=15, ping_interval=None):
                await asyncio.sleep(2)          # all open at once
            return "ok"
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            return repr(exc)[:100]

    outcomes = Counter(await asyncio.wait_for(asyncio.gather(*(handshake() for _ in range(1500))), 40))
    assert outcomes == Counter({"ok": 1500})


@pytest.mark.timeout(BOUND_S + 60)
async def test_a_rolling_restart_under_load_fails_no_request_and_loses_no_message(hosts: list[Host]) -> None:
    ws_settings = load_settings().ws
    token = publish_token(load_settings())
    channel = f"rolling-{uuid.uuid4().hex[:8]}"
    hosts_by_ns = namespaces(hosts)
    load, stop = Load(prefix=channel), asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    published: list[str] = []
    began = time.monotonic()
    try:
        async with asyncio.timeout(BOUND_S):
            origin = await publish(channel, token, -1)
            subs = [Subscriber(origin) for _ in range(SUBSCRIBERS)]
            for n in range(0, SUBSCRIBERS, 100):          # in steps, not as one burst of handshakes
                batch = subs[n:n + 100]
                tasks += [asyncio.create_task(subscribe(s, channel, hosts_by_ns, stop)) for s in batch]
                await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in batch)), 20)
            tasks += [asyncio.create_task(http_client(load, PATHS[n % len(PATHS)]))
                      for n in range(HTTP_CONCURRENCY)]

            async def publisher() -> None:
                while not load.stop.is_set():
                    published.append(await publish(channel, token, len(published)))
                    await asyncio.sleep(PUBLISH_EVERY_S)

            publishing = asyncio.create_task(publisher())
            await asyncio.sleep(1)
            before = load.statuses.total()
            restart_began = time.monotonic()
            done = await run_stack_async("hosts", "restart", "--rolling")
            restart_s = time.monotonic() - restart_began
            during = load.statuses.total() - before
            assert done.returncode == 0, f"restart --rolling failed:\n{done.stdout}\n{done.stderr}"
            await asyncio.sleep(1)
            load.stop.set()
            await publishing
            # every subscriber catches up with the last message, within a bound
            await catch_up(subs, published, 10)
    except BaseException:
        print(_balancer_evidence())
        raise
    finally:
        load.stop.set()
        stop.set()
        await cancel_all(tasks)

    per_host = _restart_times(done.stdout)
    reconnects = sum(len(s.hosts) - 1 for s in subs)
    print(f"\n{done.stdout.rstrip()}")
    print(f"{during} requests during the {restart_s:.1f} s restart ({load.statuses.total()} in all, "
          f"{sum(load.statuses.values()) - load.statuses[200]} not 200, {len(load.failures)} failed, "
          f"{load.resent} resent after nginx closed an idle keep-alive connection); per host {per_host} s; "
          f"{len(published)} messages to {SUBSCRIBERS} subscribers, {reconnects} reconnections; "
          f"{time.monotonic() - began:.1f} s in all")
    assert len(published) + 1 <= ws_settings.history_size       # the whole run stays inside the window
    assert time.monotonic() - began < ws_settings.history_ttl_s
    assert load.failures == [] and set(load.statuses) == {200}, (load.failures[:10], load.statuses)
    assert during > 100 and len(per_host) == len(hosts), (during, done.stdout)
    assert all(s.failed_handshakes == [] for s in subs), [s.failed_handshakes for s in subs if s.failed_handshakes]
    # every host restarted closed its subscribers with 1001 (going away), and each of them
    # reconnected through nginx to another host and resumed completely
    closes = Counter(code for s in subs for code in s.closes)
    print(f"close codes seen by the subscribers: {dict(closes)}")
    for s in subs:          # each was on a host when it restarted: closed at least once
        assert s.closes, s.hosts
        assert set(s.closes) == {1001}, (s.closes, s.hosts, s.subscribed_at, len(s.received))
        assert len(s.hosts) == len(s.closes) + 1 and all(a != b for a, b in pairwise(s.hosts)), s.hosts
        assert -1 not in s.hosts and all(s.resumed), (s.hosts, s.resumed)
    # every subscriber received every message, once, in order
    wrong = [s for s in subs if s.received != published]
    assert not wrong, (f"{len(wrong)} of {SUBSCRIBERS} subscribers differ; the first got {len(wrong[0].received)} "
                       f"of {len(published)}, duplicates {len(wrong[0].received) - len(set(wrong[0].received))}")
