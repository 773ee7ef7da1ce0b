"""A host lost under load: killed (SIGKILL), cut off (its veth set down), frozen (SIGSTOP).

Through nginx, for each fault: 24 keep-alive GET loops (/now and /mysql/items/7), 4 loops of POSTs
(a Redis counter, each POST sent once), and SUBSCRIBERS WebSocket subscribers of one channel whose
publisher posts to a surviving host directly.  The fault lasts FAULT_S, then the host is given back
(started again, its link set up, SIGCONT) and the load goes on a little longer.

What each fault may cost is bounded by what docs/deploy.md ("What a failure costs") measured, with
room: the numbers printed here are that table's source.  For every fault: no POST is sent twice (the
counter counts at most the POSTs answered plus those that failed, and nginx tried each on one host
only), and every subscriber gets every message once, in order, reconnected on another host.

The subscribers ping every PING_S and give up on a connection after PING_S without a pong: that
is how a client notices a host that stopped answering without closing anything (frozen, or cut
off); the service's own pings (``ws.ping_interval_s``) only guard the server side.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from app.settings import load_settings
from stack.hosts import BALANCERS, HAPROXY, NGINX_DIR, SERVE_PORT, Host, balancer, publish_token
from tests.hosts.conftest import hosts_running, kill_host, restore_hosts, signal_host
from tests.hosts.load import (
    Load,
    Subscriber,
    cancel_all,
    catch_up,
    http_client,
    namespaces,
    post_client,
    publish,
    subscribe,
)

SUBSCRIBERS = 300
GET_LOOPS = 24
POST_LOOPS = 4
PING_S = 1.0
PUBLISH_EVERY_S = 0.1
AFTER_S = 2.0                        # load after the host is given back


@dataclass
class Fault:
    name: str
    victim: int
    lasts_s: float
    begin: Callable[[Host], None]
    end: Callable[[Host], None]


def _link(host: Host, state: str) -> None:
    subprocess.run(["ip", "link", "set", host.veth, state], check=True, timeout=10)


FAULTS = {
    "kill": Fault("kill", 0, 6.0, kill_host, lambda h: restore_hosts()),
    "cut": Fault("cut", 1, 14.0, lambda h: _link(h, "down"), lambda h: _link(h, "up")),
    "freeze": Fault("freeze", 2, 20.0, lambda h: signal_host(h, signal.SIGSTOP),
                    lambda h: signal_host(h, signal.SIGCONT)),
}


@dataclass
class Line:
    """One request as the balancer logged it."""

    start: float                     # wall-clock time it was accepted
    seconds: float
    method: str
    status: int
    tries: list[str]                 # the hosts tried, in order ("?" for a try HAProxy does not name)
    first_try_s: float | None        # how long the first try took (nginx only)
    request_id: str = ""
    termination: str = ""            # HAProxy's termination state (its log's %ts), "" for nginx


def _lines(prefix: str) -> list[Line]:
    """This run's requests from nginx's or HAProxy's access log."""
    if balancer() == "haproxy":
        rows = [json.loads(ln) for ln in HAPROXY.log_file.read_text().splitlines()
                if f'"request_id":"{prefix}-' in ln]
        return [Line(float(r["accepted"]), r["ms"] / 1000, r["method"], r["status"],
                     ["?"] * int(r["retries"].lstrip("+") or 0) + [r["upstream"]], None, r["request_id"],
                     r["termination"]) for r in rows]
    rows = [json.loads(ln) for ln in (NGINX_DIR / "access.log").read_text().splitlines()
            if f'"request_id":"{prefix}-' in ln]
    return [Line(float(r["msec"]) - float(r["seconds"]), float(r["seconds"]), r["method"], r["status"],
                 r["upstream"].split(", "), float(r["upstream_seconds"].split(", ")[0]), r["request_id"])
            for r in rows]


