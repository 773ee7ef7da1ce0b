"""The variants answer the service's routes with the service's bodies, and block (or not) as designed."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bench.servers import Server

PATHS = [
    "/redis/kv/items:7", "/redis/kv/bench-missing-key",
    "/mysql/items/7", "/mysql/items/999999", "/mysql/items/x", "/mysql/sleep?s=0.01",
    "/ignite/items/7", "/ignite/items/999999", "/ignite/cache/bench-key", "/ignite/cache/bench-missing-key",
    "/fanout/7", "/fanout/999999",
]


def fetch(url: str, method: str = "GET", body: Any = None, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def comparable(status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The service adds a request id to errors; an error's wording is the service's own business."""
    body = {k: v for k, v in body.items() if k != "request_id"}
    if status >= 400:
        body = {"error": "…"} if "error" in body else body
    return status, body


@pytest.mark.parametrize("variant", ["blocking", "threadpool", "celery"])
def test_every_route_answers_what_the_service_answers(bench_servers: dict[str, Server], variant: str) -> None:
    project, other = bench_servers["project"].url, bench_servers[variant].url
    assert fetch(project + "/ignite/cache/bench-key", "PUT", {"value": "kept for the variants"})[0] == 200
    for path in PATHS:
        expected = comparable(*fetch(project + path))
        assert comparable(*fetch(other + path)) == expected, path
    status, now = fetch(other + "/now")
    assert status == 200 and set(now) == {"now", "pid"} and abs(now["now"] - time.time()) < 5


def _now_latency_during_a_slow_query(url: str) -> float:
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(fetch, url + "/mysql/sleep?s=0.6")
        time.sleep(0.15)  # the query is in progress
        began = time.perf_counter()
        status, _ = fetch(url + "/now")
        took = time.perf_counter() - began
        assert slow.result()[0] == 200 and status == 200
    return took


@pytest.mark.parametrize(("variant", "stalls"), [("blocking", True), ("threadpool", False), ("celery", False),
                                                  ("project", False)])
def test_only_the_blocking_variant_stalls_now_behind_a_slow_query(bench_servers: dict[str, Server], variant: str,
                                                                  stalls: bool) -> None:
    took = _now_latency_during_a_slow_query(bench_servers[variant].url)
    if stalls:
        assert took > 0.3, f"/now answered in {took:.3f} s while the blocking query ran"
    else:
        assert took < 0.2, f"/now took {took:.3f} s"
