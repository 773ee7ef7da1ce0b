"""The proof that nothing blocks, at the default settings: while slow backend calls are in flight, ``/now`` stays fast.

Each test fires a burst of slow requests at one real backend, on a server with the default settings
(MySQL pool 20, Redis pool 64, a 0.2 s wait for a pool connection): the pool's worth of calls is
admitted and waits on the backend, the rest are turned away at once with 503 and ``Retry-After``.
Once the turned-away ones are answered, ``/now`` is probed while the admitted calls are still
waiting.  A handler that blocked the loop (a sync driver, a lock, a thread hand-off that queued)
would show as ``/now`` waiting for the slow calls.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import uuid

from tornado.httpclient import HTTPResponse

from app.settings import Settings
from tests.conftest import ServerProcess
from tests.service.http import async_client, p99, timed_fetch

# A blocked loop holds /now for whole seconds (the slow calls take SLOW_S).  A busy or shared machine
# costs tens of milliseconds: a CI run saw p50 19.5 ms and p99 89.8 ms while the hypervisor took about
# 15% of this machine's CPU time (steal).  Two later CI runs, in hours when it took 10-40%, each saw one
# stall of 230-300 ms (the slowest probes consecutive, 5 ms apart: one stall, not slowness), which at
# 300-400 probes is the p99 (p99 212.5 ms, p50 25.8 ms in one).  Their cause is not established: not
# this process's collector (off while probing), and the server's own passes take 50-100 ms.  400 ms
# still keeps a factor of six from a blocked loop (2.5 s).
NOW_P99_LIMIT_S = 0.400
SLOW_S = 2.5            # each slow call waits this long on the backend
PROBE_EVERY_S = 0.005   # /now is sent every 5 ms (200 a second) while the slow calls wait
MIN_PROBES = 200        # so that the 99th percentile is not simply the slowest probe


async def _burst_while_probing(url: str, slow: str, count: int, admitted_max: int, probe_until: float | None
                               ) -> tuple[list[tuple[HTTPResponse, float]], list[float]]:
    """Fire ``count`` slow requests; once all but ``admitted_max`` of them are answered (the refused ones),
    send /now every PROBE_EVERY_S until ``probe_until`` s after the burst began (None: until every slow
    request is answered).  (The slow results with the
    seconds each took, and each probe's seconds from the moment it was due.)

    The probes are open-loop: each is sent at its time whether or not the previous one came back, and
    timed from then, so a loop stalled for a second delays every probe due in that second (a probe
    sent only after the previous one answered would see a long stall once, and a percentile would
    drop it).
    """
    slow_client, probe_client = async_client(count + 50), async_client(200)
    # The probes are timed in this process: a collector pass here (late in the suite its heap holds
    # everything pytest kept of 2,000 tests) would count as the server's stall.  One CI run saw a
    # single stall of about 300 ms (cause not established; the server's own passes are 50-100 ms).
    gc.collect()
    gc.disable()

    async def probe(due: float) -> float:
        resp, _ = await timed_fetch(probe_client, url + "/now")
        assert resp.code == 200
        return time.perf_counter() - due

    try:
        began = time.perf_counter()
        slow_calls = [asyncio.ensure_future(timed_fetch(slow_client, url + slow)) for _ in range(count)]
        while sum(call.done() for call in slow_calls) < count - admitted_max:
            # before an admitted call could have freed a connection for them: refused, not queued
            assert time.perf_counter() - began < SLOW_S, "the requests beyond the pool were not turned away"
            await asyncio.sleep(0.005)
        def probing(due: float) -> bool:
            if probe_until is None:
                return not all(call.done() for call in slow_calls)
            return due - began < probe_until

        probes: list[asyncio.Future[float]] = []
        due = time.perf_counter()
        while probing(due):
            await asyncio.sleep(due - time.perf_counter())
            probes.append(asyncio.ensure_future(probe(due)))
            due += PROBE_EVERY_S
        return list(await asyncio.gather(*slow_calls)), list(await asyncio.gather(*probes))
    finally:
        gc.enable()
        slow_client.close()
        probe_client.close()


def _check_admitted_or_refused(results: list[tuple[HTTPResponse, float]], pool_max: int,
                               backend: str) -> list[tuple[HTTPResponse, float]]:
    """Every slow request was admitted (200 after SLOW_S) or refused at once with 503 + Retry-After;
    at most ``pool_max`` were admitted.  The admitted ones."""
    served = [(r, t) for r, t in results if r.code == 200]
    refused = [(r, t) for r, t in results if r.code == 503]
    summary = (f"{len(served)} x 200 in {min((t for _, t in served), default=0):.2f}-"
               f"{max((t for _, t in served), default=0):.2f} s, {len(refused)} x 503 in "
               f"{min((t for _, t in refused), default=0):.2f}-{max((t for _, t in refused), default=0):.2f} s, "
               f"others: {[(r.code, r.body[:200]) for r, _ in results if r.code not in (200, 503)][:3]}")
    print(f"{backend}: {summary}")
    assert len(served) + len(refused) == len(results), summary
    assert 0 < len(served) <= pool_max, summary
    # Sending 200 requests and accepting 200 connections keeps both cores busy for ~0.3 s before the
    # admitted calls start (1 s on a machine running at a third of its speed: 3.46-3.68 s there);
    # calls that waited on each other would take a multiple of SLOW_S.
    assert all(SLOW_S - 0.002 <= t < 2 * SLOW_S for _, t in served), summary
    for r, t in refused:
        body = json.loads(r.body)
        assert (body["error"], body["backend"]) == ("backend busy", backend), body
        assert int(r.headers["Retry-After"]) >= 1
        assert t < SLOW_S, summary  # at once: before any admitted call could have freed its connection
    return served


def _check_probes(probes: list[float]) -> None:
    # Not I/O, and still a stall: a full garbage collection in the server (50-100 ms here under this
    # load) or another process on the same two cores delays the probes due meanwhile. The 99th
    # percentile tolerates that for under 1% of them; a loop blocked on I/O delays whole seconds.
    print(f"/now: {len(probes)} probes, p50 {sorted(probes)[len(probes) // 2] * 1000:.1f} ms, "
          f"p99 {p99(probes) * 1000:.1f} ms, max {max(probes) * 1000:.1f} ms")
    slowest = sorted(probes)[-5:]
    assert p99(probes) < NOW_P99_LIMIT_S, \
        f"/now p99 {p99(probes) * 1000:.1f} ms over {len(probes)} probes; the slowest: {slowest}"
    assert len(probes) >= MIN_PROBES, f"only {len(probes)} probes"


async def test_now_stays_fast_while_a_pool_of_mysql_sleeps_is_in_flight(service: ServerProcess,
                                                                        settings: Settings) -> None:
    results, probes = await _burst_while_probing(
        service.url, f"/mysql/sleep?s={SLOW_S}", 200, settings.mysql.pool_max, SLOW_S - 0.15)
    _check_admitted_or_refused(results, settings.mysql.pool_max, "mysql")
    _check_probes(probes)


async def test_now_stays_fast_while_a_pool_of_redis_blpops_waits(service: ServerProcess,
                                                                 settings: Settings) -> None:
    key = f"empty-{uuid.uuid4().hex}"
    results, probes = await _burst_while_probing(
        service.url, f"/redis/blpop/{key}?s={SLOW_S}", 200, settings.redis.pool_max, SLOW_S - 0.15)
    served = _check_admitted_or_refused(results, settings.redis.pool_max, "redis")
    assert all(json.loads(r.body)["value"] is None for r, _ in served)   # nothing came: BLPOP timed out
    _check_probes(probes)


async def test_now_stays_fast_while_slow_ignite_queries_run(service: ServerProcess) -> None:
    # The node computes these on its own threads (CPU-bound, so fewer of them on a small machine).
    # 1M rows: 8 at once took 0.7-1.4 s on a quiet machine, but over the 5 s request budget on one
    # running at a third of its speed.  600k rows: 3.2-3.3 s there (warm), and under 5 s is what
    # matters; the probes run as long as the queries do.  Ignite SQL has no pool, and 8 is well
    # inside the default query limit.
    results, probes = await _burst_while_probing(service.url, "/ignite/range?n=600000", 8, 8, None)
    assert [r.code for r, _ in results] == [200] * 8, [(r.code, r.body[:300]) for r, _ in results if r.code != 200]
    shortest = min(t for _, t in results)
    # The three nodes compute the queries on this machine's two cores, beside the service: while they
    # run, a probe waits for a core now and then (p50 3-70 ms, the slowest 50-130 ms in runs under a
    # load average of 6), whatever the loop does. So the check is on the slowest probe, against what a
    # blocked loop would cost: a loop held by a query holds the probes due meanwhile for up to the
    # query's length, so the slowest probe must stay under half the shortest query (and under 0.3 s).
    ordered = sorted(probes)
    summary = (f"/now: {len(probes)} probes, p50 {ordered[len(ordered) // 2] * 1000:.1f} ms, "
               f"p90 {ordered[int(len(ordered) * 0.9)] * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms, "
               f"queries {shortest:.2f}-{max(t for _, t in results):.2f} s")
    print(summary)
    assert shortest > 0.2, f"the queries were too short for a blocked loop to show: nothing was proven; {summary}"
    assert len(probes) >= 40, summary
    assert max(probes) < min(0.3, shortest / 2), summary