def _ran(hosts: list[Host], counter: str) -> tuple[Counter[str], int]:
    """How many times a host took each POST to ``counter``, by request id, from the hosts' access
    logs; and how many of them it answered 200 (a frozen host may answer one past its budget)."""
    ran: Counter[str] = Counter()
    ok = 0
    for h in hosts:
        for line in h.log_file.read_text().splitlines():
            if f"/redis/counters/{counter}/incr" in line and line.startswith("{"):
                entry = json.loads(line)
                ran[entry["request_id"]] += 1
                ok += entry["status"] == 200
    return ran, ok


def _seen_by(hosts: list[Host], request_id: str) -> list[tuple[int, int]]:
    """(host index, status) of each host access-log line of one request: where it ran, if it did."""
    entries = [(h.index, json.loads(line)) for h in hosts for line in h.log_file.read_text().splitlines()
               if line.startswith("{") and request_id in line]
    return [(index, entry["status"]) for index, entry in entries if entry.get("request_id") == request_id]


def _counter(key: str) -> int:
    out = subprocess.run(["redis-cli", "-p", str(load_settings().redis.port), "GET", key],
                         capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    return int(out or 0)


@dataclass
class Measured:
    requests: int
    failed_gets: int
    failed_posts: int
    posts_ok: int
    retried: int                     # requests nginx sent to a second host
    first_second_tries: int          # requests first sent to the victim within 1 s of the fault
    later_tries: int                 # ... from then until it was given back (nginx trying it again)
    longest_s: float                 # the longest any request waited for its answer
    last_failure_s: float            # the last failed request, seconds after the fault
    on_victim: int                   # subscribers on the victim when it failed
    reconnected_within_s: float      # the last of them subscribed again, seconds after the fault


def _measure(fault: Fault, victim: Host, load: Load, subs: list[Subscriber], t0: float, t0_wall: float,
             lines: list[Line], restored_wall: float) -> Measured:
    target = victim.upstream
    tries = sorted(ln.start - t0_wall for ln in lines
                   if ln.tries[0] in (target, "?") and t0_wall <= ln.start < restored_wall)
    victims = [s for s in subs if s.hosts and any(h == victim.index for h in s.hosts[:1])
               and s.subscribed_at[0] < t0 and (len(s.subscribed_at) == 1 or s.subscribed_at[1] > t0)]
    again = [next((t for t in s.subscribed_at if t > t0), float("inf")) - t0 for s in victims]
    return Measured(
        requests=load.statuses.total() + len(load.failures) + load.posts_ok + len(load.posts_failed),
        failed_gets=len(load.failures), failed_posts=len(load.posts_failed), posts_ok=load.posts_ok,
        retried=sum(len(ln.tries) > 1 for ln in lines), first_second_tries=sum(t < 1 for t in tries),
        later_tries=sum(t >= 1 for t in tries), longest_s=max((s for _, s in load.slow), default=0.0),
        last_failure_s=max((t - t0 for t in load.failed_at), default=0.0),
        on_victim=len(victims), reconnected_within_s=max(again, default=0.0))


async def _run(fault: Fault, hosts: list[Host]) -> tuple[Measured, Load, list[Subscriber], list[str], str]:
    settings = load_settings()
    token = publish_token(settings)
    run = f"{fault.name}-{uuid.uuid4().hex[:8]}"
    victim = hosts[fault.victim]
    publisher_host = hosts[(fault.victim + 1) % len(hosts)]
    by_ns = namespaces(hosts)
    load, stop = Load(prefix=run), asyncio.Event()
    counter = f"failures-{run}"
    published: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    given_back = False
    try:
        async with asyncio.timeout(90):
            origin = await publish(run, token, -1, address=publisher_host.address, port=SERVE_PORT)
            subs = [Subscriber(origin) for _ in range(SUBSCRIBERS)]
            for n in range(0, SUBSCRIBERS, 100):
                batch = subs[n:n + 100]
                tasks += [asyncio.create_task(subscribe(s, run, by_ns, stop, ping_interval=PING_S, ping_timeout=PING_S))
                          for s in batch]
                await asyncio.wait_for(asyncio.gather(*(s.subscribed.wait() for s in batch)), 20)
            tasks += [asyncio.create_task(http_client(load, ("/now", "/mysql/items/7")[n % 2]))
                      for n in range(GET_LOOPS)]
            tasks += [asyncio.create_task(post_client(load, f"/redis/counters/{counter}/incr"))
                      for _ in range(POST_LOOPS)]

            async def publisher() -> None:
                while not load.stop.is_set():
                    published.append(await publish(run, token, len(published), address=publisher_host.address,
                                                   port=SERVE_PORT))
                    await asyncio.sleep(PUBLISH_EVERY_S)

            publishing = asyncio.create_task(publisher())
            await asyncio.sleep(2)
            t0, t0_wall = time.monotonic(), time.time()
            await asyncio.to_thread(fault.begin, victim)
            await asyncio.sleep(fault.lasts_s)
            restored_wall = time.time()
            await asyncio.to_thread(fault.end, victim)
            given_back = True
            await asyncio.sleep(AFTER_S)
            load.stop.set()
            await publishing
            await catch_up(subs, published, 15)
    finally:
        load.stop.set()
        stop.set()
        if not given_back:
            await asyncio.to_thread(fault.end, victim)
        load.cancelled_wall = time.time()
        await cancel_all(tasks)
    await asyncio.sleep(0.5)                    # nginx writes each line when its request ends
    measured = _measure(fault, victim, load, subs, t0, t0_wall, _lines(run), restored_wall)
    return measured, load, subs, published, counter


@pytest.fixture(scope="module", params=BALANCERS)
def hosts(request: pytest.FixtureRequest, stack: None) -> Iterator[list[Host]]:
    """The three hosts behind nginx, then behind HAProxy: every fault is measured with both."""
    yield from hosts_running(balancer=request.param)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(FAULTS))
