"""The local stack: every backend answers through its async driver, and bad addresses are named."""

from __future__ import annotations

import uuid

from app.settings import Settings
from drivers.ignite import Client as IgniteClient
from drivers.mongo import MongoClient
from drivers.mysql import MySQLClient
from drivers.redis import RedisClient
from tests.conftest import run_stack


async def test_mysql_answers_a_real_query(settings: Settings) -> None:
    async with MySQLClient(settings.mysql) as client:
        await client.execute("CREATE TABLE IF NOT EXISTS stack_probe (id INT PRIMARY KEY, v VARCHAR(40))")
        await client.execute("REPLACE INTO stack_probe VALUES (%s, %s)", (1, "hello"))
        assert await client.fetchone("SELECT v FROM stack_probe WHERE id = %s", (1,)) == ("hello",)
        assert (await client.fetchone("SELECT DATABASE()")) == ("app",)


async def test_redis_answers_a_real_command(settings: Settings) -> None:
    async with RedisClient(settings.redis) as client:
        key = f"stack-probe:{uuid.uuid4()}"
        await client.set(key, "v1", ex=60)
        assert await client.get(key) == b"v1"
        assert await client.incr(key + ":n") == 1


async def test_mongo_answers_a_real_insert_and_find(settings: Settings) -> None:
    async with MongoClient(settings.mongo) as client:
        marker = str(uuid.uuid4())
        probes = client.collection("stack_probe")
        assert await probes.insert_one({"_id": marker, "n": 42}) == marker
        found = await probes.find_one({"_id": marker})
        assert found == {"_id": marker, "n": 42}


async def test_ignite_answers_a_real_cache_put_and_get(settings: Settings) -> None:
    async with IgniteClient(config=settings.ignite) as client:
        cache = await client.get_or_create_cache("stack_probe")
        key = str(uuid.uuid4())
        await cache.put(key, "value")
        assert await cache.get(key) == "value"
        assert await cache.get(key + "-missing") is None


def test_status_reports_all_four_backends_up(stack: None) -> None:
    done = run_stack("status")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("mysql", "redis", "mongo", "ignite-0"):
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith(name + " "))
        assert " up" in line, line


def test_status_names_the_backend_and_address_that_does_not_answer(stack: None) -> None:
    done = run_stack("status", env={"ASYNCSTACK_REDIS__PORT": "1"})
    assert done.returncode == 1
    assert "redis at 127.0.0.1:1 is not answering" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_unknown_service_is_a_clear_error(stack: None) -> None:
    done = run_stack("status", "postgres")
    assert done.returncode == 1
    assert "unknown service postgres" in done.stderr
    assert "Traceback" not in done.stderr


async def test_tests_run_on_uvloop_like_the_service() -> None:
    import asyncio

    import uvloop

    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
