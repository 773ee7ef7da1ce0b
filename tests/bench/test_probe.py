"""The fixed-rate probe: requests leave on schedule whatever the server does."""

from __future__ import annotations

import socket

import pytest

from bench.probe import percentile, probe
from bench.servers import HELLO, Server


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) == 0.0


async def test_every_scheduled_request_is_sent_and_timed(bench_servers: dict[str, Server]) -> None:
    result = await probe(bench_servers[HELLO].url + "/", rate=50, seconds=1.0, timeout_s=2.0)
    assert (result.scheduled, result.ok, result.failed, result.unanswered) == (50, 50, 0, 0)
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms < 500
    assert not result.censored


async def test_a_server_that_never_answers_leaves_every_request_unanswered_not_fewer_sent() -> None:
    """A closed loop would send one request and wait; the probe keeps its schedule."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections complete in the kernel; nothing ever reads or answers
        port = silent.getsockname()[1]
        result = await probe(f"http://127.0.0.1:{port}/now", rate=20, seconds=0.5, timeout_s=0.5)
    assert (result.scheduled, result.ok, result.unanswered) == (10, 0, 10)
    assert result.censored
    assert result.p50_ms >= 500  # each waited at least the deadline after the schedule ended


async def test_refused_connections_count_as_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        result = await probe(f"http://127.0.0.1:{port}/now", rate=20, seconds=0.25, timeout_s=0.5)
    assert (result.scheduled, result.ok, result.failed, result.unanswered) == (5, 0, 5, 0)


async def test_only_loopback_is_probed() -> None:
    with pytest.raises(ValueError, match="loopback"):
        await probe("http://10.0.0.1/now", rate=1, seconds=1)
