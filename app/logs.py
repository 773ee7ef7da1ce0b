"""Structured logs: one JSON object per line.

Access lines (``app.access``) go to stdout, one per request, with the request
id; everything else (warnings, tracebacks) goes to stderr, also as JSON.
Access lines are gathered while the event loop runs its callbacks and written together
at the end of that loop iteration: one write per iteration, not one per request (a write
per line was about 5% of a cheap request's CPU). Writes are synchronous: point stdout at
a file or a pipe that is read (a full pipe would stall the loop).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any

import orjson
import tornado.web


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": round(record.created, 6), "level": record.levelname.lower(),
                                 "logger": record.name, "pid": os.getpid(), "msg": record.getMessage()}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure() -> None:
    """Send every log record to stderr as JSON; Tornado's own access log is replaced by ``log_request``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("tornado.access").disabled = True
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)


class AccessLog:
    """The Application's ``log_function``: a JSON access line per request, when enabled.

    It only logs: request metrics are recorded by the handlers (``app.handlers.base``).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.pid = os.getpid()
        self._lines: list[bytes] = []

    def __call__(self, handler: tornado.web.RequestHandler) -> None:
        if not self.enabled:
            return
        request, status = handler.request, handler.get_status()
        seconds = request.request_time()
        route = getattr(handler, "route", "unmatched")
        lines = self._lines
        if not lines:
            asyncio.get_running_loop().call_soon(self.flush)
        lines.append(orjson.dumps({
            "ts": round(time.time(), 6), "level": "info", "logger": "app.access", "pid": self.pid,
            "request_id": getattr(handler, "request_id", ""), "method": request.method, "path": request.path,
            "route": route, "status": status, "duration_ms": round(seconds * 1000, 3),
            "remote": request.remote_ip,
        }, option=orjson.OPT_APPEND_NEWLINE))

    def flush(self) -> None:
        """Write the lines gathered since the last flush (the loop calls it; so does the shutdown)."""
        if self._lines:
            data, self._lines = b"".join(self._lines), []
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
