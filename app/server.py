"""Building the Tornado application and serving it on uvloop."""

from __future__ import annotations

import asyncio
import signal
import sys

import tornado.httpserver
import tornado.web
import uvloop

from app.context import Context, StartupFailed
from app.handlers.base import NotFoundHandler
from app.handlers.health import HealthHandler, ReadyHandler
from app.settings import Settings


def make_app(ctx: Context) -> tornado.web.Application:
    deps = {"ctx": ctx}
    return tornado.web.Application(
        [
            (r"/healthz", HealthHandler, deps),
            (r"/readyz", ReadyHandler, deps),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=deps,
        compress_response=False,
    )


async def serve_forever(settings: Settings) -> int:
    """Start the clients, listen, and run until SIGINT/SIGTERM; then drain and close."""
    ctx = Context.build(settings)
    try:
        await ctx.start()
    except StartupFailed as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 2
    server = tornado.httpserver.HTTPServer(make_app(ctx), xheaders=True)
    try:
        server.listen(settings.server.port, settings.server.host, reuse_port=settings.server.workers != 1)
    except OSError as exc:
        await ctx.aclose()
        print(f"error: cannot listen on {settings.server.host}:{settings.server.port}: {exc.strerror}",
              file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"serving on http://{settings.server.host}:{settings.server.port}", flush=True)
    await stop.wait()
    ctx.draining = True
    server.stop()
    try:
        await asyncio.wait_for(server.close_all_connections(), settings.server.shutdown_timeout_s)
    except TimeoutError:
        pass
    await ctx.aclose()
    return 0


def serve(settings: Settings) -> int:
    return uvloop.run(serve_forever(settings))
