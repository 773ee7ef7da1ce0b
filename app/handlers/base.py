"""The base handler: JSON responses, input checks, and the one place exceptions become error responses.

Every error a client sees is JSON with the request id::

    {"error": "backend unavailable", "backend": "redis", "detail": "...", "request_id": "..."}

Each request has a time budget (``server.request_timeout_s``, or less with the header
``X-Request-Timeout: <seconds>``), set in ``prepare`` and inherited by every backend call made for
it (``drivers.budget``): none outlives the request.

DriverError groups map to 503 (unavailable; with ``Retry-After`` when the backend is busy: a pool
or a concurrency limit had no room within the budget), 504 (timeout: the call's deadline or the
request's budget; the body says how long it waited), 502 (the backend's own error, or a
backend that broke its protocol) and 500 (``InterfaceError``: this service misused a driver — a
bug of ours, logged with its traceback; inside ``request_input()`` it is the request's fault, 400).
``HTTPError(400, ...)`` carries a message saying what was wrong with the input; anything else is
a 500 whose traceback goes to the log, never to the client.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import orjson
import tornado.util
import tornado.web
from tornado import httputil, netutil
from tornado.httputil import HTTPServerRequest

from app import api, metrics
from app.context import Context
from app.http.headers import Headers
from drivers import budget, limits
from drivers.errors import (
    BackendBusy,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    DriverError,
    InterfaceError,
    ProtocolError,
)

log = logging.getLogger("app.error")
T = TypeVar("T")

_REQUEST_ID = api.REQUEST_ID_PATTERN
_JSON_TYPES = ("application/json",)


class _RequestIds:
    """New request ids, 32 hex characters: a random prefix drawn per process, then a counter.

    Unique without a syscall per request (``uuid4`` reads ``os.urandom`` each time); the prefix is
    drawn again in a forked child, so workers never share one.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


_request_ids = _RequestIds()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def apply_forwarded_headers(request: HTTPServerRequest, trusted: tuple[str, ...]) -> None:
    """The client's address and scheme as a trusted proxy in front reports them, as Tornado's ``xheaders`` does.

    Only when the peer is one of ``trusted`` (``server.trusted_proxies``): from anyone else these
    headers are forged as easily as sent, and the peer's own address stays.
    ``remote_ip``: the last ``X-Forwarded-For`` entry, or ``X-Real-Ip``, if it is an IP address;
    ``protocol``: the last ``X-Scheme`` or ``X-Forwarded-Proto`` entry if http or https.  Done here
    rather than by ``HTTPServer(xheaders=True)``, which validates an address on every request, so
    requests without these headers (most, and all direct ones) pay four dict lookups.
    """
    headers = request.headers
    if not ("X-Forwarded-For" in headers or "X-Real-Ip" in headers or "X-Scheme" in headers
            or "X-Forwarded-Proto" in headers) or request.remote_ip not in trusted:
        return
    ip = headers.get("X-Forwarded-For", request.remote_ip or "").split(",")[-1].strip()
    ip = headers.get("X-Real-Ip", ip)
    if netutil.is_valid_ip(ip):
        request.remote_ip = ip
    proto = headers.get("X-Scheme", headers.get("X-Forwarded-Proto", request.protocol))
    if proto:
        proto = proto.split(",")[-1].strip()
    if proto in ("http", "https"):
        request.protocol = proto


def observe_finished(handler: tornado.web.RequestHandler) -> None:
    """Count a finished request in the request metrics (route, method, status, time taken)."""
    request = handler.request
    metrics.observe_request(getattr(handler, "route", "unmatched"), request.method or "", handler.get_status(),
                            request.request_time())


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=_json_default)


_SERVER_HEADER = f"TornadoServer/{tornado.version}"


class _HttpDate:
    """The ``Date`` header's value, formatted once per second rather than once per response."""

    second, text = 0, ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.second, self.text = now, httputil.format_timestamp(now)
        return self.text


http_date = _HttpDate()
_UNBUILT = object()


