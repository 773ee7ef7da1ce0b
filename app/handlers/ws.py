"""``/ws``: WebSocket push (the protocol is in ``app.ws.protocol``); ``POST /publish/{channel}``: publish to it."""

from __future__ import annotations

import hmac
import os
from typing import Any

import orjson
import tornado.web
import tornado.websocket

from app.context import Context
from app.handlers.base import BaseHandler, apply_forwarded_headers, observe_finished
from app.ws import protocol
from app.ws.peer import Peer
from app.ws.protocol import ClientError, Subscribe


class PushHandler(tornado.websocket.WebSocketHandler):
    """One client connection.  Commands are handled one at a time, in the order they came."""

    ctx: Context
    peer: Peer | None = None

    def initialize(self, ctx: Context, route: str = "ws") -> None:
        self.ctx = ctx
        self.route = route
        apply_forwarded_headers(self.request)

    def prepare(self) -> None:
        # Which process holds the connection: with several workers, ops (and tests) want to know.
        self.set_header("X-Served-By", str(os.getpid()))

    def get_compression_options(self) -> dict[str, Any] | None:
        return {} if self.ctx.settings.ws.compression else None

    def open(self, *args: str, **kwargs: str) -> None:
        hub = self.ctx.hub
        peer = self.peer = Peer(self, self.ctx.settings.ws.max_buffer_bytes,
                                f"{self.request.remote_ip}#{id(self):x}")
        hub.add(peer)
        if hub.closing:
            peer.close(1001, "server shutting down")
            return
        self.set_nodelay(True)

    async def on_message(self, message: str | bytes) -> None:
        peer = self.peer
        if peer is None or peer.closing:
            return
        hub = self.ctx.hub
        try:
            command = protocol.parse(message)
            if isinstance(command, Subscribe):
                await hub.subscribe(peer, command)
            else:
                hub.unsubscribe(peer, command.channel)
        except ClientError as exc:
            hub.client_error(peer, exc)

    def on_close(self) -> None:
        if self.peer is not None:
            self.ctx.hub.remove(self.peer)

    def on_finish(self) -> None:
        observe_finished(self)


class PublishHandler(BaseHandler):
    """``POST /publish/{channel}`` with ``Authorization: Bearer <publish token>``; the body is the data (JSON)."""

    async def post(self, channel: str) -> None:
        self._authorize()
        try:
            protocol.check_channel(channel)
        except ClientError as exc:
            raise tornado.web.HTTPError(400, "%s", exc.message) from None
        data = self._data()
        msg_id = await self.ctx.hub.publish_json(channel, data)
        self.write_json({"channel": channel, "id": msg_id})

    def _authorize(self) -> None:
        token = self.ctx.settings.ws.publish_token
        if token is None:
            raise tornado.web.HTTPError(403, "publishing over HTTP is off: set ASYNCSTACK_WS__PUBLISH_TOKEN")
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            self.set_header("WWW-Authenticate", 'Bearer realm="publish"')
            raise tornado.web.HTTPError(401, "a valid \"Authorization: Bearer <publish token>\" header is required")

    def _data(self) -> bytes:
        """The body as compact JSON text (any JSON value); 400 when it is not JSON."""
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise tornado.web.HTTPError(400, "Content-Type must be application/json, not %r", ctype or "(none)")
        body, limit = self.request.body, self.ctx.settings.ws.max_message_bytes
        if len(body) > limit:
            raise tornado.web.HTTPError(400, "the message is %d bytes; at most %d are accepted", len(body), limit)
        try:
            return orjson.dumps(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            raise tornado.web.HTTPError(400, "malformed JSON body: %s", str(exc)) from None
