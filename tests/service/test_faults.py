"""Faults between the service and each backend: typed errors in time, a loop that stays free, recovery.

A TCP proxy (``tests.support.proxy``) sits between the real service (a child
process) and one real backend; the test switches it to latency, blackhole,
half-open, reset or refused, then back to normal, on the same running server.
The rule checked for each backend and mode:

- a request to that backend's endpoint gets a JSON error naming the backend, with
  a request id: 503 when the backend cannot be reached (reset, refused), 504 when
  it is too slow (latency beyond the deadline, blackhole, half-open);
- it arrives within the request's deadline plus ``MARGIN_S``;
- ``/readyz`` answers 503 with that backend in ``failed``;
- ``/now`` stays fast meanwhile (the loop is not blocked);
- after ``normal()`` the service answers 200 again by itself within ``RECOVERY_S``,
  without a restart.  (Only if it did not, and that mode's test failed for it, does
  the next mode start on a fresh server, so that each mode is measured on its own.)

Deadlines are short so the module is quick: each request has a budget of
``BUDGET_S`` (``ASYNCSTACK_SERVER__REQUEST_TIMEOUT_S``), and the driver's own
timeouts (``DRIVER_ENV``) are no longer than that, connects shorter.

Also here: the proxy's own modes against a local echo server, and the three
measured problems of the request-budget work (``test_mysql_pool_*``,
``test_mongo_blackholed_*``, ``test_fanout_*``).

The proxy runs in the test's own event loop: every HTTP call here is async,
and so are starting and stopping the server (a blocking wait would freeze the
proxy, and the server could not reach its backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse

from app.settings import Settings
from tests.conftest import ROOT, ServerProcess, start_server
from tests.service.http import async_client
from tests.support.proxy import Proxy

BUDGET_S = 1.5          # the request budget of the fault matrix's servers
MARGIN_S = 1.0          # an answer may come this much after its deadline
LATENCY_S = 3.0         # added each way in latency mode: beyond every deadline here
RECOVERY_S = 5.0        # after normal(), the endpoint answers 200 again within this
NOW_LIMIT_S = 0.1       # each /now probe while a faulted request is in flight

# Each backend's address through the proxy, and its own deadlines: none longer than the budget.
DRIVER_ENV: dict[str, dict[str, str]] = {
    "mysql": {"ASYNCSTACK_MYSQL__QUERY_TIMEOUT_S": "1.5", "ASYNCSTACK_MYSQL__CONNECT_TIMEOUT_S": "1"},
    "redis": {"ASYNCSTACK_REDIS__SOCKET_TIMEOUT_S": "1.5", "ASYNCSTACK_REDIS__CONNECT_TIMEOUT_S": "1"},
    "mongo": {"ASYNCSTACK_MONGO__SOCKET_TIMEOUT_S": "1.5", "ASYNCSTACK_MONGO__SERVER_SELECTION_TIMEOUT_S": "1",
              "ASYNCSTACK_MONGO__CONNECT_TIMEOUT_S": "1"},
    "ignite": {"ASYNCSTACK_IGNITE__REQUEST_TIMEOUT_S": "1.5", "ASYNCSTACK_IGNITE__CONNECT_TIMEOUT_S": "1"},
}

# mode -> (status, error) the backend's endpoint must answer while the proxy is in it
EXPECTED = {
    "latency": (504, "backend timeout"),
    "blackhole": (504, "backend timeout"),
    "half_open": (504, "backend timeout"),
    "reset": (503, "backend unavailable"),
    "refused": (503, "backend unavailable"),
}


def target(settings: Settings, backend: str) -> tuple[str, int]:
    if backend == "ignite":
        return settings.ignite.nodes[0]
    section = getattr(settings, backend)
    return section.host, section.port


def through(backend: str, port: int) -> dict[str, str]:
    """The environment that points the service's ``backend`` at 127.0.0.1:``port``."""
    if backend == "ignite":
        return {"ASYNCSTACK_IGNITE__NODES": json.dumps([["127.0.0.1", port]])}
    return {f"ASYNCSTACK_{backend.upper()}__PORT": str(port)}


