"""The routes every variant serves, and the Tornado application around a variant's way of running a call.

A variant supplies one coroutine function, ``run(op, args) -> (status, body)``, that executes an
operation of ``common.OPS``: in the handler, on a thread pool, or as a Celery task.  Input checks,
``/now`` and ``/healthz`` (no I/O) and the JSON replies are the same for all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
import tornado.web
import uvloop

from bench.variants.common import Reply

Run = Callable[[str, tuple[Any, ...]], Awaitable[Reply]]

_KEY = re.compile(r"[A-Za-z0-9._:-]{1,200}")
MAX_SLEEP_S = 5.0


class BadInput(ValueError):
    """The request's input is wrong; the message says how (a 400)."""


def _int(raw: str) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        raise BadInput(f"id must be an integer, not {raw[:64]!r}") from None
    if not -(2**31) <= value < 2**31:
        raise BadInput(f"id is out of range: {raw[:64]}")
    return value


def _key(raw: str) -> str:
    if not _KEY.fullmatch(raw):
        raise BadInput(f"a key is 1-200 characters of A-Z a-z 0-9 . _ : -, not {raw[:64]!r}")
    return raw


def _seconds(raw: str | None) -> float:
    try:
        value = float(raw if raw is not None else "nan")
    except ValueError:
        value = float("nan")
    if not 0 <= value <= MAX_SLEEP_S:
        raise BadInput(f"s must be from 0 to {MAX_SLEEP_S:g}, not {raw!r}")
    return value


class _Json(tornado.web.RequestHandler):
    def reply(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(body))


class NowHandler(_Json):
    def get(self) -> None:
        self.reply(200, {"now": time.time(), "pid": os.getpid()})


class HealthHandler(_Json):
    def get(self) -> None:
        self.reply(200, {"status": "ok"})


class OpHandler(_Json):
    """Parse the path (and query), run the operation the variant's way, answer its reply."""

    def initialize(self, op: str, parse: Callable[[OpHandler, str], tuple[Any, ...]], run: Run) -> None:
        self.op, self.parse, self.run = op, parse, run

    async def get(self, path_arg: str = "") -> None:
        try:
            args = self.parse(self, path_arg)
        except BadInput as exc:
            self.reply(400, {"error": str(exc)})
            return
        try:
            status, body = await self.run(self.op, args)
        except Exception as exc:
            status, body = 502, {"error": "backend error", "detail": f"{type(exc).__name__}: {exc}"[:300]}
        self.reply(status, body)


# (pattern, operation in common.OPS, how its arguments come from the request)
ROUTES: list[tuple[str, str, Callable[[OpHandler, str], tuple[Any, ...]]]] = [
    (r"/redis/kv/([^/]+)", "redis_get", lambda h, raw: (_key(raw),)),
    (r"/mysql/items/([^/]+)", "mysql_item", lambda h, raw: (_int(raw),)),
    (r"/mysql/sleep", "mysql_sleep", lambda h, raw: (_seconds(h.get_query_argument("s", None)),)),
    (r"/ignite/cache/([^/]+)", "ignite_cache_get", lambda h, raw: (_key(raw),)),
    (r"/ignite/items/([^/]+)", "ignite_item", lambda h, raw: (_int(raw),)),
    (r"/fanout/([^/]+)", "fanout", lambda h, raw: (_int(raw),)),
]


def make_app(run: Run) -> tornado.web.Application:
    routes: list[Any] = [(r"/now", NowHandler), (r"/healthz", HealthHandler)]
    routes += [(pattern, OpHandler, {"op": op, "parse": parse, "run": run}) for pattern, op, parse in ROUTES]
    return tornado.web.Application(routes, compress_response=False, log_function=lambda handler: None)


def port_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    return parser


async def serve_until_signal(run: Run, host: str, port: int) -> None:
    """Listen (after the variant's clients exist) until SIGINT or SIGTERM."""
    server = make_app(run).listen(port, host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"serving on http://{host}:{port} (pid {os.getpid()})", flush=True)
    await stop.wait()
    server.stop()


def serve(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a variant's ``main`` on uvloop, the loop the service runs on."""
    uvloop.run(main())
