"""``GET /metrics``: Prometheus exposition text (every worker's samples in multiprocess mode)."""

from __future__ import annotations

from app import api, metrics
from app.handlers.base import BaseHandler


class MetricsHandler(BaseHandler):
    endpoint = api.Endpoint(operations=(
        api.Operation("get", "Prometheus metrics", responses={
            200: api.Response("The Prometheus text exposition format.", {"type": "string"},
                              media_type="text/plain"),
        }),
    ))

    def get(self) -> None:
        metrics.sample_clients(self.ctx.clients)
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.finish(metrics.render())
