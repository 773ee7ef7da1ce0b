"""The same hello-world on aiohttp and on uvicorn (raw ASGI, httptools): the horizon for ``bench.transport``.

    .venv/bin/python -m bench.horizon aiohttp|uvicorn PORT

Neither runs Tornado handlers; they show what a Python HTTP/1.1 server costs without them.
"""

from __future__ import annotations

import sys
from typing import Any

BODY = b"Hello, world"


def run_aiohttp(port: int) -> None:
    import uvloop
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=UTF-8"), (b"content-length", b"12")]})
    await send({"type": "http.response.body", "body": BODY})


def run_uvicorn(port: int) -> None:
    import uvicorn
    uvicorn.run(asgi, host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False,
                log_level="warning", lifespan="off")


if __name__ == "__main__":
    {"aiohttp": run_aiohttp, "uvicorn": run_uvicorn}[sys.argv[1]](int(sys.argv[2]))
