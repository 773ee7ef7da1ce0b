"""Tornado's ``Application`` with a cheaper path for each request: the same routing, handlers and answers.

    LeanApplication(routes, **settings)     # where tornado.web.Application(routes, **settings) was

Rules of this file:
- Nothing a handler can observe changes: the request object has every attribute
  ``HTTPServerRequest`` has, with the same values and the same checks of the Host
  header; an async handler runs in a Task, as in Tornado.  Only work whose result is
  known to be empty is skipped, and the objects are built directly:
  - a request without a query string gets empty argument dicts instead of a parse and
    a deep copy of nothing;
  - a request without a body or a ``Content-Type`` skips the body-argument parse;
  - the handler's coroutine becomes a Task with ``loop.create_task`` instead of
    ``gen.convert_yielded`` (and the Task is held until it is done, as Tornado holds it);
  - a handler whose ``prepare`` and method are plain functions (``def get``, not
    ``async def``) runs at once, inside the call that delivered its request, as
    Tornado ran such handlers before version 6: it does not wait behind everything
    already queued on the event loop, and needs no Task.  If its method returns an
    awaitable after all, a Task takes the rest on (``_go_on``), as Tornado's would;
  - routing tries only the rules that can match the path, in their order: a rule whose
    pattern is all literal is found by a dict lookup, one with a literal first segment
    (``/redis/...``) by that segment; others are tried on every request.  The first rule
    that matches wins, as in Tornado.  The index is rebuilt when rules are added; with
    host-specific handlers (``add_handlers``) Tornado routes.
- Headers are not this file's: the fast transport's requests and the service's handler
  base's responses use ``app.http.headers.Headers``.
- Anything unusual takes Tornado's own path: a query string, a handler with
  ``@stream_request_body``, ``debug`` (template and static-file reloading).
- Private Tornado names this file uses (the Tornado suites in ``tests/http`` and the
  service's tests fail if a release changes them): ``tornado.routing._RoutingDelegate``,
  ``tornado.routing._DefaultMessageDelegate``, ``tornado.web._HandlerDelegate`` and its
  attributes, ``tornado.httputil._ABNF``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import re
import time
from collections.abc import Coroutine, Generator
from typing import Any

import tornado.routing
import tornado.web
from tornado import httputil
from tornado.routing import AnyMatches, PathMatches, Rule, _RoutingDelegate
from tornado.web import _HandlerDelegate

_running: set[asyncio.Task[None]] = set()


class LeanRequest(httputil.HTTPServerRequest):
    """``HTTPServerRequest`` as the server side builds it, without parsing what is not there."""

    def __init__(self, connection: httputil.HTTPConnection, server_connection: object,
                 start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> None:
        uri = start_line.path
        if "?" in uri:
            super().__init__(connection=connection, server_connection=server_connection, start_line=start_line,
                             headers=headers)
            return
        self.method, self.uri, self.version = start_line
        self.headers = headers
        self.body = b""
        context = getattr(connection, "context", None)
        self.remote_ip = getattr(context, "remote_ip", None)  # type: ignore[assignment]
        self.protocol = getattr(context, "protocol", "http")
        host = headers.get("Host")
        if host is None:
            if self.version != "HTTP/1.0":
                raise httputil.HTTPInputError("Missing Host header")
            host = "127.0.0.1"       # HTTP/1.0 does not require the Host header
        if not httputil._ABNF.host.fullmatch(host):
            raise httputil.HTTPInputError(f"Invalid Host header: {host!r}")
        if "," in host:
            raise httputil.HTTPInputError(f"Multiple host headers not allowed: {host!r}")
        self.host = host
        self.host_name = httputil.split_host_and_port(host.lower())[0]
        self.files = {}
        self.connection = connection
        self.server_connection = server_connection
        self._start_time = time.time()
        self._finish_time = None
        self.path, self.query = uri, ""
        self.arguments = {}
        self.query_arguments = {}
        self.body_arguments = {}

    def _parse_body(self) -> None:
        if self.body or "Content-Type" in self.headers:
            super()._parse_body()


class _LeanRoutingDelegate(_RoutingDelegate):
    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> Any:
        assert isinstance(start_line, httputil.RequestStartLine)
        request = LeanRequest(self.request_conn, self.server_conn, start_line, headers)
        self.delegate = self.router.find_handler(request)
        if self.delegate is None:
            self.delegate = tornado.routing._DefaultMessageDelegate(self.request_conn)
        return self.delegate.headers_received(start_line, headers)


def _done(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled():
        task.result()      # RequestHandler._execute catches everything; anything else is a bug: the loop logs it


class _Await:
    """Wait for what a coroutine yielded to its Task (a future, or None for a bare yield), without its result."""

    __slots__ = ("yielded",)

    def __init__(self, yielded: Any) -> None:
        self.yielded = yielded

    def __await__(self) -> Generator[Any, None, None]:
        yielded = self.yielded
        if yielded is None:
            yield None
        elif not (isinstance(yielded, asyncio.Future) and yielded.done()):
            yielded._asyncio_future_blocking = True
            yield yielded


async def _go_on(coro: Coroutine[Any, None, None], yielded: Any) -> None:
    """The rest of a coroutine whose first step ran already and yielded ``yielded``: what its Task would do."""
    while True:
        thrown: BaseException | None = None
        try:
            await _Await(yielded)
        except BaseException as exc:          # thrown into this Task (a cancellation): into the coroutine
            thrown = exc
        try:
            # Sent None, it takes the outcome from the future itself, as under its own Task.
            yielded = coro.send(None) if thrown is None else coro.throw(thrown)
        except StopIteration:
            return


_synchronous: dict[tuple[type, str], bool] = {}


def _is_synchronous(handler_class: type, method: str) -> bool:
    """Whether the handler's ``prepare`` and its method for ``method`` are plain functions (not coroutines)."""
    key = (handler_class, method)
    found = _synchronous.get(key)
    if found is None:
        found = _synchronous[key] = not any(
            inspect.iscoroutinefunction(getattr(handler_class, name, None)) for name in ("prepare", method.lower()))
    return found


