"""Building the Tornado application and serving it on uvloop, with a graceful shutdown.

Shutdown, on SIGTERM or SIGINT:

1. ``/readyz`` answers 503 (``draining``) — for ``shutdown_grace_s`` while still listening,
   so a load balancer can notice;
2. the listener closes: no new connections;
3. every WebSocket is closed with 1001 ("going away"); closing handshakes get ``ws.close_timeout_s``;
4. requests in flight get ``shutdown_timeout_s`` to finish (kept-alive connections are then closed);
5. the Redis subscription and the clients close in reverse order of start; the process exits 0.

Request metrics are recorded by the handlers when a request finishes; backend call metrics by the
drivers themselves, through the observer the context hands them (``metrics.observe_backend``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import signal
import sys
from typing import Any

import tornado.httpserver
import tornado.web
import uvloop

from app import logs, metrics, openapi, status
from app.context import Context, StartupFailed
from app.handlers import fanout, ignite, items, mongo, mysql, redis, ws
from app.handlers.base import NotFoundHandler
from app.handlers.docs import DOCUMENT_SETTING, DocsPageHandler, OpenApiHandler
from app.handlers.health import HealthHandler, ReadyHandler
from app.handlers.metrics import MetricsHandler
from app.handlers.now import NowHandler
from app.handlers.status import StatusPageHandler
from app.http.application import LeanApplication
from app.http.fast_server import FastHTTPServer
from app.http.tornado_server import GatedHTTPServer
from app.settings import Settings

# (URL pattern, handler, route name used in metrics and access logs).  Each handler declares what it
# accepts and answers (its ``endpoint``, app.api); /openapi.json is made from this table and those.
ROUTES: list[tuple[str, type[tornado.web.RequestHandler], str]] = [
    (r"/healthz", HealthHandler, "healthz"),
    (r"/readyz", ReadyHandler, "readyz"),
    (r"/metrics", MetricsHandler, "metrics"),
    (r"/now", NowHandler, "now"),
    (r"/mysql/items/([^/]+)", mysql.ItemHandler, "mysql_item"),
    (r"/items/([^/]+)", items.CachedItemHandler, "item"),
    (r"/mysql/sleep", mysql.SleepHandler, "mysql_sleep"),
    (r"/mongo/docs", mongo.DocsHandler, "mongo_docs"),
    (r"/mongo/docs/([^/]+)", mongo.DocHandler, "mongo_doc"),
    (r"/redis/kv/([^/]+)", redis.KeyHandler, "redis_kv"),
    (r"/redis/counters/([^/]+)/incr", redis.IncrHandler, "redis_incr"),
    (r"/redis/blpop/([^/]+)", redis.BlockingPopHandler, "redis_blpop"),
    (r"/ignite/cache/([^/]+)", ignite.CacheKeyHandler, "ignite_cache"),
    (r"/ignite/items/([^/]+)", ignite.SqlItemHandler, "ignite_item"),
    (r"/ignite/range", ignite.RangeHandler, "ignite_range"),
    (r"/fanout/([^/]+)", fanout.FanoutHandler, "fanout"),
    (r"/ws", ws.PushHandler, "ws"),
    (r"/publish/([^/]+)", ws.PublishHandler, "publish"),
    (r"/openapi\.json", OpenApiHandler, "openapi"),
    (r"/docs", DocsPageHandler, "docs"),
    (r"/status", StatusPageHandler, "status"),
]


def make_app(ctx: Context) -> tornado.web.Application:
    routes: list[Any] = [(pattern, handler, {"ctx": ctx, "route": name}) for pattern, handler, name in ROUTES]
    w = ctx.settings.ws
    document = openapi.publish(ROUTES, ctx.settings)   # once, without I/O; a declaration that drifted fails here
    application = LeanApplication(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args={"ctx": ctx, "route": "unmatched"},
        compress_response=False,
        log_function=logs.AccessLog(ctx.settings.server.access_log),
        websocket_ping_interval=w.ping_interval_s,
        websocket_ping_timeout=w.ping_timeout_s,
        websocket_max_message_size=w.max_message_bytes,
    )
    application.settings[DOCUMENT_SETTING] = document
    return application


# The listen queue (the kernel caps it at net.core.somaxconn).  Tornado's 128 overflowed when the
# WebSocket clients of a host that restarted all reconnected at once through a balancer: the kernel
# dropped the SYNs over it, and nginx's 1 s connect timeout (not retried) answered 504.
LISTEN_BACKLOG = 4096


def make_server(app: tornado.web.Application, settings: Settings) -> tornado.httpserver.HTTPServer:
    """The HTTP server of ``server.transport``: ``fast`` (app.http.fast_server) or Tornado's own."""
    s = settings.server
    max_body = max(s.max_json_bytes * 16, 1 << 20)
    if s.transport == "fast":
        fast = FastHTTPServer(app, max_body_size=max_body, idle_connection_timeout=s.idle_timeout_s)
        fast.read_pause_max_s = s.read_pause_max_s
        fast.header_timeout_s = s.header_timeout_s
        fast.backlog = LISTEN_BACKLOG
        return fast
    server_class = GatedHTTPServer if s.read_pause_max_s > 0 else tornado.httpserver.HTTPServer
    server = server_class(app, max_body_size=max_body, idle_connection_timeout=s.idle_timeout_s)
    if isinstance(server, GatedHTTPServer):
        server.read_pause_max_s = s.read_pause_max_s
    return server


