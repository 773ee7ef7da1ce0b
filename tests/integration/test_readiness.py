"""``serve``: /healthz, /readyz against the real backends, and clear start-up errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.conftest import ServerProcess, run_stack, start_server


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_healthz_answers_without_io(server: ServerProcess) -> None:
    assert get(server.url + "/healthz") == (200, {"status": "ok"})


def test_readyz_is_200_with_latency_for_all_four_backends(server: ServerProcess) -> None:
    status, body = get(server.url + "/readyz")
    assert status == 200, body
    assert set(body["backends"]) == {"mysql", "redis", "mongo", "ignite"}
    for name, result in body["backends"].items():
        assert result["ok"] is True, name
        assert result["latency_ms"] >= 0


def test_readyz_is_503_naming_a_stopped_backend_and_recovers(server: ServerProcess) -> None:
    stopped = run_stack("down", "redis")
    assert stopped.returncode == 0, stopped.stderr
    try:
        status, body = get(server.url + "/readyz")
        assert status == 503, body
        assert body["failed"] == ["redis"]
        assert body["backends"]["redis"]["address"] == "127.0.0.1:16379"
        assert body["backends"]["redis"]["error"]
        assert body["backends"]["mysql"]["ok"] is True
    finally:
        restarted = run_stack("up", "redis")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    status, body = get(server.url + "/readyz")
    assert status == 200, body


def test_serve_names_the_backend_and_address_it_cannot_reach(stack: None) -> None:
    srv = start_server(env={"ASYNCSTACK_MYSQL__PORT": "1"}, wait=False)
    code = srv.proc.wait(30)
    err = srv.proc.stderr.read() if srv.proc.stderr else ""
    assert code == 2
    assert "mysql at 127.0.0.1:1" in err
    assert "Traceback" not in err