# -- the server, started and stopped without blocking the loop ---------------------------------------


async def serve(env: dict[str, str]) -> ServerProcess:
    """``start_server`` whose wait for /healthz yields to the loop (the proxy must run meanwhile)."""
    server = start_server(env=env, wait=False)
    client = async_client(4)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited {server.proc.returncode}: {server.stderr()}")
            with contextlib.suppress(OSError):   # not listening yet
                resp = await client.fetch(server.url + "/healthz", raise_error=False, request_timeout=1)
                if resp.code == 200:
                    return server
            await asyncio.sleep(0.1)
    finally:
        client.close()
    await stop(server)
    raise RuntimeError("server did not answer /healthz within 30 s")


async def stop(server: ServerProcess) -> None:
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


async def reseed() -> None:
    """``python -m app seed`` (items 1..1000 everywhere), without blocking the loop."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "app", "seed", cwd=ROOT,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, (out + err).decode()


# -- HTTP ----------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any
    took: float


async def fetch(client: AsyncHTTPClient, url: str, method: str = "GET", body: Any = None,
                headers: dict[str, str] | None = None, timeout: float = 20) -> Answer:
    """The answer, or status 599 if none came within ``timeout`` (or the connection failed)."""
    began = time.perf_counter()
    try:
        resp: HTTPResponse = await client.fetch(
            url, method=method, body=None if body is None else json.dumps(body), raise_error=False,
            headers={**({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})},
            request_timeout=timeout, connect_timeout=timeout)
    except (HTTPClientError, OSError) as exc:
        return Answer(599, f"no answer: {exc!r}", {}, time.perf_counter() - began)
    took = time.perf_counter() - began
    parsed: Any = resp.body.decode(errors="replace") if resp.body else None
    if resp.headers.get("Content-Type", "").startswith("application/json"):
        parsed = json.loads(resp.body)
    return Answer(resp.code, parsed, resp.headers, took)


async def recovers(client: AsyncHTTPClient, url: str, within: float = RECOVERY_S,
                   headers: dict[str, str] | None = None) -> Answer:
    """Poll ``url`` until it answers 200, sending no request after ``within`` seconds; the last answer, its
    ``took`` the time until it came (the time to recover)."""
    began = time.perf_counter()
    while True:
        answer = await fetch(client, url, headers=headers, timeout=BUDGET_S + MARGIN_S + 5)
        if answer.status == 200 or time.perf_counter() - began >= within:
            answer.took = time.perf_counter() - began
            return answer
        await asyncio.sleep(0.1)


def describe(answer: Answer) -> str:
    return f"{answer.status} in {answer.took:.2f} s: {answer.body}"


# -- the proxy's own modes, against an echo server -------------------------------------------------


@dataclass
class Echo:
    address: tuple[str, int]
    open: int = 0       # connections the echo server has and has not seen closed


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    state = Echo(("127.0.0.1", 0))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.open += 1
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            state.open -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.address = server.sockets[0].getsockname()[:2]
    try:
        yield state
    finally:
        server.close()


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes,
                    timeout: float = 2.0) -> bytes:
    writer.write(data)
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, for_s: float = 0.3) -> bool:
    """True if ``data`` sent now brings nothing back (not even a close) for ``for_s`` seconds."""
    writer.write(b"anyone?")
    try:
        await asyncio.wait_for(reader.read(1), for_s)
    except TimeoutError:
        return True
    return False


async def test_proxy_latency_delays_each_chunk_both_ways_in_order(echo: Echo) -> None:
    async with Proxy(echo.address) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        try:
            assert await roundtrip(reader, writer, b"warm") == b"warm"
            proxy.latency(0.2)
            began = time.perf_counter()
            for part in (b"one,", b"two,", b"three"):
                writer.write(part)
                await asyncio.sleep(0.01)
            got = await asyncio.wait_for(reader.readexactly(len(b"one,two,three")), 2)
            took = time.perf_counter() - began
            assert got == b"one,two,three"
            # 0.2 s there and 0.2 s back, not per chunk in a row; uvloop keeps time in whole milliseconds
            assert 0.4 - 0.002 <= took < 0.8, took
            proxy.normal()
            began = time.perf_counter()
            assert await roundtrip(reader, writer, b"fast") == b"fast"
            assert time.perf_counter() - began < 0.1
        finally:
            writer.close()


async def test_proxy_blackhole_swallows_everything_and_a_new_connection_is_accepted_and_swallowed(
        echo: Echo) -> None:
    async with Proxy(echo.address) as proxy:
        old_r, old_w = await asyncio.open_connection(*proxy.address)
        idle_r, idle_w = await asyncio.open_connection(*proxy.address)
        assert await roundtrip(old_r, old_w, b"hello") == b"hello"
        assert await roundtrip(idle_r, idle_w, b"hello") == b"hello"
        proxy.blackhole()
        assert await silent(old_r, old_w)
        new_r, new_w = await asyncio.open_connection(*proxy.address)   # accepted
        assert await silent(new_r, new_w)
        proxy.normal()
        assert await silent(old_r, old_w)   # it lost bytes: it never carries anything again
        assert await silent(new_r, new_w)
        assert await roundtrip(idle_r, idle_w, b"idle") == b"idle"   # it lost nothing: it flows again
        r, w = await asyncio.open_connection(*proxy.address)
        assert await roundtrip(r, w, b"again") == b"again"
        for wr in (old_w, idle_w, new_w, w):
            wr.close()


async def test_proxy_reset_resets_existing_and_new_connections(echo: Echo) -> None:
    async with Proxy(echo.address) as proxy:
        old_r, old_w = await asyncio.open_connection(*proxy.address)
        assert await roundtrip(old_r, old_w, b"hello") == b"hello"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(old_r.read(1), 2)
        new: list[asyncio.StreamWriter] = []
        with pytest.raises(ConnectionResetError):   # accepted, then reset: not refused
            new_r, new_w = await asyncio.open_connection(*proxy.address)   # (uvloop may see the RST here)
            new.append(new_w)
            await asyncio.wait_for(new_r.read(1), 2)
        proxy.normal()
        r, w = await asyncio.open_connection(*proxy.address)
        assert await roundtrip(r, w, b"again") == b"again"
        for wr in (old_w, w, *new):
            wr.close()


async def test_proxy_refused_closes_the_port_and_normal_reopens_the_same_one(echo: Echo) -> None:
    async with Proxy(echo.address) as proxy:
        port = proxy.port
        old_r, old_w = await asyncio.open_connection(*proxy.address)
        assert await roundtrip(old_r, old_w, b"hello") == b"hello"
        proxy.refused()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*proxy.address)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(old_r.read(1), 2)
        proxy.normal()
        assert proxy.port == port
        r, w = await asyncio.open_connection(*proxy.address)
        assert await roundtrip(r, w, b"again") == b"again"
        for wr in (old_w, w):
            wr.close()


async def test_proxy_half_open_goes_silent_and_never_closes_even_when_the_client_does(echo: Echo) -> None:
    async with Proxy(echo.address) as proxy:
        old_r, old_w = await asyncio.open_connection(*proxy.address)
        assert await roundtrip(old_r, old_w, b"hello") == b"hello"
        proxy.half_open()
        assert await silent(old_r, old_w)
        new_r, new_w = await asyncio.open_connection(*proxy.address)   # accepted, like blackhole
        assert await silent(new_r, new_w)
        old_w.close()
        await asyncio.sleep(0.2)
        assert echo.open == 1   # the client closed; the server behind never hears of it
        proxy.normal()
        assert await silent(new_r, new_w)
        r, w = await asyncio.open_connection(*proxy.address)
        assert await roundtrip(r, w, b"again") == b"again"
        assert echo.open == 2
        for wr in (new_w, w):
            wr.close()
    await asyncio.sleep(0.2)
    assert echo.open == 0   # leaving the proxy closed the silent link too


async def test_proxy_blackhole_still_ends_a_link_its_client_closes(echo: Echo) -> None:
    async with Proxy(echo.address) as proxy:
        r, w = await asyncio.open_connection(*proxy.address)
        assert await roundtrip(r, w, b"hello") == b"hello"
        proxy.blackhole()
        w.close()
        await asyncio.sleep(0.2)
        assert echo.open == 0


async def test_leaving_the_proxy_closes_every_socket_and_ends_every_task(echo: Echo) -> None:
    before = asyncio.all_tasks()
    async with Proxy(echo.address) as proxy:
        links = [await asyncio.open_connection(*proxy.address) for _ in range(3)]
        for r, w in links:
            assert await roundtrip(r, w, b"x") == b"x"
        proxy.latency(0.5)
        links[0][1].write(b"queued")       # in the proxy's queue when it closes
        proxy_tasks = set(asyncio.all_tasks()) - before - {asyncio.current_task()}
        assert proxy_tasks
    assert all(t.done() for t in proxy_tasks)
    for r, w in links:
        try:
            assert await asyncio.wait_for(r.read(), 2) == b""   # closed by the proxy ...
        except ConnectionResetError:
            pass                                                # ... with bytes it had not read: RST
        w.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*proxy.address)
    await asyncio.sleep(0.1)
    assert echo.open == 0


# -- the fault matrix: one server per backend, every mode switched on it -------------------------------


@dataclass
class Rig:
    backend: str
    proxy: Proxy
    env: dict[str, str]
    server: ServerProcess
    client: AsyncHTTPClient
    path: str = ""      # an endpoint that reads from this backend only

    @property
    def url(self) -> str:
        return self.server.url + self.path

    async def healthy(self) -> None:
        """The endpoint answers 200; if an earlier mode left the service broken (that test failed for it),
        a fresh server, so that this mode is measured on its own."""
        if (await recovers(self.client, self.url)).status != 200:
            await stop(self.server)
            self.server = await serve(self.env)
        answer = await recovers(self.client, self.url)
        assert answer.status == 200, f"{self.backend}: not healthy even on a fresh server: {describe(answer)}"


async def own_data(backend: str, client: AsyncHTTPClient, url: str) -> str:
    """Write what the backend's endpoint reads (through the service, proxy in normal mode); its path."""
    if backend == "mysql":
        return "/mysql/items/7"        # seeded; MariaDB keeps it on disk
    if backend == "redis":
        answer = await fetch(client, url + "/redis/kv/faults:7", "PUT", {"value": "seven"})
        assert answer.status == 200, describe(answer)
        return "/redis/kv/faults:7"
    if backend == "mongo":
        answer = await fetch(client, url + "/mongo/docs", "POST", {"name": "faults-7"})
        assert answer.status == 201, describe(answer)
        return f"/mongo/docs/{answer.body['id']}"
    answer = await fetch(client, url + "/ignite/cache/faults-7", "PUT", {"value": 7})
    assert answer.status == 200, describe(answer)
    return "/ignite/cache/faults-7"