async def serve_forever(settings: Settings) -> int:
    """Start the clients, listen, and run until SIGINT/SIGTERM; then drain and close."""
    ctx = Context.build(settings, observer=metrics.observe_backend)
    try:
        await ctx.start()
    except StartupFailed as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 2
    s = settings.server
    # The transport's body limit only stops absurd bodies (the handlers refuse JSON over max_json_bytes
    # with 400).  X-Forwarded-For / X-Real-Ip are applied by the handlers
    # (app.handlers.base.apply_forwarded_headers), not by xheaders=True.  With read_pause_max_s,
    # connections whose next request would meet a saturated backend limit are not read until it has
    # room (app.http.gate): the excess waits in the kernel, not in this process.
    server = make_server(make_app(ctx), settings)
    try:
        server.listen(s.port, s.host, backlog=LISTEN_BACKLOG, reuse_port=s.workers != 1)
    except OSError as exc:
        await ctx.aclose()
        print(f"error: cannot listen on {s.host}:{s.port}: {exc.strerror}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ctx.cache.on_load = metrics.observe_load
    sampler = asyncio.create_task(metrics.sample_forever(ctx.clients, lambda: ctx.in_flight, s.loop_lag_interval_s,
                                                         ctx.hub.stats, ctx.cache.snapshot))
    reporter = status.start(ctx)     # this worker's figures for GET /status, once a second
    # One write(2) with its newline: the workers share one stdout, and a line split over two
    # writes can be joined to another worker's.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), f"serving on http://{s.host}:{s.port} (pid {os.getpid()})\n".encode())
    await stop.wait()
    await _shut_down(ctx, server, settings)
    await status.stop(reporter)
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    return 0


async def _shut_down(ctx: Context, server: tornado.httpserver.HTTPServer, settings: Settings) -> None:
    s = settings.server
    ctx.draining = True
    if s.shutdown_grace_s > 0:
        await asyncio.sleep(s.shutdown_grace_s)
    server.stop()
    if isinstance(server, FastHTTPServer):
        server.begin_drain()     # idle keep-alive connections close now; busy ones after their response
    await ctx.hub.close_all(timeout_s=settings.ws.close_timeout_s)
    drained = await ctx.drained(s.shutdown_timeout_s)
    if not drained:
        print(f"warning: {ctx.in_flight} requests still in flight after {s.shutdown_timeout_s:g} s; closing",
              file=sys.stderr)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.close_all_connections(), 1.0)
    try:
        await ctx.aclose()
    except* Exception as group:
        for exc in group.exceptions:
            print(f"warning: while closing: {exc}", file=sys.stderr)
    access_log = getattr(server.request_callback, "settings", {}).get("log_function")
    if isinstance(access_log, logs.AccessLog):
        access_log.flush()        # the lines of the last requests, before the loop stops


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (each WebSocket holds a descriptor); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


def tune_gc(settings: Settings) -> None:
    """Freeze what is alive at start, and set the young generation's threshold (``server.gc_threshold``).

    Everything alive now (the imported modules: tens of thousands of objects) lives as long as the
    process: out of the collector's reach, a full collection no longer walks it (under load such a
    pass paused the loop for 50-100 ms; frozen, about 12 ms).  The threshold: docs/performance.md.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(settings.server.gc_threshold, *gc.get_threshold()[1:])


def serve(settings: Settings) -> int:
    logs.configure()
    raise_fd_limit()
    tune_gc(settings)
    return int(uvloop.run(serve_forever(settings)))
