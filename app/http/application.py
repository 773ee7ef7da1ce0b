"""Tornado's ``Application`` with a cheaper path for each request: the same routing, handlers and answers.

    LeanApplication(routes, **settings)     # where tornado.web.Application(routes, **settings) was

Rules of this file:
- Nothing a handler can observe changes: the request object has every attribute
  ``HTTPServerRequest`` has, with the same values and the same checks of the Host
  header; the handler runs in a Task, as in Tornado.  Only work whose result is known
  to be empty is skipped, and the objects are built directly:
  - a request without a query string gets empty argument dicts instead of a parse and
    a deep copy of nothing;
  - a request without a body or a ``Content-Type`` skips the body-argument parse;
  - the handler's coroutine becomes a Task with ``loop.create_task`` instead of
    ``gen.convert_yielded`` (and the Task is held until it is done, as Tornado holds it).
- Anything unusual takes Tornado's own path: a query string, a handler with
  ``@stream_request_body``, ``debug`` (template and static-file reloading).
- Private Tornado names this file uses (the Tornado suites in ``tests/http`` and the
  service's tests fail if a release changes them): ``tornado.routing._RoutingDelegate``,
  ``tornado.routing._DefaultMessageDelegate``, ``tornado.web._HandlerDelegate`` and its
  attributes, ``tornado.httputil._ABNF``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import tornado.routing
import tornado.web
from tornado import httputil
from tornado.routing import _RoutingDelegate
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


def _done(task: asyncio.Task[None]) -> None:
    _running.discard(task)
    if not task.cancelled():
        task.result()      # RequestHandler._execute catches everything; anything else is a bug: the loop logs it


class _LeanHandlerDelegate(_HandlerDelegate):
    def execute(self) -> Any:
        settings = self.application.settings
        if self.stream_request_body or not settings.get("compiled_template_cache", True) \
                or not settings.get("static_hash_cache", True):
            return super().execute()
        request = self.request
        self.handler = self.handler_class(self.application, request, **self.handler_kwargs)
        transforms = [t(request) for t in self.application.transforms]
        task = asyncio.get_running_loop().create_task(
            self.handler._execute(transforms, *self.path_args, **self.path_kwargs))
        _running.add(task)
        task.add_done_callback(_done)
        return None


class LeanApplication(tornado.web.Application):
    """``tornado.web.Application``, building each request's objects with less work (see the file's header)."""

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _LeanRoutingDelegate(self, server_conn, request_conn)

    def get_handler_delegate(self, request: httputil.HTTPServerRequest, target_class: type[tornado.web.RequestHandler],
                             target_kwargs: dict[str, Any] | None = None, path_args: list[bytes] | None = None,
                             path_kwargs: dict[str, bytes] | None = None) -> _HandlerDelegate:
        return _LeanHandlerDelegate(self, request, target_class, target_kwargs, path_args, path_kwargs)