@pytest.fixture(scope="module", params=list(DRIVER_ENV))
async def rig(request: pytest.FixtureRequest, settings: Settings, seeded: None) -> AsyncIterator[Rig]:
    backend: str = request.param
    async with Proxy(target(settings, backend)) as proxy:
        env = {"ASYNCSTACK_SERVER__REQUEST_TIMEOUT_S": str(BUDGET_S), **DRIVER_ENV[backend],
               **through(backend, proxy.port)}
        rig = Rig(backend, proxy, env, await serve(env), async_client(20))
        try:
            rig.path = await own_data(backend, rig.client, rig.server.url)
            yield rig
        finally:
            rig.client.close()
            await stop(rig.server)


def switch(proxy: Proxy, mode: str) -> None:
    if mode == "latency":
        proxy.latency(LATENCY_S)
    else:
        getattr(proxy, mode)()


@pytest.mark.parametrize("mode", list(EXPECTED))
async def test_fault(rig: Rig, mode: str) -> None:
    await rig.healthy()
    status, error = EXPECTED[mode]
    switch(rig.proxy, mode)
    try:
        pending = asyncio.ensure_future(fetch(rig.client, rig.url))
        await asyncio.sleep(0.1)
        probes = [await fetch(rig.client, rig.server.url + "/now") for _ in range(3)]
        answer = await pending
        ready = await fetch(rig.client, rig.server.url + "/readyz")
    finally:
        rig.proxy.normal()
    back = await recovers(rig.client, rig.url)
    print(f"{rig.backend} {mode}: {describe(answer)}; readyz {ready.status} {ready.body.get('failed')} in "
          f"{ready.took:.2f} s; /now {max(p.took for p in probes) * 1000:.0f} ms at most; back to "
          f"{back.status} in {back.took:.2f} s")

    assert (answer.status, answer.body.get("error") if isinstance(answer.body, dict) else None) == \
        (status, error), f"{rig.backend} {mode}: {describe(answer)}"
    assert answer.body["backend"] == rig.backend, describe(answer)
    assert answer.body["request_id"]
    assert answer.took <= BUDGET_S + MARGIN_S, f"{rig.backend} {mode}: {describe(answer)}"
    assert ready.status == 503, describe(ready)
    assert rig.backend in ready.body["failed"], describe(ready)
    assert all(p.status == 200 and p.took < NOW_LIMIT_S for p in probes), [(p.status, p.took) for p in probes]
    assert back.status == 200, f"{rig.backend} did not recover from {mode} within {RECOVERY_S} s: {describe(back)}"