async def test_a_host_lost_under_load_costs_at_most_its_in_flight_requests(hosts: list[Host], name: str) -> None:
    fault = FAULTS[name]
    using = balancer()
    measured, load, subs, published, counter = await _run(fault, hosts)
    lines = _lines(load.prefix)
    print(f"\n{using}, {name}: {measured}; {load.resent} GETs resent on a new connection")
    # what failed was on the victim: its answer came from it (the balancer's 502 or 504 for it), or
    # HAProxy cut it when it marked the victim down (termination "D..."): a POST the victim refused
    # and that was sent on to another host in the same instant is cut with the victim's streams
    victim = hosts[fault.victim].upstream
    # nginx logs 499 for a request whose client closed first: one still in flight when the test
    # cancelled its clients at the end (a CI run saw two, answered 200 by a healthy host) is the
    # test's doing, not a failure
    failed = [ln for ln in lines if ln.status != 200
              and not (ln.status == 499 and ln.start + ln.seconds >= load.cancelled_wall - 0.05)]
    elsewhere = [ln for ln in failed if ln.tries[-1] != victim
                 and not (ln.termination.startswith("D") and len(ln.tries) > 1)]
    assert not elsewhere, [(ln, _seen_by(hosts, ln.request_id)) for ln in elsewhere[:5]]
    # nginx sent a request to another host only when the first had not answered within 2 s: never one
    # that waited for an answer (its read timeout is 10 s) and may have run; for a POST, only when the
    # first gave no connection (refused, or none within the 1 s proxy_connect_timeout: never sent)
    retried = [ln for ln in lines if ln.first_try_s is not None and len(ln.tries) > 1]
    assert all(ln.first_try_s is not None and ln.first_try_s < 2 for ln in retried), retried[:5]
    assert all(ln.first_try_s is not None and ln.first_try_s < 1.1 for ln in retried if ln.method == "POST")
    # POSTs are never run twice: no request id twice in the hosts' access logs (a host killed while
    # running one may not have logged it), and the counter has at least those answered and at most
    # those sent
    assert any(ln.method == "POST" for ln in lines)
    ran, ran_ok = _ran(hosts, counter)
    assert ran and max(ran.values()) == 1, [rid for rid, n in ran.items() if n > 1]
    counted = _counter(counter)
    assert measured.posts_ok <= counted <= load.posts_sent and ran_ok <= counted
    # every subscriber that was on the victim reconnected elsewhere and got every message once, in order
    assert measured.on_victim > 0
    for s in subs:
        assert s.received == published, (len(s.received), len(published), s.hosts, s.closes)
    assert measured.requests > 1000
    (_nginx_bounds if using == "nginx" else _haproxy_bounds)(name, measured)


