"""MySQL endpoints: a parameterized point select on the seeded ``items`` table, and a real ``SELECT SLEEP``."""

from __future__ import annotations

from app import api
from app.handlers.base import BaseHandler

ITEM_SQL = "SELECT id, name, price_cents FROM items WHERE id = %s"

SLEEP_S: api.Param[float] = api.Param(
    "s", api.Number(0, lambda s: s.server.max_sleep_s), "Seconds the MySQL server sleeps (server.max_sleep_s at most).",
    where="query", example=0.01)


class ItemHandler(BaseHandler):
    """``GET /mysql/items/{id}``: the row, or 404."""

    endpoint = api.Endpoint(path=(api.ITEM_ID,), operations=(
        api.Operation("get", "One item from MySQL (a parameterized point select)", backends=("mysql",), responses={
            200: api.json("The item.", api.ITEM),
            404: api.not_found("No item with this id."),
        }),
    ))

    async def get(self, raw_id: str) -> None:
        item_id = self.int_arg(raw_id)
        row = await self.ctx.mysql.fetchone(ITEM_SQL, (item_id,))
        if row is None:
            self.write_json({"error": f"no item {item_id}", "request_id": self.request_id}, 404)
            return
        self.write_json({"id": row[0], "name": row[1], "price_cents": row[2]})


class SleepHandler(BaseHandler):
    """``GET /mysql/sleep?s=``: the server sleeps ``s`` seconds; this loop does not."""

    endpoint = api.Endpoint(operations=(
        api.Operation("get", "A real SELECT SLEEP(s) on MySQL; the event loop goes on meanwhile",
                      params=(SLEEP_S,), backends=("mysql",), responses={
                          200: api.json("Slept; `result` is what SLEEP returned (0).",
                                        api.obj({"slept": {"type": "number"},
                                                 "result": {"type": ["integer", "null"]}})),
                      }),
    ))

    async def get(self) -> None:
        seconds = self.query_arg(SLEEP_S)
        row = await self.ctx.mysql.fetchone("SELECT SLEEP(%s)", (seconds,))
        self.write_json({"slept": seconds, "result": row[0] if row else None})
