"""After the fuzz run: delete the item rows it created (ids outside the seeded 1..1000) and the cache's keys.

    python -m tests.service.fuzz_cleanup
"""

from __future__ import annotations

import uvloop

from app.settings import load_settings
from drivers.cache import Cache, RedisTier
from drivers.mysql import MySQLClient
from drivers.redis import RedisClient


async def main() -> None:
    settings = load_settings()
    mysql, redis = MySQLClient(settings.mysql), RedisClient(settings.redis)
    await mysql.start()
    await redis.start()
    try:
        await mysql.execute("DELETE FROM items WHERE id < 1 OR id > 1000")
        cache = Cache(RedisTier(redis), settings.cache)
        removed = await cache.invalidate_prefix("item:")
        print(f"cache keys removed: {removed}")
    finally:
        await redis.aclose()
        await mysql.aclose()


if __name__ == "__main__":
    uvloop.run(main())