# -- the request budget's measured problems -----------------------------------------------------------


async def test_mysql_pool_200_sleeps_at_the_default_pool_are_served_or_refused_fast_with_retry_after(
        stack: None) -> None:
    """(a) 200 concurrent 1 s queries, the pool at its default 20: each 200, or 503 + Retry-After at once."""
    server = await serve({})    # default settings: pool_max 20, pool_wait_timeout_s 0.2, request budget 5 s
    client = async_client(250)
    try:
        budget_s = 5.0
        answers = await asyncio.gather(*(fetch(client, server.url + "/mysql/sleep?s=1") for _ in range(200)))
    finally:
        client.close()
        await stop(server)
    served = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 503]
    summary = (f"{len(served)} x 200 in {min((a.took for a in served), default=0):.2f}-"
               f"{max((a.took for a in served), default=0):.2f} s, {len(refused)} x 503 in "
               f"{min((a.took for a in refused), default=0):.2f}-{max((a.took for a in refused), default=0):.2f} s, "
               f"others: {[describe(a) for a in answers if a.status not in (200, 503)][:3]}")
    print(f"200 x /mysql/sleep?s=1 at the default pool: {summary}")
    assert len(served) + len(refused) == 200, summary
    assert served, summary
    assert all(a.took < budget_s for a in answers), summary
    for a in refused:
        assert a.body["error"] == "backend busy" and a.body["backend"] == "mysql", describe(a)
        assert int(a.headers["Retry-After"]) >= 1, a.headers
    # Refused at once: before the first admitted query (1 s, and however long this machine takes to
    # send 200 requests and answer them) had ended.  A refusal that waited for a pool connection to
    # free would come after it.  (Relative, not a fixed 1 s: on a machine running at a third of its
    # speed the 200 connections alone took 0.9 s, and the refusals came at 0.9-1.0 s, the served at 1.5.)
    assert max((a.took for a in refused), default=0) < min(a.took for a in served), summary


