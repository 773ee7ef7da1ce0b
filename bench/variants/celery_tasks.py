"""Variant (c), the worker side: one Celery task that runs any blocking call of ``common.OPS``.

    .venv/bin/celery -A bench.variants.celery_tasks:worker_app worker --pool=threads --concurrency=32 \
        -Q asyncstack-bench --without-gossip --without-mingle --without-heartbeat

Broker and result backend are the stack's Redis, database ``settings.redis.db + 1`` (the service's
data stays apart).  Results are JSON and expire after five minutes.  The worker's clients are the
same blocking ones the other variants use, created on the first task.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

from app.settings import Settings, load_settings
from bench.variants.common import OPS, Backends

QUEUE = "asyncstack-bench"
TASK = "bench.call"
RESULT_PREFIX = "celery-task-meta-"  # Celery's key, and pub/sub channel, for a task's result in Redis
POOL_SIZE = 256                      # upper bound for the shared Redis and Mongo pools (opened lazily)


def redis_url(settings: Settings) -> str:
    r = settings.redis
    auth = f":{r.password}@" if r.password else ""
    return f"redis://{auth}{r.host}:{r.port}/{r.db + 1}"


def configure(celery: Celery) -> Celery:
    celery.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                       task_default_queue=QUEUE, result_expires=300, broker_connection_retry_on_startup=True,
                       worker_hijack_root_logger=False)
    return celery


_settings = load_settings()
worker_app = configure(Celery("asyncstack_bench", broker=redis_url(_settings), backend=redis_url(_settings)))

_backends: list[Backends] = []  # the worker's one set of clients, made by the first task
_lock = threading.Lock()


def backends() -> Backends:
    with _lock:
        if not _backends:
            _backends.append(Backends(_settings, pool_size=POOL_SIZE))
        return _backends[0]


@worker_app.task(name=TASK)  # type: ignore[untyped-decorator]
def call(op: str, args: list[Any]) -> list[Any]:
    status, body = OPS[op](backends(), *args)
    return [status, body]
