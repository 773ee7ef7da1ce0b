"""``/items/{id}`` through the cache in real service processes, over a Redis of their own that the tests stop.

The services run with the default settings except the Redis port: a ``redis-server``
started here (killed with SIGKILL and started again on the same port), so stopping
it does not disturb the stack's Redis that other tests use.  MySQL is the stack's.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from app.settings import REDIS_SHARD_PORTS, Settings
from drivers.ignite import Client as IgniteClient
from drivers.mysql import MySQLClient
from tests.conftest import ServerProcess, free_port, start_server
from tests.service.http import call


@pytest.fixture
def new_ids(settings: Settings) -> Iterator[list[int]]:
    """Ids with no row (far outside the seeded 1..1000); rows the test creates for them are deleted after."""
    ids = random.sample(range(100_000_000, 200_000_000), 3)
    yield ids

    async def delete() -> None:
        mysql = MySQLClient(settings.mysql)
        await mysql.start()
        try:
            await mysql.execute("DELETE FROM items WHERE id IN (%s, %s, %s)", ids)
        finally:
            await mysql.aclose()

    uvloop.run(delete())


class OwnRedis:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(self.port),
                                      "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def cli(self, *args: str) -> str:
        done = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True,
                              check=False)
        return done.stdout.strip()


@pytest.fixture
def own_redis(tmp_path: Path, stack: None) -> Iterator[OwnRedis]:
    redis = OwnRedis(free_port(), tmp_path)
    redis.start()
    yield redis
    if redis.proc is not None and redis.proc.poll() is None:
        redis.kill()


def services(redis: OwnRedis, n: int) -> list[ServerProcess]:
    return [start_server(env={"ASYNCSTACK_REDIS__PORT": str(redis.port)}) for _ in range(n)]


def metric(server: ServerProcess, name: str, labels: str = "") -> float:
    _, _, text = call(server.url + "/metrics")
    found = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_for(check, within_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "not within time"
        time.sleep(0.05)


def put(server: ServerProcess, item_id: int, name: str) -> tuple[int, object]:
    status, _, body = call(f"{server.url}/items/{item_id}", "PUT", {"name": name, "price_cents": 100})
    return status, body


def name_at(server: ServerProcess, item_id: int) -> object:
    status, _, body = call(f"{server.url}/items/{item_id}")
    assert status == 200, body
    return body["name"]


def test_a_put_on_one_process_is_seen_by_the_next_get_on_another(own_redis: OwnRedis, seeded: None,
                                                                    new_ids: list[int]) -> None:
    a, b = services(own_redis, 2)
    try:
        item = new_ids[0]
        assert put(a, item, "first")[0] == 200
        for version in range(5):
            for server in (a, b, a, b):       # the second read of each is a local hit
                assert name_at(server, item) == ("first" if version == 0 else f"v{version - 1}")
            assert put(a, item, f"v{version}")[0] == 200
            assert name_at(b, item) == f"v{version}"
        wait_for(lambda: metric(b, "cache_invalidations_total", '{direction="received"}') >= 5)
        wait_for(lambda: metric(b, "cache_requests_total", '{result="hit",tier="local"}') >= 5)
        # An id with no row is cached as "not found" in both; creating it is seen at once too.
        missing = new_ids[1]
        for server in (a, b, a, b):
            assert call(f"{server.url}/items/{missing}")[0] == 404
        assert put(b, missing, "created")[0] == 200
        assert name_at(a, missing) == "created"
    finally:
        for server in (a, b):
            server.stop()


def test_a_lost_subscription_flushes_the_local_tier(own_redis: OwnRedis, seeded: None) -> None:
    [server] = services(own_redis, 1)
    try:
        for item in range(1, 11):
            assert call(f"{server.url}/items/{item}")[0] == 200
        wait_for(lambda: metric(server, "cache_local_size", '{unit="entries"}') == 10)
        assert own_redis.cli("CLIENT", "KILL", "TYPE", "pubsub") != "0"
        wait_for(lambda: metric(server, "cache_local_flushes_total", '{reason="subscription"}') == 1)
        wait_for(lambda: metric(server, "cache_local_size", '{unit="entries"}') == 0)
        assert call(f"{server.url}/items/3")[2]["name"] == "item-3"       # refilled from Redis
    finally:
        server.stop()


def test_with_redis_stopped_cached_items_still_answer_and_it_recovers(own_redis: OwnRedis, seeded: None,
                                                                       new_ids: list[int]) -> None:
    [server] = services(own_redis, 1)
    try:
        for item in range(1, 6):
            assert call(f"{server.url}/items/{item}")[0] == 200
        own_redis.kill()
        began = time.monotonic()
        for item in range(1, 6):              # local hits: Redis is not asked
            status, _, body = call(f"{server.url}/items/{item}")
            assert status == 200 and body["name"] == f"item-{item}"
        assert time.monotonic() - began < 1.0
        for item in range(6, 16):             # not cached: loaded from MySQL; the breaker opens on the way
            status, _, body = call(f"{server.url}/items/{item}")
            assert status == 200 and body["name"] == f"item-{item}", body
        wait_for(lambda: metric(server, "cache_breaker_state", '{tier="redis"}') == 2)
        began = time.monotonic()
        for item in range(16, 26):            # breaker open: straight to MySQL, no waiting on Redis
            assert call(f"{server.url}/items/{item}")[0] == 200
        assert time.monotonic() - began < 2.0
        assert metric(server, "cache_remote_errors_total") >= 5              # what opened the breaker
        assert metric(server, "cache_loader_seconds_count") >= 20            # 1..25 each loaded once
        # A write cannot invalidate: 503 that names the backend, and the row is written.
        status, body = put(server, new_ids[2], "while-down")
        assert status == 503 and body["backend"] == "redis" and body["request_id"], body  # type: ignore[index]
        own_redis.start()
        # Local hits never ask Redis; the next miss after the breaker's open time probes it.
        fresh = iter(range(30, 1000))
        wait_for(lambda: (call(f"{server.url}/items/{next(fresh)}")[0] == 200
                          and metric(server, "cache_breaker_state", '{tier="redis"}') == 0), within_s=15)
        wait_for(lambda: own_redis.cli("DBSIZE") not in ("", "0"))      # the remote tier is written again
        assert name_at(server, new_ids[2]) == "while-down"
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["redis-cluster", "redis-shards", "ignite", "local"])
def test_every_backend_serves_items_and_shares_them_between_processes(backend: str, seeded: None,
                                                                       new_ids: list[int], settings: Settings) -> None:
    """``ASYNCSTACK_CACHE__BACKEND`` picks the remote tier; a second process finds what the first cached.

    The shards' test names two of the stack's three shards (``cache.shards``) and the Ignite one a
    cache of its own (``cache.ignite_cache``); both check that the value is where those say.
    """
    namespace = f"t{uuid.uuid4().hex[:8]}"
    ignite_cache = f"cache-test-{namespace}"
    env = {"ASYNCSTACK_CACHE__BACKEND": backend, "ASYNCSTACK_CACHE__NAMESPACE": namespace,
           "ASYNCSTACK_CACHE__SHARDS": json.dumps([f"127.0.0.1:{p}" for p in REDIS_SHARD_PORTS[:2]]),
           "ASYNCSTACK_CACHE__IGNITE_CACHE": ignite_cache}
    a, b = (start_server(env=env) for _ in range(2))
    try:
        item = new_ids[0]
        assert call(f"{a.url}/items/{item}")[0] == 404              # loaded from MySQL: no row
        assert put(a, item, "made")[0] == 200                       # the negative entry is invalidated
        assert name_at(a, item) == "made" and name_at(a, item) == "made"
        assert name_at(b, item) == "made"
        wait_for(lambda: metric(a, "cache_requests_total", '{result="hit",tier="local"}') >= 1)
        if backend == "local":      # no shared tier: b loads it itself, and PUTs still reach it
            wait_for(lambda: metric(b, "cache_loader_calls_total") == 1)
            assert metric(b, "cache_requests_total", '{result="hit",tier="remote"}') == 0
            assert put(a, item, "again")[0] == 200
            assert name_at(b, item) == "again"
        else:
            wait_for(lambda: metric(b, "cache_requests_total", '{result="hit",tier="remote"}') == 1)
            assert metric(b, "cache_loader_calls_total") == 0
            assert metric(a, "cache_breaker_state", f'{{tier="{backend}"}}') == 0
        key = f"{namespace}:v:item:{item}"
        if backend == "redis-shards":
            held = [_redis_cli(port, "EXISTS", key) for port in REDIS_SHARD_PORTS]
            assert held[2] == "0" and sorted(held[:2]) == ["0", "1"], held
        if backend == "ignite":
            assert uvloop.run(_ignite_value(settings, ignite_cache, key)) is not None
    finally:
        a.stop()
        b.stop()


def _redis_cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


async def _ignite_value(settings: Settings, name: str, key: str) -> object:
    """The value under ``key`` in Ignite cache ``name``, which is then destroyed."""
    client = IgniteClient(config=settings.ignite)
    await client.start()
    try:
        cache = client.cache(name)
        value = await cache.get(key)
        await cache.destroy()
        return value
    finally:
        await client.aclose()


def test_a_loader_that_fails_answers_its_error_and_caches_nothing(service: ServerProcess, settings: Settings) -> None:
    """The load runs within the budget of the request that started it: a tiny one makes MySQL time out."""
    item = random.randrange(2, 1000)
    subprocess.run(["redis-cli", "-p", str(settings.redis.port), "DEL", f"cache:v:item:{item}"], check=True,
                   capture_output=True)         # not cached by an earlier test's process
    before = metric(service, "cache_loader_errors_total")
    status, _, body = call(f"{service.url}/items/{item}", headers={"X-Request-Timeout": "0.0001"})
    assert status == 504 and body["backend"] == "mysql", body
    status, _, body = call(f"{service.url}/items/{item}")
    assert status == 200 and body["name"] == f"item-{item}"
    wait_for(lambda: metric(service, "cache_loader_errors_total") >= before + 1)
