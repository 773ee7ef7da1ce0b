"""Every endpoint against the real stack, over seeded data."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from tests.conftest import ServerProcess, start_server
from tests.service.http import call

SEEDED = {"id": 7, "name": "item-7", "price_cents": 359}


def test_now_answers_the_clock_without_io(service: ServerProcess) -> None:
    # Without I/O: tests/integration/test_readiness.py silences every backend and times /healthz and /now.
    for _ in range(20):
        asked = time.time()
        status, _, body = call(service.url + "/now")
        assert status == 200
        assert asked - 0.001 <= body["now"] <= time.time() + 0.001   # this machine's clock, read while answering


def test_mysql_point_select_returns_the_seeded_row(service: ServerProcess) -> None:
    assert call(service.url + "/mysql/items/7")[::2] == (200, SEEDED)


def test_mysql_missing_row_is_json_404(service: ServerProcess) -> None:
    status, _, body = call(service.url + "/mysql/items/987654")
    assert status == 404
    assert body["error"] == "no item 987654"


def test_mysql_sleep_runs_a_real_select_sleep(service: ServerProcess) -> None:
    assert call(service.url + "/mysql/sleep?s=0.1")[::2] == (200, {"slept": 0.1, "result": 0})


def test_mongo_insert_then_find(service: ServerProcess) -> None:
    marker = str(uuid.uuid4())
    status, headers, body = call(service.url + "/mongo/docs", "POST", {"marker": marker, "n": [1, 2]})
    assert status == 201
    assert headers["Location"] == f"/mongo/docs/{body['id']}"
    status, _, found = call(service.url + headers["Location"])
    assert (status, found) == (200, {"id": body["id"], "marker": marker, "n": [1, 2]})


def test_mongo_unknown_document_is_404(service: ServerProcess) -> None:
    assert call(service.url + "/mongo/docs/nosuchdoc")[0] == 404


def test_redis_set_get_and_incr(service: ServerProcess) -> None:
    key = f"t-{uuid.uuid4().hex}"
    assert call(service.url + f"/redis/kv/{key}", "PUT", {"value": "hello", "ttl_s": 60})[0] == 200
    assert call(service.url + f"/redis/kv/{key}")[::2] == (200, {"key": key, "value": "hello"})
    assert call(service.url + f"/redis/kv/{key}-missing")[0] == 404
    assert call(service.url + f"/redis/counters/{key}-n/incr", "POST", raw=b"")[2]["value"] == 1
    assert call(service.url + f"/redis/counters/{key}-n/incr", "POST", raw=b"")[2]["value"] == 2


def test_redis_blpop_times_out_to_null(service: ServerProcess) -> None:
    key = f"t-{uuid.uuid4().hex}"
    assert call(service.url + f"/redis/blpop/{key}?s=0.1")[::2] == (200, {"key": key, "value": None})


def test_ignite_cache_put_then_get(service: ServerProcess) -> None:
    key = f"t-{uuid.uuid4().hex}"
    assert call(service.url + f"/ignite/cache/{key}", "PUT", {"value": "v1"})[0] == 200
    assert call(service.url + f"/ignite/cache/{key}")[::2] == (200, {"key": key, "value": "v1"})
    assert call(service.url + f"/ignite/cache/{key}-missing")[0] == 404


def test_ignite_sql_point_select_and_range_query(service: ServerProcess) -> None:
    assert call(service.url + "/ignite/items/7")[::2] == (200, SEEDED)
    assert call(service.url + "/ignite/items/987654")[0] == 404
    assert call(service.url + "/ignite/range?n=1000")[::2] == (200, {"n": 1000, "sum": 500500})


def test_fanout_combines_all_four_backends(service: ServerProcess) -> None:
    status, _, body = call(service.url + "/fanout/7")
    assert status == 200
    assert body == {"id": 7, "mysql": SEEDED, "redis": SEEDED, "mongo": SEEDED, "ignite": SEEDED}


def test_access_log_is_json_with_the_callers_request_id(service: ServerProcess) -> None:
    rid = f"req-{uuid.uuid4().hex}"
    _, headers, _ = call(service.url + "/now", headers={"X-Request-ID": rid})
    assert headers["X-Request-ID"] == rid
    line = _logged(service, rid)
    assert line["request_id"] == rid
    assert (line["route"], line["status"], line["method"]) == ("now", 200, "GET")
    assert line["duration_ms"] >= 0


def test_a_new_request_id_is_32_hex_characters_and_never_repeats(service: ServerProcess) -> None:
    ids = [call(service.url + "/now")[1]["X-Request-ID"] for _ in range(20)]
    assert len(set(ids)) == 20
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids), ids   # int(i, 16) took "0x...", "_" and spaces too


def test_the_client_address_a_trusted_proxy_reports_is_logged(stack: None) -> None:
    proxied = start_server(env={"ASYNCSTACK_SERVER__TRUSTED_PROXIES": '["127.0.0.1"]'})
    try:
        cases = [({"X-Real-Ip": "10.1.2.3"}, "10.1.2.3"),
                 ({"X-Forwarded-For": "10.9.9.9, 10.4.4.4"}, "10.4.4.4"),
                 ({"X-Forwarded-For": "not-an-address"}, "127.0.0.1"),
                 ({}, "127.0.0.1")]
        for extra, remote in cases:
            rid = f"fwd-{uuid.uuid4().hex}"
            call(proxied.url + "/now", headers={"X-Request-ID": rid, **extra})
            assert _logged(proxied, rid)["remote"] == remote, extra
    finally:
        proxied.stop()


def test_forwarded_headers_from_a_peer_not_trusted_are_ignored(service: ServerProcess) -> None:
    for extra in ({"X-Real-Ip": "10.1.2.3"}, {"X-Forwarded-For": "10.9.9.9, 10.4.4.4"}):
        rid = f"fwd-{uuid.uuid4().hex}"
        call(service.url + "/now", headers={"X-Request-ID": rid, **extra})
        assert _logged(service, rid)["remote"] == "127.0.0.1", extra    # server.trusted_proxies: none by default


def _logged(service: ServerProcess, text: str) -> dict[str, Any]:
    """The access-log line containing ``text`` (written just after the response, so poll briefly)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for ln in service.stdout().splitlines():
            if text in ln:
                return dict(json.loads(ln))
        time.sleep(0.02)
    raise AssertionError(f"no access-log line with {text}")
