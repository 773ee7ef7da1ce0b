"""``/items/{id}`` on the Redis Cluster backend while a primary is killed for real (SIGKILL).

The service runs with ``cache.backend=redis-cluster`` and otherwise the defaults.  Cached items
keep answering from the local tier; items not cached yet are loaded from MySQL; a write whose
invalidation meets the dead primary answers a typed 503 naming ``redis-cluster``, and writes to
that primary's slots succeed again once its replica is promoted.  No request gets a 500, and
the server logs no error.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import orjson
from tornado.httpclient import HTTPResponse

from app.settings import Settings
from drivers.mysql import MySQLClient
from drivers.redis.slots import key_slot
from tests.conftest import start_server
from tests.redis_cluster.conftest import NODES, on_node
from tests.redis_cluster.test_failover import node_state, start_again, wait_until_healthy
from tests.service.http import async_client

RECOVERY_LIMIT_S = 15.0


async def _slots_of(port: int) -> set[int]:
    """The slots the node on ``port`` holds as primary (CLUSTER SLOTS)."""
    owned: set[int] = set()
    for start, end, primary, *_ in await on_node(NODES[0][1], "CLUSTER", "SLOTS"):
        if int(primary[1]) == port:
            owned.update(range(start, end + 1))
    return owned


async def _owner(key: str) -> int:
    slot = key_slot(key)
    for start, end, primary, *_ in await on_node(NODES[0][1], "CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return int(primary[1])
    raise AssertionError(f"no owner for slot {slot}")


async def test_items_keep_answering_while_a_primary_dies_and_writes_come_back(settings: Settings,
                                                                               seeded: None) -> None:
    await wait_until_healthy()
    namespace = f"failover{random.randrange(10**6)}"
    server = start_server(env={"ASYNCSTACK_CACHE__BACKEND": "redis-cluster", "ASYNCSTACK_CACHE__NAMESPACE": namespace})
    client = async_client()

    async def fetch(method: str, item: int, body: dict[str, object] | None = None) -> HTTPResponse:
        return await client.fetch(f"{server.url}/items/{item}", method=method, raise_error=False,
                                  body=orjson.dumps(body) if body is not None else None,
                                  headers={"Content-Type": "application/json"} if body is not None else None,
                                  request_timeout=20)

    cached = list(range(1, 41))
    port = await _owner(f"{namespace}:v:item:{cached[0]}")
    victim = await _slots_of(port)
    # Ids to write whose cached copy lives on the primary about to die.
    new_ids = [i for i in random.sample(range(300_000_000, 400_000_000), 2000)
               if key_slot(f"{namespace}:v:item:{i}") in victim][:300]
    statuses: dict[int, int] = {}
    try:
        for item in cached:
            assert (await fetch("GET", item)).code == 200
        info, _, _ = await node_state(port)
        killed_at = time.monotonic()
        os.kill(int(info["process_id"]), signal.SIGKILL)
        write_failed_at: float | None = None
        write_back_at: float | None = None
        uncached = iter(range(500, 1000))
        writes = iter(new_ids)
        while time.monotonic() - killed_at < RECOVERY_LIMIT_S and write_back_at is None:
            answers = [await fetch("GET", item) for item in cached[:10]]     # cached: the local tier answers
            answers.append(await fetch("GET", next(uncached)))                # not cached: MySQL answers
            for response in answers:
                statuses[response.code] = statuses.get(response.code, 0) + 1
                assert response.code == 200, response.body
            response = await fetch("PUT", next(writes), {"name": "during", "price_cents": 1})
            statuses[response.code] = statuses.get(response.code, 0) + 1
            if response.code == 503:
                body = orjson.loads(response.body)
                assert body["backend"] == "redis-cluster" and body["request_id"], body
                write_failed_at = write_failed_at or time.monotonic()
            else:
                assert response.code == 200, response.body
                if write_failed_at is not None:
                    write_back_at = time.monotonic()
            await asyncio.sleep(0.05)
        assert write_failed_at is not None, f"no write met the dead primary: {statuses}"
        assert write_back_at is not None, f"writes to its slots did not come back within {RECOVERY_LIMIT_S:.0f} s"
        print(f"\nprimary {port} killed: /items writes failed from +{write_failed_at - killed_at:.2f} s, "
              f"succeeded again at +{write_back_at - killed_at:.2f} s; answers {statuses}")
    finally:
        client.close()
        server.stop()
        await start_again(port)
        await _delete_rows(settings, new_ids)
    assert 500 not in statuses, statuses
    logged = [line for line in server.stderr().splitlines(keepends=True) if '"app.error"' in line]
    assert not logged, "the server logged errors:\n" + "".join(logged)[:5000]
    await wait_until_healthy()


async def _delete_rows(settings: Settings, ids: list[int]) -> None:
    mysql = MySQLClient(settings.mysql)
    await mysql.start()
    try:
        await mysql.execute(f"DELETE FROM items WHERE id IN ({','.join(['%s'] * len(ids))})", ids)
    finally:
        await mysql.aclose()