def _nginx_bounds(name: str, m: Measured) -> None:
    """docs/deploy.md, "What a failure costs", with room."""
    # at most one request per client connection fails, the one on the victim when it failed, and
    # one for each time nginx tries the victim again (after fail_timeout, 5 s) while it is still lost
    assert m.failed_gets + m.failed_posts <= GET_LOOPS + POST_LOOPS + m.later_tries, m
    assert m.failed_posts <= POST_LOOPS + m.later_tries, m
    if name == "kill":
        # the host's kernel refuses or resets at once: a GET is tried again elsewhere, no wait (all
        # of them in the runs measured; one whose answer had begun to come back when the host died
        # could not be, so two are allowed; the runs measured sent 7-24 requests to the dead host,
        # all of them tried again elsewhere)
        assert m.failed_gets <= 2 and m.retried >= 1 and m.last_failure_s < 2 and m.reconnected_within_s < 5, m
        assert m.later_tries <= FAULTS[name].lasts_s / 5 + 2, m       # one try per fail_timeout (5 s)
    else:
        # nothing comes back: what was sent to the host waits for nginx's proxy_read_timeout (10 s),
        # and only then does nginx leave the host out; what was retried had not reached the host
        # (no connection within the 1 s proxy_connect_timeout: only a host cut off shows those)
        assert 9 < m.longest_s < 13 and m.last_failure_s < FAULTS[name].lasts_s + 2, m
        assert m.retried >= 1 if name == "cut" else m.retried == 0, m
        bound = 10 if name == "cut" else FAULTS[name].lasts_s + 3
        assert m.reconnected_within_s < bound, m


def _haproxy_bounds(name: str, m: Measured) -> None:
    """docs/deploy.md, "What a failure costs", with room: HAProxy's checks (every 0.5 s, three missed,
    each allowed 2 s) find a lost host within seconds and cut what it holds, whatever the fault; a GET it held
    is sent to another host (it closed without an answer: ``empty-response``), a POST is answered
    502 (never sent again)."""
    # When a host is killed, a loop may lose, besides the POST it had in flight, one more: a POST the
    # dead host refused that HAProxy had just sent on to another host when it marked the dead one down
    # is cut with the dead host's streams (502, termination "DH"; docs/deploy.md). CI once saw 5 failed
    # POSTs with 4 loops, before termination states were kept: this is the one mechanism found for it.
    extra = 1 if name == "kill" else 0
    assert m.failed_gets <= 2 and m.failed_posts <= POST_LOOPS + extra and m.retried >= 1, m
    if name == "kill":
        assert m.last_failure_s < 2 and m.reconnected_within_s < 5, m
    else:
        # a lost host is marked down within inter + fall x timeout check = 0.5 + 3 x 2 s; with checks
        # allowed 1 s, the longest wait was 1.5-4.1 s and subscribers were back within 1.7-4.1 s
        # (nginx: 10 s and 4-14 s)
        assert m.longest_s < 9 and m.last_failure_s < 9 and m.reconnected_within_s < 11, m