class BaseHandler(tornado.web.RequestHandler):
    endpoint: ClassVar[api.Endpoint]     # what it accepts and answers: the OpenAPI document's source (app.api)
    ctx: Context
    route: str = "unmatched"
    request_id: str = ""
    _budget: Any = None
    _calls_through: list[limits.Limiter] | None = None

    def initialize(self, ctx: Context, route: str = "unmatched") -> None:
        self.ctx = ctx
        self.route = route
        apply_forwarded_headers(self.request, ctx.settings.server.trusted_proxies)
        ctx.request_started()

    def prepare(self) -> None:
        """Start the request's budget: the setting, or less if the client asks for less."""
        self._calls_through = limits.watch_calls()   # what the connection's next request will likely need
        seconds = self.ctx.settings.server.request_timeout_s
        asked = self.request.headers.get("X-Request-Timeout")
        if asked is not None:
            wanted = float(asked) if api.NUMBER_PATTERN.fullmatch(asked) else math.nan
            if not (math.isfinite(wanted) and wanted > 0):
                raise tornado.web.HTTPError(400, "X-Request-Timeout must be a number of seconds above 0, not %r",
                                            asked[:64])
            seconds = min(seconds, wanted)
        self._budget = budget.start(seconds)

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> asyncio.Future[None]:
        """Tornado's ``finish``, telling the connection's read gate first what this request went through.

        The fast transport decides whether to read the connection's next request as the response
        finishes (inside ``super().finish()``, before ``on_finish``), so the gate must know by then:
        told later, a connection's second request was read on its first's (empty) record, however
        full the limit its first request was turned away from.
        """
        gate = getattr(getattr(self.request.connection, "context", None), "read_gate", None)
        if gate is not None:
            gate.remember(self._calls_through or ())
        return super().finish(chunk)

    def on_finish(self) -> None:
        if self._budget is not None:
            budget.stop(self._budget)
            self._budget = None
        self.ctx.request_finished()
        observe_finished(self)

    # -- per-request cost: RequestHandler's steps made cheaper (docs/performance.md#the-http-transport) --

    def __init__(self, application: tornado.web.Application, request: HTTPServerRequest, **kwargs: Any) -> None:
        """``RequestHandler.__init__`` without building the template namespace (``ui``) until a template asks."""
        super(tornado.web.RequestHandler, self).__init__()   # what follows RequestHandler in the MRO, as it does
        self.application = application
        self.request = request
        self._headers_written = False
        self._finished = False
        self._auto_finish = True
        self._prepared_future = None
        self._ui: Any = _UNBUILT
        self.clear()
        self.request.connection.set_close_callback(self.on_connection_close)  # type: ignore[union-attr]
        self.initialize(**kwargs)

    @property  # type: ignore[override]
    def ui(self) -> Any:
        """Tornado's ``ui`` (the UI methods and modules of templates), built on first use."""
        if self._ui is _UNBUILT:
            ui = tornado.util.ObjectDict((n, self._ui_method(m)) for n, m in self.application.ui_methods.items())
            ui["_tt_modules"] = ui["modules"] = tornado.web._UIModuleNamespace(self, self.application.ui_modules)
            self._ui = ui
        return self._ui

    @ui.setter
    def ui(self, value: Any) -> None:
        self._ui = value

    def clear(self) -> None:
        """Tornado's ``clear()``, with the Date header formatted once per second and the headers set directly."""
        self._headers = Headers.of({"Server": _SERVER_HEADER, "Content-Type": "text/html; charset=UTF-8",
                                    "Date": http_date()})
        self.set_default_headers()
        self._write_buffer = []
        self._status_code = 200
        self._reason = "OK"

    def compute_etag(self) -> str | None:
        """No ETag: these answers are computed per request, and hashing every body bought no 304s."""
        return None

    def check_etag_header(self) -> bool:
        """Tornado's check, skipped when the answer has no ETag (then it is always False)."""
        return "Etag" in self._headers and super().check_etag_header()

    def set_default_headers(self) -> None:
        if not self.request_id:
            given = self.request.headers.get("X-Request-ID", "")
            self.request_id = given if given and _REQUEST_ID.fullmatch(given) else _request_ids.new()
        # Checked by the pattern above, or made here: set without set_header's checks.
        if isinstance(self._headers, Headers):
            self._headers.put("X-Request-Id", self.request_id)
        else:                                   # a subclass's own clear()
            self.set_header("X-Request-ID", self.request_id)

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        data = dumps(body)
        headers = self._headers
        if isinstance(headers, Headers) and not self._headers_written and not self._write_buffer \
                and status not in (204, 304) and status >= 200:
            # What ``finish(data)`` would do before sending, without its type checks and header
            # validation (both values are made here): the body in the buffer, its length set.
            headers.put("Content-Type", "application/json")
            headers.put("Content-Length", str(len(data)))
            self._write_buffer.append(data)
            self.finish()
        else:
            self.set_header("Content-Type", "application/json")
            self.finish(data)

    # -- input -------------------------------------------------------------------------------

    def int_arg(self, value: str, param: api.Param[int] = api.ITEM_ID) -> int:
        """A path segment that must be a decimal integer within the declared bounds, else 400."""
        return param.parse(value, self.ctx.settings)

    def key_arg(self, value: str, param: api.Param[str] = api.KEY) -> str:
        """A path segment that must match the declared key pattern, else 400."""
        return param.parse(value, self.ctx.settings)

    def query_arg(self, param: api.Param[T]) -> T:
        """A query argument checked against its declaration (required, bounds), else 400."""
        return param.parse(self.get_query_argument(param.name, None), self.ctx.settings)

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object; 400 for a wrong content type, oversized or malformed body."""
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in _JSON_TYPES:
            raise tornado.web.HTTPError(400, "Content-Type must be application/json, not %r", ctype or "(none)")
        body, limit = self.request.body, self.ctx.settings.server.max_json_bytes
        if len(body) > limit:
            raise tornado.web.HTTPError(400, "the JSON body is %d bytes; at most %d are accepted", len(body), limit)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise tornado.web.HTTPError(400, "malformed JSON body: %s", str(exc)) from None
        if not isinstance(value, dict):
            raise tornado.web.HTTPError(400, "the JSON body must be an object, not %s", type(value).__name__)
        return value

    @contextmanager
    def request_input(self) -> Iterator[None]:
        """Around a driver call that carries the request's own data: a misuse it finds is a 400.

        The driver's ``InterfaceError`` (a value it cannot encode, say) then says what was wrong
        with the input, instead of being a 500 of ours.
        """
        try:
            yield
        except InterfaceError as exc:
            raise tornado.web.HTTPError(400, "%s", exc.message) from exc

    # -- errors ------------------------------------------------------------------------------

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError) or (isinstance(value, DriverError)
                                                        and not isinstance(value, InterfaceError)):
            return  # expected: answered as JSON, and the access log has the status
        log.error("unhandled error in %s %s (request %s)", self.request.method, self.request.path,
                  self.request_id, exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any]
        if isinstance(exc, BackendTimeout):
            waited = exc.waited_s if exc.waited_s is not None else self.request.request_time()
            status_code, body = 504, {"error": "backend timeout", "backend": exc.backend, "detail": exc.message,
                                      "waited_ms": round(waited * 1000)}
        elif isinstance(exc, BackendBusy):
            retry_after = max(1, math.ceil(exc.retry_after_s))
            self.set_header("Retry-After", str(retry_after))
            status_code, body = 503, {"error": "backend busy", "backend": exc.backend, "detail": exc.message,
                                      "retry_after_s": retry_after}
        elif isinstance(exc, BackendUnavailable):
            status_code, body = 503, {"error": "backend unavailable", "backend": exc.backend,
                                      "detail": exc.message}
        elif isinstance(exc, InterfaceError):   # our code misused a driver: logged with its traceback
            status_code, body = 500, {"error": "internal server error", "backend": exc.backend}
        elif isinstance(exc, ProtocolError):
            status_code, body = 502, {"error": "backend protocol error", "backend": exc.backend,
                                      "detail": exc.message}
        elif isinstance(exc, BackendError | DriverError):
            status_code, body = 502, {"error": "backend error", "backend": exc.backend, "detail": exc.message}
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message
            body = {"error": message or self._reason}
        else:
            body = {"error": self._reason if status_code != 500 else "internal server error"}
        body["request_id"] = self.request_id
        if status_code == 405:   # the methods this resource has, as its declaration (and the document) says
            endpoint = getattr(self, "endpoint", None)
            self.set_header("Allow", ", ".join(op.method.upper() for op in endpoint.operations) if endpoint else "")
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(body))


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "no route for %s", self.request.path)
