"""Real protocol round trips against each backend, through the project's own drivers.

Each probe returns a short description of what answered, or raises a
``DriverError`` saying why not.  The stack uses them to wait for servers and to
print its status table; ``/readyz`` uses the same clients' ``ping``.  RabbitMQ,
which only the load test uses, has no driver here: its probe logs in through
py-amqp (Celery's own AMQP client) on a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses

import asyncmy.errors

from drivers.errors import BackendUnavailable
from drivers.ignite import Client as IgniteClient
from drivers.ignite import IgniteConfig
from drivers.mongo import MongoClient, MongoConfig
from drivers.mysql import MySQLClient, MySQLConfig
from drivers.redis import RedisClient, RedisConfig

# Replies that prove the server answers before `up` has created the app user and database.
_NOT_BOOTSTRAPPED = {1045, 1049, 1130}  # access denied, unknown database, host not allowed


async def mysql(config: MySQLConfig, *, server_only: bool = False) -> str:
    """``SELECT VERSION()`` as the app user; with ``server_only``, any MySQL reply will do."""
    client = MySQLClient(dataclasses.replace(config, pool_min=1, pool_max=1))
    try:
        await client.start()
        row = await client.fetchone("SELECT VERSION()")
        return f"MariaDB {row[0] if row else '?'}"
    except Exception as exc:
        cause = exc.__cause__
        if server_only and isinstance(cause, asyncmy.errors.Error) and cause.args and \
                cause.args[0] in _NOT_BOOTSTRAPPED:
            return "server answers (app user not created yet)"
        raise
    finally:
        await client.aclose()


async def redis(config: RedisConfig) -> str:
    client = RedisClient(dataclasses.replace(config, pool_max=1))
    try:
        await client.ping()
        info = await client.redis.info("server")
        return f"Redis {info.get('redis_version', '?')}"
    finally:
        await client.aclose()


async def mongo(config: MongoConfig) -> str:
    client = MongoClient(dataclasses.replace(config, pool_max=1))
    try:
        await client.ping()
        info = await client.server_info()
        server = f"FerretDB {info['ferretdbVersion']}" if "ferretdbVersion" in info else "mongod"
        return f"MongoDB wire {info.get('version', '?')} ({server})"
    finally:
        await client.aclose()


async def ignite(host: str, port: int, config: IgniteConfig) -> str:
    client = IgniteClient([(host, port)], config=config, request_timeout_s=config.connect_timeout_s)
    try:
        await client.connect()
        await client.ping()
        return f"Ignite thin client {client.protocol_version_text}"
    finally:
        await client.aclose()


async def rabbitmq(host: str, port: int, username: str, password: str, timeout_s: float = 2.0) -> str:
    """An AMQP 0-9-1 login and a channel opened, as ``username``."""
    import amqp  # type: ignore[import-untyped]  # Celery's dependency: only the load test needs a broker

    def login() -> str:
        with amqp.Connection(f"{host}:{port}", userid=username, password=password, connect_timeout=timeout_s,
                             read_timeout=timeout_s, write_timeout=timeout_s, heartbeat=0) as conn:
            conn.channel().close()
            props = conn.server_properties
            return f"{props.get('product', 'AMQP broker')} {props.get('version', '?')} (AMQP 0-9-1)"

    try:
        return await asyncio.to_thread(login)
    except Exception as exc:
        raise BackendUnavailable(f"{type(exc).__name__}: {exc}", backend="rabbitmq") from exc
