"""``GET /metrics``: Prometheus exposition text (every worker's samples in multiprocess mode)."""

from __future__ import annotations

from app import metrics
from app.handlers.base import BaseHandler


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        metrics.sample_clients(self.ctx.clients)
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.finish(metrics.render())
