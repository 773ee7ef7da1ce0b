"""Variant (c), the web side: Tornado sends each call to the Celery worker and awaits its result.

    .venv/bin/python -m bench.variants.celery_server --port 8893 [--broker redis|rabbitmq]
    # with a worker of celery_tasks running on the same broker

Sending is Celery's own ``send_task`` (one LPUSH to the Redis broker, or one AMQP publish to
RabbitMQ, made on the loop thread, as a Tornado application calling ``.delay()`` does).  Waiting
does not block the loop: the Redis result backend stores each result under
``<prefix>celery-task-meta-<id>`` and publishes it on the channel of that name (what Celery's own
``AsyncResult.get()`` subscribes to); here one PSUBSCRIBE for the process, made with redis.asyncio,
hands each published result to the future of its task.  No polling, and no subscription per task.
The producer has no result backend of its own, so Celery does not open a blocking subscription
per task on this side.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from typing import Any

import orjson
import redis.asyncio as aredis
from celery import Celery

from app.settings import Settings, load_settings
from bench.variants.celery_tasks import TASK, Broker, brokers, configure, redis_url
from bench.variants.common import Reply
from bench.variants.web import port_arguments, serve, serve_until_signal

RESULT_TIMEOUT_S = 60.0


class CeleryCalls:
    """Send tasks through a producer-only Celery app; await each result on one pattern subscription."""

    def __init__(self, settings: Settings, broker: Broker) -> None:
        self.result_prefix = broker.result_prefix
        self.producer = configure(Celery("asyncstack_bench_producer", broker=broker.url), broker)
        self.redis = aredis.Redis.from_url(redis_url(settings))
        self.pubsub = self.redis.pubsub()
        self.waiters: dict[bytes, asyncio.Future[bytes]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.pubsub.psubscribe(self.result_prefix + "*")
        self.reader = asyncio.create_task(self._read())
        self.producer.control.purge()  # start from an empty queue: nothing left from an earlier run

    async def _read(self) -> None:
        try:
            async for message in self.pubsub.listen():
                if message["type"] == "pmessage":
                    waiter = self.waiters.pop(message["channel"], None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(message["data"])
        except Exception as exc:  # the subscription is gone: fail everything waiting, loudly
            print(f"error: result subscription lost: {exc}", file=sys.stderr, flush=True)
            for waiter in self.waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"result subscription lost: {exc}"))
            raise

    async def call(self, op: str, args: tuple[Any, ...]) -> Reply:
        task_id = str(uuid.uuid4())
        channel = (self.result_prefix + task_id).encode()
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiters[channel] = waiter  # before sending: the result may come back at once
        try:
            self.producer.send_task(TASK, args=(op, list(args)), task_id=task_id)
            payload = await asyncio.wait_for(waiter, RESULT_TIMEOUT_S)
        except TimeoutError:
            return 504, {"error": "backend timeout", "detail": f"no result from celery within {RESULT_TIMEOUT_S:g} s"}
        finally:
            self.waiters.pop(channel, None)
        meta = orjson.loads(payload)
        if meta.get("status") != "SUCCESS":
            return 502, {"error": "backend error", "detail": f"task {meta.get('status')}: {meta.get('result')}"}
        status, body = meta["result"]
        return int(status), body

    async def aclose(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.redis.aclose()
        self.producer.close()


def main() -> None:
    settings = load_settings()
    parser = port_arguments(__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=list(brokers(settings)), default="redis",
                        help="where tasks go (results come back through Redis either way)")
    args = parser.parse_args()

    async def listen() -> None:
        calls = CeleryCalls(settings, brokers(settings)[args.broker])
        await calls.start()
        try:
            await serve_until_signal(calls.call, args.host, args.port)
        finally:
            await calls.aclose()

    serve(listen)


if __name__ == "__main__":
    main()
