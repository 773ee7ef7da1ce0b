"""The base handler: JSON responses and the one place exceptions become error responses."""

from __future__ import annotations

from typing import Any

import orjson
import tornado.web

from app.context import Context
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError


class BaseHandler(tornado.web.RequestHandler):
    ctx: Context

    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, DriverError):
            return  # an expected backend failure: answered as 503/504 JSON, no traceback in the log
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any]
        if isinstance(exc, BackendTimeout):
            status_code, body = 504, {"error": "backend timeout", "backend": exc.backend, "detail": exc.message}
        elif isinstance(exc, BackendUnavailable):
            status_code, body = 503, {"error": "backend unavailable", "backend": exc.backend,
                                      "detail": exc.message}
        elif isinstance(exc, BackendError | DriverError):
            status_code, body = 502, {"error": "backend error", "backend": exc.backend, "detail": exc.message}
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message
            body = {"error": message or self._reason}
        else:
            body = {"error": self._reason}
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(body))


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "no route for %s", self.request.path)
