"""MySQL endpoints: a parameterized point select on the seeded ``items`` table, and a real ``SELECT SLEEP``."""

from __future__ import annotations

from app.handlers.base import BaseHandler

ITEM_SQL = "SELECT id, name, price_cents FROM items WHERE id = %s"


class ItemHandler(BaseHandler):
    """``GET /mysql/items/{id}``: the row, or 404."""

    async def get(self, raw_id: str) -> None:
        item_id = self.int_arg(raw_id)
        row = await self.ctx.mysql.fetchone(ITEM_SQL, (item_id,))
        if row is None:
            self.write_json({"error": f"no item {item_id}", "request_id": self.request_id}, 404)
            return
        self.write_json({"id": row[0], "name": row[1], "price_cents": row[2]})


class SleepHandler(BaseHandler):
    """``GET /mysql/sleep?s=``: the server sleeps ``s`` seconds; this loop does not."""

    async def get(self) -> None:
        seconds = self.number_query("s", 0, self.ctx.settings.server.max_sleep_s)
        row = await self.ctx.mysql.fetchone("SELECT SLEEP(%s)", (seconds,))
        self.write_json({"slept": seconds, "result": row[0] if row else None})
