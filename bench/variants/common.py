"""The blocking backend calls every variant makes: pymysql, redis-py, pymongo and pyignite's sync client.

Each operation in ``OPS`` takes the ``Backends`` and plain arguments and returns ``(status, body)``
with the same JSON body the service answers.  MySQL and Ignite connections are per thread (neither
client is thread-safe); redis-py's pool and the ``MongoClient`` are shared (both are thread-safe).
Connections open on first use in each thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pymongo
import pymysql
import redis
from pyignite import Client as IgniteClient
from pyignite.cache import Cache

from app.settings import Settings

Reply = tuple[int, dict[str, Any]]

ITEM_SQL = "SELECT id, name, price_cents FROM items WHERE id = %s"
IGNITE_ITEM_SQL = "SELECT id, name, price_cents FROM item WHERE id = ?"
ITEMS = "items"      # Redis key prefix, Mongo collection and Ignite cache of the seed data
KV_CACHE = "kv"      # the Ignite cache of /ignite/cache/{key}


class Backends:
    """The blocking clients of one process; ``pool_size`` bounds the shared pools."""

    def __init__(self, settings: Settings, pool_size: int = 1) -> None:
        self.settings = settings
        r, g = settings.redis, settings.mongo
        self.redis = redis.Redis(host=r.host, port=r.port, db=r.db, password=r.password,
                                 max_connections=max(pool_size, 1), socket_timeout=r.socket_timeout_s,
                                 socket_connect_timeout=r.connect_timeout_s)
        self.mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            g.uri, maxPoolSize=max(pool_size, 1), serverSelectionTimeoutMS=int(g.server_selection_timeout_s * 1000),
            connectTimeoutMS=int(g.connect_timeout_s * 1000), socketTimeoutMS=int(g.socket_timeout_s * 1000))
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    @property
    def mysql(self) -> pymysql.connections.Connection[Any]:
        conn = getattr(self._local, "mysql", None)
        if conn is None:
            m = self.settings.mysql
            conn = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password, database=m.database,
                                   autocommit=True, connect_timeout=m.connect_timeout_s,
                                   read_timeout=m.query_timeout_s)
            self._remember(conn)
            self._local.mysql = conn
        return conn

    @property
    def ignite(self) -> IgniteClient:
        client = getattr(self._local, "ignite", None)
        if client is None:
            i = self.settings.ignite
            client = IgniteClient(username=i.username, password=i.password, timeout=i.request_timeout_s)
            client.connect([tuple(node) for node in i.nodes])
            self._remember(client)
            self._local.ignite = client
            self._local.caches = {}
        return client

    def ignite_cache(self, name: str) -> Cache:
        """The named cache of this thread's client, created on first use and kept.

        A new pyignite ``Cache`` object asks the node for its partition map again, a round trip
        that costs more than the read itself; the service keeps its caches the same way.
        """
        client = self.ignite
        cache: Cache | None = self._local.caches.get(name)
        if cache is None:
            cache = self._local.caches[name] = client.get_or_create_cache(name)
        return cache

    def _remember(self, conn: Any) -> None:
        with self._lock:
            self._opened.append(conn)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            try:
                conn.close()
            except Exception:  # closing at exit: a dead connection is already closed
                pass
        self.redis.close()
        self.mongo.close()


def _json_or_none(raw: str | bytes | None) -> Any:
    return None if raw is None else json.loads(raw)


def _row(row: Any) -> dict[str, Any] | None:
    return None if row is None else {"id": row[0], "name": row[1], "price_cents": row[2]}


def redis_get(b: Backends, key: str) -> Reply:
    value: bytes | None = b.redis.get(key)  # type: ignore[assignment]  # bytes: no decode_responses
    if value is None:
        return 404, {"error": f"no key {key}"}
    return 200, {"key": key, "value": value.decode("utf-8", "replace")}


def mysql_item(b: Backends, item_id: int) -> Reply:
    with b.mysql.cursor() as cur:
        cur.execute(ITEM_SQL, (item_id,))
        row = _row(cur.fetchone())
    return (404, {"error": f"no item {item_id}"}) if row is None else (200, row)


def mysql_sleep(b: Backends, seconds: float) -> Reply:
    with b.mysql.cursor() as cur:
        cur.execute("SELECT SLEEP(%s)", (seconds,))
        row = cur.fetchone()
    return 200, {"slept": seconds, "result": row[0] if row else None}


def ignite_cache_get(b: Backends, key: str) -> Reply:
    value = b.ignite_cache(KV_CACHE).get(key)
    if value is None:
        return 404, {"error": f"no key {key}"}
    return 200, {"key": key, "value": value}


def ignite_item(b: Backends, item_id: int) -> Reply:
    with b.ignite.sql(IGNITE_ITEM_SQL, query_args=[item_id]) as rows:
        found = list(rows)
    return (404, {"error": f"no item {item_id}"}) if not found else (200, _row(found[0]) or {})


# -- the four reads of /fanout/{id}, each a value or None ------------------------------------------

def fanout_mysql(b: Backends, item_id: int) -> Any:
    with b.mysql.cursor() as cur:
        cur.execute(ITEM_SQL, (item_id,))
        return _row(cur.fetchone())


def fanout_redis(b: Backends, item_id: int) -> Any:
    return _json_or_none(b.redis.get(f"{ITEMS}:{item_id}"))


def fanout_mongo(b: Backends, item_id: int) -> Any:
    doc = b.mongo[b.settings.mongo.database][ITEMS].find_one({"_id": item_id})
    if doc is not None:
        doc["id"] = doc.pop("_id")
    return doc


def fanout_ignite(b: Backends, item_id: int) -> Any:
    return _json_or_none(b.ignite_cache(ITEMS).get(item_id))


FANOUT_PARTS: dict[str, Callable[[Backends, int], Any]] = {
    "mysql": fanout_mysql, "redis": fanout_redis, "mongo": fanout_mongo, "ignite": fanout_ignite}


def fanout_body(item_id: int, parts: list[Any]) -> Reply:
    return 200, {"id": item_id, **dict(zip(FANOUT_PARTS, parts, strict=True))}


def fanout(b: Backends, item_id: int) -> Reply:
    """The four reads one after another: a blocking thread cannot wait on four sockets at once."""
    return fanout_body(item_id, [read(b, item_id) for read in FANOUT_PARTS.values()])


OPS: dict[str, Callable[..., Reply]] = {
    "redis_get": redis_get, "mysql_item": mysql_item, "mysql_sleep": mysql_sleep,
    "ignite_cache_get": ignite_cache_get, "ignite_item": ignite_item, "fanout": fanout,
}
