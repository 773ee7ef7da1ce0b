"""``serve``: /healthz, /readyz against the real backends, and clear start-up errors."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any

from app.settings import Settings
from tests.conftest import ServerProcess, run_stack, start_server
from tests.service.http import async_client, timed_fetch
from tests.service.test_faults import serve, stop, target, through
from tests.support.proxy import Proxy

BACKENDS = ("mysql", "redis", "mongo", "ignite")


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_healthz_answers_without_io(settings: Settings) -> None:
    # Every backend behind the fault proxy, then silenced: a /healthz that waited on any of them
    # would take its timeout; /readyz, which pings all four, shows they are silent.
    async with contextlib.AsyncExitStack() as stack:
        proxies = {b: await stack.enter_async_context(Proxy(target(settings, b))) for b in BACKENDS}
        server = await serve({k: v for b, p in proxies.items() for k, v in through(b, p.address[1]).items()})
        client = async_client(4)
        try:
            for proxy in proxies.values():
                proxy.blackhole()
            for _ in range(20):
                resp, took = await timed_fetch(client, server.url + "/healthz")
                assert (resp.code, json.loads(resp.body)) == (200, {"status": "ok"})
                assert took < 0.1, f"/healthz took {took:.3f} s with every backend silent"
                resp, took = await timed_fetch(client, server.url + "/now")   # the other route without I/O
                assert resp.code == 200 and took < 0.1, f"/now: {resp.code} in {took:.3f} s"
            resp = await client.fetch(server.url + "/readyz", raise_error=False, request_timeout=10,
                                      headers={"X-Request-Timeout": "0.3"})
            assert resp.code == 503 and set(json.loads(resp.body)["failed"]) == set(BACKENDS), resp.body
        finally:
            client.close()
            await stop(server)


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
    err = srv.stderr()
    assert code == 2
    assert "mysql at 127.0.0.1:1" in err
    assert "Traceback" not in err
