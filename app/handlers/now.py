"""``GET /now``: the server's clock, no I/O — the yardstick for loop responsiveness."""

from __future__ import annotations

import os
import time

from app import api
from app.handlers.base import BaseHandler


class NowHandler(BaseHandler):
    endpoint = api.Endpoint(operations=(
        api.Operation("get", "The server's clock and process id (no I/O)", responses={
            200: api.json("Seconds since the epoch, and the pid of the worker that answered.",
                          api.obj({"now": {"type": "number"}, "pid": {"type": "integer"}})),
        }),
    ))

    def get(self) -> None:
        self.write_json({"now": time.time(), "pid": os.getpid()})
