"""``GET /now``: the server's clock, no I/O — the yardstick for loop responsiveness."""

from __future__ import annotations

import os
import time

from app.handlers.base import BaseHandler


class NowHandler(BaseHandler):
    def get(self) -> None:
        self.write_json({"now": time.time(), "pid": os.getpid()})