async def test_mongo_blackholed_answers_within_its_own_socket_timeout_not_the_request_budget(
        settings: Settings) -> None:
    """(b) MongoDB blackholed, ``socket_timeout_s`` 1.5 under the default budget of 5 s: 504 within 1.5 s."""
    socket_timeout_s = 1.5
    async with Proxy(target(settings, "mongo")) as proxy:
        server = await serve({"ASYNCSTACK_MONGO__SOCKET_TIMEOUT_S": str(socket_timeout_s),
                              **through("mongo", proxy.port)})
        client = async_client(10)
        try:
            path = await own_data("mongo", client, server.url)
            assert (await fetch(client, server.url + path)).status == 200
            proxy.blackhole()
            answer = await fetch(client, server.url + path)
            proxy.normal()
            back = await recovers(client, server.url + path)
        finally:
            client.close()
            await stop(server)
    print(f"mongo blackholed, socket_timeout_s {socket_timeout_s}, budget 5 s: {describe(answer)}; "
          f"back to {back.status} in {back.took:.2f} s")
    assert answer.status == 504, describe(answer)
    assert answer.body["backend"] == "mongo", describe(answer)
    assert answer.took <= socket_timeout_s + MARGIN_S, describe(answer)
    assert back.status == 200, describe(back)


@dataclass
class FanoutRig:
    proxies: dict[str, Proxy]
    env: dict[str, str]
    server: ServerProcess