class _LeanHandlerDelegate(_HandlerDelegate):
    def execute(self) -> Any:
        settings = self.application.settings
        if self.stream_request_body or not settings.get("compiled_template_cache", True) \
                or not settings.get("static_hash_cache", True):
            return super().execute()
        request = self.request
        self.handler = self.handler_class(self.application, request, **self.handler_kwargs)
        transforms = [t(request) for t in self.application.transforms]
        coro = self.handler._execute(transforms, *self.path_args, **self.path_kwargs)
        loop = asyncio.get_running_loop()
        if _is_synchronous(self.handler_class, request.method or ""):
            # Run now, not after everything already queued on the loop: a handler without
            # awaits answers within this call (no Task at all).  If it awaits after all (a
            # method returning an awaitable), a Task takes the coroutine on from there.
            context = contextvars.copy_context()
            try:
                yielded = context.run(coro.send, None)
            except StopIteration:
                return None
            task = loop.create_task(_go_on(coro, yielded), context=context)
        else:
            task = loop.create_task(coro)
        _running.add(task)
        task.add_done_callback(_done)
        return None


_SPECIAL = re.compile(r"[\\.^$*+?{}\[\]|()]")


class _RouteIndex:
    """Which of the application's path rules can match a path, in their order (see the file's header)."""

    def __init__(self, rules: list[Rule]) -> None:
        self.size = len(rules)
        self.rules = rules
        self.exact: dict[str, list[int]] = {}      # whole literal path -> rule positions
        self.segment: dict[str, list[int]] = {}    # literal "/first/" segment -> rule positions
        self.prefixed: list[tuple[str, int]] = []  # a literal prefix without a full first segment
        self.always: list[int] = []                # not a plain path pattern: tried every time
        for position, rule in enumerate(rules):
            matcher = rule.matcher
            if type(matcher) is not PathMatches or matcher.regex.flags & re.IGNORECASE:
                self.always.append(position)
                continue
            pattern = matcher.regex.pattern
            special = _SPECIAL.search(pattern)
            prefix = pattern if special is None else pattern[:special.start()]
            if special is not None and special.start() == len(pattern) - 1 and pattern.endswith("$"):
                self.exact.setdefault(prefix, []).append(position)
            elif (slash := prefix.find("/", 1)) > 0:
                self.segment.setdefault(prefix[:slash + 1], []).append(position)
            else:
                self.prefixed.append((prefix, position))

    def candidates(self, path: str) -> list[int]:
        slash = path.find("/", 1)
        found = self.exact.get(path, []) + self.segment.get(path[:slash + 1], []) if slash > 0 \
            else list(self.exact.get(path, ()))
        found += [position for prefix, position in self.prefixed if path.startswith(prefix)]
        found += self.always
        if len(found) > 1:
            found.sort()
        return found


class LeanApplication(tornado.web.Application):
    """``tornado.web.Application``, building each request's objects with less work (see the file's header)."""

    _route_index: _RouteIndex | None = None

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> _HandlerDelegate:
        default = self.default_router.rules
        if len(default) != 1 or type(default[0].matcher) is not AnyMatches \
                or default[0].target is not self.wildcard_router:
            return super().find_handler(request, **kwargs)      # host-specific handlers: Tornado routes
        rules = self.wildcard_router.rules
        index = self._route_index
        if index is None or index.rules is not rules or index.size != len(rules):
            index = self._route_index = _RouteIndex(rules)
        router = self.wildcard_router
        for position in index.candidates(request.path):
            rule = rules[position]
            params = rule.matcher.match(request)
            if params is not None:
                if rule.target_kwargs:
                    params["target_kwargs"] = rule.target_kwargs
                delegate = router.get_target_delegate(rule.target, request, **params)
                if delegate is not None:
                    return delegate  # type: ignore[no-any-return]
        return super().find_handler(request, **kwargs)   # no rule matches: Tornado's default handler or 404

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _LeanRoutingDelegate(self, server_conn, request_conn)

    def get_handler_delegate(self, request: httputil.HTTPServerRequest, target_class: type[tornado.web.RequestHandler],
                             target_kwargs: dict[str, Any] | None = None, path_args: list[bytes] | None = None,
                             path_kwargs: dict[str, bytes] | None = None) -> _HandlerDelegate:
        return _LeanHandlerDelegate(self, request, target_class, target_kwargs, path_args, path_kwargs)
