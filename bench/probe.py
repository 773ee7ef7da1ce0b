"""An open-loop, fixed-rate HTTP probe: requests leave on a schedule, latency counts from the scheduled time.

    .venv/bin/python -m bench.probe http://127.0.0.1:8888/now [--rate 100] [--seconds 5] [--timeout 5]

wrk (a closed loop) sends a connection's next request only after the previous answer, so while a
server stalls wrk simply waits and the stall shows up as one slow request ("coordinated omission").
Here request ``i`` is due at ``start + i / rate`` whatever happened before; it goes out on an idle
kept-alive connection or a new one (at most ``--connections`` at once — beyond that it waits, and
that wait counts), and its latency is measured from its place in the schedule, never from when an
earlier answer came.  The probe's own timer slack (the loop's timers have millisecond resolution)
is left out: a request's clock starts when its timer fires, and ``send_lag_max_ms`` reports how late
that was (the probe's own health; it never waits on the server).  Requests still unanswered
``--timeout`` seconds after the schedule ends are counted as unanswered and enter the percentiles
at the time they waited so far: the percentiles are then lower bounds (``censored``).  Loopback
only; bounded by ``rate * seconds`` requests and ``seconds + timeout`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import uvloop

LOOPBACK = ("127.", "localhost", "::1")


@dataclass(frozen=True)
class ProbeResult:
    url: str
    rate: float
    seconds: float
    scheduled: int
    ok: int
    failed: int          # an error status, a refused or broken connection
    unanswered: int      # no answer by the deadline
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    send_lag_max_ms: float
    censored: bool       # unanswered requests entered the percentiles at their waiting time so far

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending list; 0.0 for an empty one."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Connections:
    """Kept-alive connections to one server, at most ``limit`` in use at once."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(limit)
        self.open: set[asyncio.StreamWriter] = set()

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.open.add(writer)
        return reader, writer

    def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(conn)

    def drop(self, writer: asyncio.StreamWriter) -> None:
        self.open.discard(writer)
        writer.close()

    def close_all(self) -> None:
        for writer in list(self.open):
            self.drop(writer)
        self.idle.clear()


async def _exchange(conns: _Connections, request: bytes) -> int:
    """Send one request, read one response; its status (keeps the connection when it can)."""
    async with conns.slots:
        reader, writer = await conns.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            conns.drop(writer)
            raise
        if headers.get("connection", "").lower() == "close":
            conns.drop(writer)
        else:
            conns.put((reader, writer))
        return status


async def probe(url: str, *, rate: float = 100.0, seconds: float = 5.0, timeout_s: float = 5.0,
                connections: int = 256, delay_s: float = 0.0) -> ProbeResult:
    """Send ``rate * seconds`` GETs to ``url`` on a fixed schedule; latency from each scheduled time."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host.startswith(LOOPBACK):
        raise ValueError(f"the probe only targets http on loopback, not {url}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: bench-probe\r\n\r\n".encode()
    conns = _Connections(host, parts.port or 80, connections)
    clock = time.perf_counter
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    count = max(1, round(rate * seconds))
    latencies: list[float] = []
    failed = 0
    lag_max = 0.0
    pending: dict[asyncio.Task[int], float] = {}

    def finished(task: asyncio.Task[int]) -> None:
        nonlocal failed
        issued = pending.pop(task)
        if task.cancelled():
            return
        if task.exception() is None and task.result() < 400:
            latencies.append(clock() - issued)
        else:
            failed += 1

    start = clock()
    for i in range(count):
        due = start + i / rate
        wait = due - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        issued = clock()
        lag_max = max(lag_max, issued - due)
        task = asyncio.create_task(_exchange(conns, request))
        pending[task] = issued
        task.add_done_callback(finished)
    deadline = start + count / rate + timeout_s
    while pending and clock() < deadline:
        await asyncio.wait(list(pending), timeout=max(deadline - clock(), 0.001))
    unanswered = [clock() - issued for issued in pending.values()]
    for task in list(pending):
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    conns.close_all()
    values = sorted(latencies + unanswered)
    ms = [v * 1000 for v in values]
    return ProbeResult(url=url, rate=rate, seconds=seconds, scheduled=count, ok=len(latencies), failed=failed,
                       unanswered=len(unanswered), p50_ms=round(percentile(ms, 50), 3),
                       p90_ms=round(percentile(ms, 90), 3), p99_ms=round(percentile(ms, 99), 3),
                       max_ms=round(ms[-1], 3) if ms else 0.0, send_lag_max_ms=round(lag_max * 1000, 3),
                       censored=bool(unanswered))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the schedule (default 5)")
    parser.add_argument("--timeout", type=float, default=5.0, help="wait after the schedule ends (default 5)")
    parser.add_argument("--connections", type=int, default=256, help="connections in use at most (default 256)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before the first request")
    parser.add_argument("--start-at", type=float, help="the first request's time (Unix seconds), e.g. to line "
                        "the schedule up with a load started by another process")
    args = parser.parse_args(argv)
    delay = args.delay + (max(0.0, args.start_at - time.time()) if args.start_at is not None else 0.0)
    if args.rate <= 0 or args.seconds <= 0 or args.rate * args.seconds > 1_000_000:
        print("error: --rate and --seconds must be positive, and at most a million requests", file=sys.stderr)
        return 2
    began = time.perf_counter()
    try:
        result = uvloop.run(probe(args.url, rate=args.rate, seconds=args.seconds, timeout_s=args.timeout,
                                  connections=args.connections, delay_s=delay))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**result.as_dict(), "wall_s": round(time.perf_counter() - began, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
