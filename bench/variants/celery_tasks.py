"""Variant (c), the worker side: one Celery task that runs any blocking call of ``common.OPS``.

    .venv/bin/celery -A bench.variants.celery_tasks:worker_app worker --pool=threads --concurrency=32 \
        -Q asyncstack-bench --without-gossip --without-mingle --without-heartbeat
    # the same with RabbitMQ as the broker (`python -m stack up rabbitmq` first):
    .venv/bin/celery -A bench.variants.celery_tasks:rabbitmq_worker_app worker ...

Two brokers, one app each, the same task and settings: the stack's Redis, database
``settings.redis.db + 1`` (the service's data stays apart), or the stack's RabbitMQ (an on-demand
service of ``stack``).  The result backend is that Redis for both.  Each broker's results have a
key prefix of their own (the Redis broker keeps Celery's default), so a web process subscribed to
one variant's results never hears the other's.  Results are JSON and expire after five minutes.
The worker's clients are the same blocking ones the other variants use, created on the first task.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from celery import Celery

from app.settings import Settings, load_settings
from bench.variants.common import OPS, Backends
from stack import rabbitmq

QUEUE = "asyncstack-bench"
TASK = "bench.call"
RESULT_KEY = "celery-task-meta-"  # Celery's key, and pub/sub channel, for a task's result in Redis
POOL_SIZE = 256                   # upper bound for the shared Redis and Mongo pools (opened lazily)


@dataclass(frozen=True, slots=True)
class Broker:
    """Where tasks go, and the prefix of their results' keys and channels in the Redis result backend."""

    name: str
    url: str
    key_prefix: str = ""

    @property
    def result_prefix(self) -> str:
        return self.key_prefix + RESULT_KEY


def redis_url(settings: Settings) -> str:
    r = settings.redis
    auth = f":{r.password}@" if r.password else ""
    return f"redis://{auth}{r.host}:{r.port}/{r.db + 1}"


def brokers(settings: Settings) -> dict[str, Broker]:
    return {"redis": Broker("redis", redis_url(settings)),
            "rabbitmq": Broker("rabbitmq", rabbitmq.url(), key_prefix="rabbitmq-broker:")}


def configure(celery: Celery, broker: Broker) -> Celery:
    celery.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                       task_default_queue=QUEUE, result_expires=300, broker_connection_retry_on_startup=True,
                       worker_hijack_root_logger=False)
    if broker.key_prefix:  # Celery writes (and publishes) a result at global_keyprefix + celery-task-meta-<id>
        celery.conf.result_backend_transport_options = {"global_keyprefix": broker.key_prefix}
    if broker.url.startswith("amqp"):
        # No AMQP heartbeats: the web process publishes from its loop thread and never reads the
        # connection, so the broker would drop it as dead after an idle spell (other variants' turns).
        celery.conf.broker_heartbeat = 0
    return celery


def worker(broker: Broker, settings: Settings) -> Celery:
    """The worker's app for ``broker``: results to the Redis result backend, the task registered."""
    app = configure(Celery(f"asyncstack_bench_{broker.name}", broker=broker.url, backend=redis_url(settings)),
                    broker)
    app.task(name=TASK)(call)
    return app


_settings = load_settings()
_backends: list[Backends] = []  # the worker's one set of clients, made by the first task
_lock = threading.Lock()


def backends() -> Backends:
    with _lock:
        if not _backends:
            _backends.append(Backends(_settings, pool_size=POOL_SIZE))
        return _backends[0]


def call(op: str, args: list[Any]) -> list[Any]:
    status, body = OPS[op](backends(), *args)
    return [status, body]


worker_app = worker(brokers(_settings)["redis"], _settings)
rabbitmq_worker_app = worker(brokers(_settings)["rabbitmq"], _settings)