@pytest.fixture(scope="module")
async def fanout_rig(settings: Settings, seeded: None) -> AsyncIterator[FanoutRig]:
    """A server whose four backends are each behind a proxy, at their default timeouts and budget."""
    await reseed()   # /fanout/7 reads item 7 from all four (Redis keeps nothing on disk across restarts)
    async with contextlib.AsyncExitStack() as stack:
        proxies = {b: await stack.enter_async_context(Proxy(target(settings, b))) for b in DRIVER_ENV}
        env: dict[str, str] = {}
        for b, p in proxies.items():
            env.update(through(b, p.port))
        rig = FanoutRig(proxies, env, await serve(env))
        try:
            yield rig
        finally:
            await stop(rig.server)


@pytest.mark.parametrize("backend", list(DRIVER_ENV))
async def test_fanout_with_one_backend_blackholed_answers_504_within_the_request_budget(
        fanout_rig: FanoutRig, backend: str) -> None:
    """(c) The budget asked for with X-Request-Timeout bounds the fan-out, whatever the drivers' own timeouts.

    Recovery is not asserted here: at the drivers' default timeouts it takes as long as their own rules
    say (a silent Redis connection is given up after 2 x 5 s); the fault matrix checks it at short ones.
    """
    rig, budget_s = fanout_rig, 1.5
    short = {"X-Request-Timeout": str(budget_s)}
    client = async_client(10)
    try:
        if (await recovers(client, rig.server.url + "/fanout/7", headers=short)).status != 200:
            await stop(rig.server)          # an earlier case left it broken: measure this one on its own
            rig.server = await serve(rig.env)
        healthy = await recovers(client, rig.server.url + "/fanout/7", headers=short)
        assert healthy.status == 200, describe(healthy)
        rig.proxies[backend].blackhole()
        try:
            answer = await fetch(client, rig.server.url + "/fanout/7", headers=short)
        finally:
            rig.proxies[backend].normal()
        print(f"fanout, {backend} blackholed: {describe(answer)}")
    finally:
        client.close()
    assert answer.status == 504, describe(answer)
    assert answer.body["backend"] == backend, describe(answer)
    assert answer.body["request_id"]
    assert answer.took <= budget_s + MARGIN_S, describe(answer)
