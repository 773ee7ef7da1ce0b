"""Real protocol round trips against each backend, through the project's own drivers.

Each probe returns a short description of what answered, or raises a
``DriverError`` saying why not.  The stack uses them to wait for servers and to
print its status table; ``/readyz`` uses the same clients' ``ping``.
"""

from __future__ import annotations

import aiomysql

from app.settings import IgniteSettings, MongoSettings, MySQLSettings, RedisSettings
from drivers.errors import BackendUnavailable
from drivers.ignite import Client as IgniteClient
from drivers.mongo import MongoClient
from drivers.mysql import MySQLClient
from drivers.redis import RedisClient

# Replies that prove the server answers before `up` has created the app user and database.
_NOT_BOOTSTRAPPED = {1045, 1049, 1130}  # access denied, unknown database, host not allowed


async def mysql(s: MySQLSettings, *, server_only: bool = False) -> str:
    """``SELECT VERSION()`` as the app user; with ``server_only``, any MySQL reply will do."""
    client = MySQLClient(host=s.host, port=s.port, user=s.user, password=s.password, database=s.database,
                         pool_min=1, pool_max=1, connect_timeout_s=s.connect_timeout_s)
    try:
        await client.start()
        row = await client.fetchone("SELECT VERSION()")
        return f"MariaDB {row[0] if row else '?'}"
    except Exception as exc:
        cause = exc.__cause__
        if server_only and isinstance(cause, aiomysql.Error) and cause.args and \
                cause.args[0] in _NOT_BOOTSTRAPPED:
            return "server answers (app user not created yet)"
        raise
    finally:
        await client.aclose()


async def redis(s: RedisSettings) -> str:
    client = RedisClient(host=s.host, port=s.port, db=s.db, password=s.password, pool_max=1,
                         connect_timeout_s=s.connect_timeout_s)
    try:
        await client.ping()
        info = await client.redis.info("server")
        return f"Redis {info.get('redis_version', '?')}"
    finally:
        await client.aclose()


async def mongo(s: MongoSettings) -> str:
    client = MongoClient(host=s.host, port=s.port, database=s.database, pool_max=1,
                         server_selection_timeout_s=s.server_selection_timeout_s,
                         connect_timeout_s=s.connect_timeout_s)
    try:
        await client.ping()
        with client.convert_errors():
            info = await client.db.client.admin.command("buildInfo")
        server = f"FerretDB {info['ferretdbVersion']}" if "ferretdbVersion" in info else "mongod"
        return f"MongoDB wire {info.get('version', '?')} ({server})"
    finally:
        await client.aclose()


async def ignite(host: str, port: int, s: IgniteSettings) -> str:
    client = IgniteClient([(host, port)], username=s.username, password=s.password,
                          timeout=s.connect_timeout_s, connect_timeout=s.connect_timeout_s)
    try:
        await client.connect()
        await client.ping()
        return f"Ignite thin client {client.protocol_version_text}"
    except OSError as exc:  # pragma: no cover - the client converts these itself
        raise BackendUnavailable(f"ignite: {exc}", backend="ignite") from exc
    finally:
        await client.aclose()
