"""wrk runs and the numbers read from them."""

from __future__ import annotations

import pytest

from bench import wrk
from bench.servers import HELLO, Server

SAMPLE = """Running 1s test @ http://127.0.0.1:8888/now
  1 threads and 2 connections
WRK_JSON {"requests": 4000, "duration_us": 2000000, "connect": 0, "read": 1, "write": 0, "status": 7, \
"timeout": 2, "p50": 480, "p90": 900, "p99": 2500, "max": 12000, "mean": 510.5}
Requests/sec:   2000.00
"""


def test_parse_reads_the_line_the_lua_hook_writes() -> None:
    result = wrk.parse(SAMPLE)
    assert (result.requests, result.seconds, result.requests_per_s) == (4000, 2.0, 2000.0)
    assert (result.p50_ms, result.p90_ms, result.p99_ms, result.max_ms) == (0.48, 0.9, 2.5, 12.0)
    assert result.errors == {"connect": 0, "read": 1, "write": 0, "status": 7, "timeout": 2}
    assert result.error_count == 10


def test_parse_without_a_result_line_says_what_wrk_printed() -> None:
    with pytest.raises(wrk.WrkError, match=r"no result line.*unable to connect"):
        wrk.parse("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_a_one_second_run_gives_sane_numbers(wrk_ready: None, bench_servers: dict[str, Server]) -> None:
    result = wrk.run(bench_servers[HELLO].url + "/", seconds=1, connections=2)
    assert result.requests > 100
    assert result.error_count == 0
    assert 0.9 <= result.seconds <= 2.0
    assert result.requests_per_s == pytest.approx(result.requests / result.seconds, rel=0.01)
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms <= result.max_ms < 1000


def test_error_statuses_are_counted(wrk_ready: None, bench_servers: dict[str, Server]) -> None:
    result = wrk.run(bench_servers[HELLO].url + "/no-such-page", seconds=1, connections=2)
    assert result.requests > 0
    assert result.errors["status"] == result.requests


def test_only_loopback_is_loaded() -> None:
    with pytest.raises(wrk.WrkError, match="non-loopback"):
        wrk.run("http://10.0.0.1/", seconds=1, connections=1)
