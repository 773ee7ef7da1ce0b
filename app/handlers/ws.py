"""``/ws``: WebSocket push (the protocol is in ``app.ws.protocol``); ``POST /publish/{channel}``: publish to it."""

from __future__ import annotations

import hmac
import os
from typing import Any

import orjson
import tornado.web
import tornado.websocket

from app import api
from app.context import Context
from app.handlers.base import BaseHandler, apply_forwarded_headers, observe_finished
from app.ws import protocol
from app.ws.peer import Peer
from app.ws.protocol import ClientError, Subscribe

CHANNEL: api.Param[str] = api.Param(
    "channel", api.Text(protocol.CHANNEL, "a channel is 1 to 128 of A-Z a-z 0-9 _ . : -", 1, 128),
    "The channel: 1 to 128 of A-Z a-z 0-9 _ . : - (private:* channels need a token to subscribe).", example="news")
_HANDSHAKE_ERROR = "text/plain"


class PushHandler(tornado.websocket.WebSocketHandler):
    """One client connection.  Commands are handled one at a time, in the order they came."""

    endpoint = api.Endpoint(operations=(
        api.Operation(
            "get", "WebSocket push: subscribe to channels, resume after a reconnect",
            description="A WebSocket upgrade (RFC 6455); the messages are described in docs/websocket.md. "
                        "A plain HTTP GET, without `Upgrade: websocket`, is answered 400 by the handshake "
                        "(plain text, not the JSON of the other endpoints); an unsupported "
                        "Sec-WebSocket-Version 426. Not part of the generated-request (fuzz) run, which "
                        "speaks plain HTTP only.",
            responses={
                101: api.Response("Switching protocols: the connection is a WebSocket from here on."),
                400: api.Response("Not a WebSocket upgrade request.", {"type": "string"}, _HANDSHAKE_ERROR),
                403: api.Response("Cross-origin upgrade refused.", {"type": "string"}, _HANDSHAKE_ERROR),
                426: api.Response("Unsupported WebSocket version.", {"type": "string"}, _HANDSHAKE_ERROR,
                                  (api.Header("Sec-WebSocket-Version", {"type": "string"}, "The version spoken: 13"),)),
            }),
    ))
    ctx: Context
    peer: Peer | None = None

    def initialize(self, ctx: Context, route: str = "ws") -> None:
        self.ctx = ctx
        self.route = route
        apply_forwarded_headers(self.request, ctx.settings.server.trusted_proxies)

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

    endpoint = api.Endpoint(path=(CHANNEL,), operations=(
        api.Operation(
            "post", "Publish a JSON value to a channel's subscribers on every worker and machine",
            description="The body, any JSON value up to ws.max_message_bytes, is the message's data.",
            body=api.Body({}, "Any JSON value: the message's data."), bearer=True, backends=("redis",),
            responses={
                200: api.json("Published; `id` is the message's id in the channel's history.",
                              api.obj({"channel": {"type": "string"}, "id": {"type": "string"}})),
                401: api.Response("No valid bearer token.", api.error_schema(), headers=(
                    api.Header("WWW-Authenticate", {"type": "string"}, 'Bearer realm="publish"'),)),
                403: api.Response("Publishing over HTTP is off (no ws.publish_token is set).", api.error_schema()),
            }),
    ))

    async def post(self, channel: str) -> None:
        self._authorize()
        try:
            protocol.check_channel(channel)
        except ClientError as exc:
            raise tornado.web.HTTPError(400, "%s", exc.message) from None
        data = self._data()
        msg_id = await self.ctx.hub.publish_json(channel, data)
        self.write_json({"channel": channel, "id": msg_id})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:   # set here: sending an error clears the headers set before it
            self.set_header("WWW-Authenticate", 'Bearer realm="publish"')
        super().write_error(status_code, **kwargs)

    def _authorize(self) -> None:
        token = self.ctx.settings.ws.publish_token
        if token is None:
            raise tornado.web.HTTPError(403, "publishing over HTTP is off: set ASYNCSTACK_WS__PUBLISH_TOKEN")
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
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
