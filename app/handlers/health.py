"""Liveness and readiness."""

from __future__ import annotations

from app import api
from app.handlers.base import BaseHandler

_BACKEND_REPORT: api.Schema = {
    "type": "object",
    "description": "Per backend: ok with its round-trip latency, or not ok with its address and the reason.",
    "additionalProperties": api.obj({"ok": {"type": "boolean"}},
                                    {"latency_ms": {"type": "number", "minimum": 0}, "address": {"type": "string"},
                                     "error": {"type": "string"}}),
}


class HealthHandler(BaseHandler):
    """``GET /healthz``: the process is up and its loop turns. No I/O."""

    endpoint = api.Endpoint(operations=(
        api.Operation("get", "Liveness: the process is up and its event loop turns (no I/O)", responses={
            200: api.json("Alive.", api.obj({"status": {"const": "ok"}})),
        }),
    ))

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """``GET /readyz``: pings all four backends concurrently with a short deadline.

    200 with per-backend latency, or 503 naming each backend that failed and why (an error
    like any other: with ``error`` and ``request_id``).
    """

    endpoint = api.Endpoint(operations=(
        api.Operation(
            "get", "Readiness: every backend answers a ping",
            description="Pings MySQL, Redis, MongoDB and Ignite concurrently, each within server.readiness_timeout_s.",
            responses={
                200: api.json("Every backend answered.",
                              api.obj({"status": {"const": "ready"}, "backends": _BACKEND_REPORT})),
                503: api.json("A backend did not answer (`failed` names them), or the server is shutting down "
                              "(`draining`).",
                              api.error_schema({"status": {"enum": ["unavailable", "draining"]}},
                                               {"backends": _BACKEND_REPORT,
                                                "failed": {"type": "array", "items": {"type": "string"}}})),
            }),
    ))

    async def get(self) -> None:
        if self.ctx.draining:
            self.write_json({"status": "draining", "error": "the server is shutting down",
                             "request_id": self.request_id}, 503)
            return
        ok, report = await self.ctx.readiness(self.ctx.settings.server.readiness_timeout_s)
        failed = sorted(name for name, r in report.items() if not r["ok"])
        body: dict[str, object] = {"status": "ready" if ok else "unavailable", "backends": report}
        if failed:
            body["failed"] = failed
            body["error"] = f"not ready: {', '.join(failed)} did not answer"
            body["request_id"] = self.request_id
        self.write_json(body, 200 if ok else 503)
