"""A bare Tornado hello-world on uvloop: the baseline the service's endpoints are measured against.

    .venv/bin/python -m bench.hello PORT [tornado|fast|lean]

A handler written the usual way; ``fast`` serves it with ``app.http.fast_server`` instead of
Tornado's own HTTP server, ``lean`` also with ``app.http.application.LeanApplication``.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import tornado.web
import uvloop


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world")


async def main(port: int, transport: str = "tornado") -> None:
    app_class = tornado.web.Application
    if transport == "lean":            # the fast transport and app.http.application.LeanApplication
        from app.http.application import LeanApplication
        app_class = LeanApplication
    app = app_class([(r"/", Hello)])
    if transport in ("fast", "lean"):
        from app.http.fast_server import FastHTTPServer
        FastHTTPServer(app).listen(port, "127.0.0.1")
    else:
        app.listen(port, "127.0.0.1")
    await until_signal()


async def until_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), *sys.argv[2:3]))
