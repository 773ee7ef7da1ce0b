"""Liveness and readiness."""

from __future__ import annotations

from app.handlers.base import BaseHandler


class HealthHandler(BaseHandler):
    """``GET /healthz``: the process is up and its loop turns. No I/O."""

    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(BaseHandler):
    """``GET /readyz``: pings all four backends concurrently with a short deadline.

    200 with per-backend latency, or 503 naming each backend that failed and why.
    """

    async def get(self) -> None:
        if self.ctx.draining:
            self.write_json({"status": "draining"}, 503)
            return
        ok, report = await self.ctx.readiness(self.ctx.settings.server.readiness_timeout_s)
        failed = sorted(name for name, r in report.items() if not r["ok"])
        body: dict[str, object] = {"status": "ready" if ok else "unavailable", "backends": report}
        if failed:
            body["failed"] = failed
        self.write_json(body, 200 if ok else 503)
