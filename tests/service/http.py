"""Small HTTP helpers for tests: a blocking one-shot call and an async client for concurrency."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from email.message import Message
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPResponse


def call(url: str, method: str = "GET", body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, Message, Any]:
    """(status, headers (case-insensitive), parsed JSON body) of one request; ``body`` is sent as JSON."""
    data = raw
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, _json(resp.read(), resp.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as err:
        return err.code, err.headers, _json(err.read(), err.headers.get("Content-Type", ""))


def _json(data: bytes, ctype: str) -> Any:
    return json.loads(data) if ctype.startswith("application/json") else data.decode()


def async_client(max_clients: int = 300) -> AsyncHTTPClient:
    return AsyncHTTPClient(force_instance=True, max_clients=max_clients)


async def timed_fetch(client: AsyncHTTPClient, url: str, timeout: float = 30) -> tuple[HTTPResponse, float]:
    """The response (errors included) and the seconds it took."""
    began = time.perf_counter()
    resp = await client.fetch(url, raise_error=False, request_timeout=timeout, connect_timeout=timeout)
    return resp, time.perf_counter() - began


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
