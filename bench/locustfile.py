"""A realistic mix of the service's endpoints for locust (FastHttpUser): mostly reads, some writes.

Headless, as ``make bench`` runs it (CSV stats under bench/results/locust_*.csv)::

    .venv/bin/locust -f bench/locustfile.py --headless -u 64 -r 64 -t 20s \\
        --host http://127.0.0.1:8888 --csv bench/results/locust

With its web UI (open http://127.0.0.1:8089, set users and spawn rate, press start)::

    .venv/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8888 --web-host 127.0.0.1

Reads go to items 1..1000, which ``python -m app seed`` creates in all four backends.  Each user
waits 0-20 ms between requests.  Requests are grouped by route in the stats (ids and keys replaced
by ``[id]``/``[key]``).
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

ITEMS = 1000


def _item() -> int:
    return random.randint(1, ITEMS)


class ServiceUser(FastHttpUser):
    wait_time = between(0.0, 0.02)

    @task(30)
    def redis_read(self) -> None:
        self.client.get(f"/redis/kv/items:{_item()}", name="/redis/kv/[key]")

    @task(20)
    def mysql_item(self) -> None:
        self.client.get(f"/mysql/items/{_item()}", name="/mysql/items/[id]")

    @task(10)
    def fanout(self) -> None:
        self.client.get(f"/fanout/{_item()}", name="/fanout/[id]")

    @task(10)
    def ignite_item(self) -> None:
        self.client.get(f"/ignite/items/{_item()}", name="/ignite/items/[id]")

    @task(10)
    def now(self) -> None:
        self.client.get("/now", name="/now")

    @task(5)
    def slow_query(self) -> None:
        self.client.get("/mysql/sleep?s=0.05", name="/mysql/sleep?s=0.05")

    @task(5)
    def redis_write(self) -> None:
        key = f"locust-kv:{random.randint(1, 100)}"
        self.client.put(f"/redis/kv/{key}", json={"value": "v" * 32, "ttl_s": 60}, name="/redis/kv/[key] PUT")

    @task(5)
    def counter(self) -> None:
        key = f"locust-counter:{random.randint(1, 10)}"
        self.client.post(f"/redis/counters/{key}/incr", name="/redis/counters/[key]/incr")

    @task(5)
    def mongo_insert_and_read(self) -> None:
        with self.client.post("/mongo/docs", json={"kind": "locust", "n": _item()}, name="/mongo/docs POST",
                              catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"status {response.status_code}")
                return
            doc_id = response.json()["id"]
        self.client.get(f"/mongo/docs/{doc_id}", name="/mongo/docs/[id]")
