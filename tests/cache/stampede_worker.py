"""One process of the cross-process stampede test: N concurrent get_or_load of one cold key at a given time.

    python -m tests.cache.stampede_worker <redis port> <namespace> <key> <start at (Unix time)> <requests>

The loader counts itself in Redis (INCR <namespace>:loads) and takes 50 ms.  Prints one
JSON line: this process's loader calls, the distinct answers, and the slowest request.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
import uvloop

from drivers.cache import Cache, CacheConfig, RedisTier
from drivers.redis import RedisClient, RedisConfig


async def main(port: int, namespace: str, key: str, start_at: float, requests: int) -> None:
    redis = RedisClient(RedisConfig(port=port))
    await redis.start()
    cache = Cache(RedisTier(redis), CacheConfig(namespace=namespace))
    await cache.start()

    async def loader() -> dict[str, object]:
        await redis.incr(f"{namespace}:loads")
        await asyncio.sleep(0.05)
        return {"value": namespace}

    async def one() -> tuple[str, float]:
        began = time.perf_counter()
        value = await cache.get_or_load(key, loader, ttl=60)
        return orjson.dumps(value).decode(), time.perf_counter() - began

    await asyncio.sleep(max(0.0, start_at - time.time()))
    results = await asyncio.gather(*(one() for _ in range(requests)))
    print(orjson.dumps({"loader_calls": cache.stats.loader_calls, "answers": sorted({a for a, _ in results}),
                        "slowest_s": max(t for _, t in results)}).decode(), flush=True)
    await cache.aclose()
    await redis.aclose()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])))
