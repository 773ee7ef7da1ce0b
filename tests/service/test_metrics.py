"""``/metrics`` parses as Prometheus text and moves when requests are made (one and two workers)."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess, start_server
from tests.service.http import call


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, headers, text = call(url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def test_metrics_parse_and_count_requests_and_backend_calls(service: ServerProcess) -> None:
    before = scrape(service.url)
    for _ in range(3):
        assert call(service.url + "/fanout/7")[0] == 200
    assert call(service.url + "/mysql/items/nope")[0] == 400
    after = scrape(service.url)
    ok = {"route": "fanout", "status": "200"}
    assert value(after, "http_requests_total", **ok) - value(before, "http_requests_total", **ok) == 3
    bad = {"route": "mysql_item", "status": "400"}
    assert value(after, "http_requests_total", **bad) - value(before, "http_requests_total", **bad) == 1
    for backend in ("mysql", "redis", "mongo", "ignite"):
        name = "backend_call_duration_seconds_count"
        assert value(after, name, backend=backend) - value(before, name, backend=backend) >= 3, backend
    assert value(after, "http_request_duration_seconds_count", route="fanout") >= 3
    assert ("event_loop_lag_seconds", frozenset()) in after
    assert value(after, "backend_pool_connections", backend="mysql", state="idle") >= 1
    for backend in ("mysql", "redis", "mongo", "ignite"):   # every client reports the same counters
        assert value(after, "backend_client", backend=backend, stat="connected") == 1, backend
        assert value(after, "backend_client", backend=backend, stat="requests") >= 3, backend


def test_metrics_merge_all_workers(seeded: None) -> None:
    srv = start_server("--workers", "2")
    try:
        workers = srv.listening(2)
        answered_by = []
        for _ in range(20):   # each call a new connection, spread over both workers by the kernel
            status, _, body = call(srv.url + "/now")
            assert status == 200
            answered_by.append(body["pid"])
        assert set(answered_by) == workers        # so the total below is a sum over both
        samples = scrape(srv.url)
        assert value(samples, "http_requests_total", route="now", status="200") == 20
        assert ("event_loop_lag_seconds", frozenset()) in samples
        deadline = time.monotonic() + 5   # the second worker may still be starting its clients
        connected = {"backend": "ignite", "stat": "connected"}
        while value(samples, "backend_client", **connected) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            samples = scrape(srv.url)
        assert value(samples, "backend_client", **connected) == 2   # one client per worker, summed
    finally:
        assert srv.stop() == 0
