"""Server settings of docs/service.md, each set away from its default on a real server process:
``server.host`` (the listen address) and ``server.readiness_timeout_s`` (each backend's ping in ``/readyz``);
and ``server.gc_threshold``, set by the function the server calls at start."""

from __future__ import annotations

import gc
import socket
import time

import pytest

from app.settings import Settings
from tests.conftest import start_server
from tests.service.http import async_client, call
from tests.service.test_faults import fetch, serve, stop, target, through
from tests.support.proxy import Proxy


def test_server_host_is_the_address_it_listens_on(stack: None) -> None:
    srv = start_server(env={"ASYNCSTACK_SERVER__HOST": "127.0.0.2"}, wait=False)
    status = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and srv.proc.poll() is None:
            try:
                status, _, _ = call(f"http://127.0.0.2:{srv.port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", srv.port))
    finally:
        assert srv.stop() == 0


async def test_readyz_gives_each_backend_readiness_timeout_s(settings: Settings, seeded: None) -> None:
    readiness_s = 0.3
    async with Proxy(target(settings, "mysql")) as proxy:
        srv = await serve({"ASYNCSTACK_SERVER__READINESS_TIMEOUT_S": str(readiness_s), **through("mysql", proxy.port)})
        client = async_client(4)
        try:
            assert (await fetch(client, srv.url + "/readyz")).status == 200
            proxy.blackhole()
            answer = await fetch(client, srv.url + "/readyz")
            proxy.normal()
        finally:
            client.close()
            await stop(srv)
    assert answer.status == 503, answer.body
    assert answer.body["failed"] == ["mysql"]
    assert readiness_s <= answer.took < readiness_s + 0.5, answer.took    # not the 1 s default


def test_server_gc_threshold_is_the_young_generations_threshold() -> None:
    """``server.gc_threshold``: what ``serve()`` sets before the loop starts (``tune_gc``), default 10,000."""
    from app.server import tune_gc
    from app.settings import ServerSettings

    before = gc.get_threshold()
    try:
        tune_gc(Settings(server=ServerSettings(gc_threshold=12_345)))
        assert gc.get_threshold() == (12_345, *before[1:])
        tune_gc(Settings())
        assert gc.get_threshold()[0] == 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
