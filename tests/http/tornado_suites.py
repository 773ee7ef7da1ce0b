"""Tornado's own HTTP server, web and WebSocket test suites, run against ``FastHTTPServer``.

    .venv/bin/python -m tests.http.tornado_suites [--loop uvloop|asyncio] [unittest names...]

Rules of this file:
- ``HTTPServer.configure(FastHTTPServer)`` makes every ``HTTPServer(...)`` the suites build
  (``AsyncHTTPTestCase.get_http_server``) one of ours; nothing else in the suites changes.
- ``--lean`` also makes every ``Application`` they build the service's ``LeanApplication``
  (``app.http.application``): Tornado's web tests then check its cheaper request path.
- Tests that cannot apply are skipped here by name, each with its reason (``NOT_APPLICABLE``);
  everything else must pass.  ``tests/http/test_tornado_suites.py`` runs this in a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import unittest

from tornado.test import runtests

SUITES = [
    "tornado.test.httpserver_test",
    "tornado.test.web_test",
    "tornado.test.websocket_test",
    "tornado.test.security_corpus_test",
    "tornado.test.simple_httpclient_test",
    "tornado.test.httpclient_test",
]

_STREAM = "reaches into the private request.connection.stream (Tornado's IOStream), which this transport has not"
_413 = "expects 400 for a body over max_body_size; this transport answers 413 Content Too Large (RFC 9110 15.5.14)"

# "module.Class.test" -> why it does not apply to this transport
NOT_APPLICABLE: dict[str, str] = {
    "web_test.ClientCloseTest.test_client_close": _STREAM,
    "simple_httpclient_test.HTTP100ContinueTestCase.test_100_continue": _STREAM,
    "httpserver_test.BodyLimitsTest.test_large_body_buffered": _413,
    "httpserver_test.BodyLimitsTest.test_large_body_buffered_chunked": _413,
    "httpserver_test.BodyLimitsTest.test_large_body_streaming": _413,
    "httpserver_test.BodyLimitsTest.test_large_body_streaming_chunked": _413,
    "httpserver_test.BodyLimitsTest.test_body_size_override_reset": _413 + " (it compares the raw bytes)",
    # The test never stops the second server it starts and relies on IOLoop.close(all_fds=True) to
    # close its socket; here the socket belongs to the event loop's server, which that does not reach
    # (under uvloop, with ResourceWarning an error as Tornado's runner has it, loop.close() then hangs).
    "simple_httpclient_test.SimpleHTTPClientTestCase.test_ipv6":
        "leaves a server listening and counts on IOLoop.close(all_fds=True) to close its socket",
}


def _skip(names: dict[str, str]) -> None:
    for name, reason in names.items():
        module, cls, method = name.split(".")
        klass = getattr(importlib.import_module(f"tornado.test.{module}"), cls)
        setattr(klass, method, unittest.skip(f"not applicable: {reason}")(getattr(klass, method)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--stock", action="store_true", help="run against Tornado's own server (a baseline)")
    parser.add_argument("--lean", action="store_true",
                        help="every Application the suites build is app.http.application.LeanApplication")
    args, rest = parser.parse_known_args()
    if args.loop == "uvloop":
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    names = [a for a in rest if not a.startswith("-")] or SUITES
    flags = [a for a in rest if a.startswith("-")]
    if not args.stock:
        flags.append("--httpserver=app.http.fast_server.FastHTTPServer")
        _skip(NOT_APPLICABLE)
    if args.lean:
        from app.http.application import LeanApplication
        for name in names:      # each suite's own ``Application`` name (``from tornado.web import Application``)
            module = importlib.import_module(name)
            if hasattr(module, "Application"):
                module.Application = LeanApplication
    sys.argv = [sys.argv[0], *flags, *names]
    # Tornado's own runner: warnings are errors, and a test that logs anything unexpected fails.
    runtests.main()


if __name__ == "__main__":
    main()
