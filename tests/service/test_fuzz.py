"""The generated-request (fuzz) run: schemathesis against a live server, every operation of the API document.

For each operation schemathesis sends the document's examples, then boundary and invalid values of
every parameter and body (its coverage phase), then generated ones, valid and invalid (fuzzing),
and checks every answer with all of its checks: no 5xx, the status, content type, headers and body
as the document says, invalid input refused with a 4xx, valid input accepted, 405 with ``Allow``
for a method the document does not list, the bearer token enforced.  A check of ours on top:
every error is JSON with ``error`` and a ``request_id``.  The server must log no error meanwhile.

Repeatable: examples are derandomized (``deterministic``) and bounded per operation (50); under two minutes on 2 cores.
Run it alone with ``.venv/bin/python -m pytest tests/service/test_fuzz.py``; for a longer, random
run, ``FUZZ_SEED=<n> FUZZ_MAX_EXAMPLES=<n>`` (the seed turns derandomization off).

What the run leaves out, and why:

- ``GET /ws``: a WebSocket upgrade; to a plain HTTP request it answers the handshake's own
  plain-text 400, which is what the document says (tests/service/test_openapi.py checks it).
- Budgets below ``BUDGET_FLOOR_S``: a valid ``X-Request-Timeout`` smaller than that is raised to it
  before sending.  A client that gives a request 5e-324 s gets the documented 504 (its own budget
  ran out; test_bad_input.py), which the "no 5xx" check cannot tell from a failure.
- Nothing else.  The slow endpoints' values are bounded by the server's settings, which the
  document states: this server runs with ``max_sleep_s`` 0.2 and ``max_range`` 100000, so a run
  never waits long.  ``POST /publish`` is given the token the server is started with.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response

from app import openapi
from app.server import ROUTES
from app.settings import load_settings
from tests.conftest import ServerProcess, run_app, run_module, start_server
from tests.service.http import call

BUDGET_FLOOR_S = 2.0
TOKEN = "fuzz-publish-token"
ENV = {
    "ASYNCSTACK_SERVER__MAX_SLEEP_S": "0.2",
    "ASYNCSTACK_SERVER__MAX_RANGE": "100000",
    "ASYNCSTACK_WS__PUBLISH_TOKEN": TOKEN,
}
SEED = os.environ.get("FUZZ_SEED")
CONFIG = f"""
seed = {int(SEED or 20261130)}

[generation]
max-examples = {int(os.environ.get("FUZZ_MAX_EXAMPLES", "50"))}
deterministic = {"false" if SEED else "true"}
# Unknown headers and query arguments are ignored, as HTTP services do; sending some is no test.
allow-extra-parameters = false

[checks]
enabled = true
"""
SENT: Counter[str] = Counter()


def _document() -> dict[str, Any]:
    """The document the server below serves: made in this process with the same settings (compared below)."""
    with mock.patch.dict(os.environ, ENV):
        return openapi.document(ROUTES, load_settings())


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_str(CONFIG)).exclude(path="/ws")


@pytest.fixture(scope="module")
def fuzzed(seeded: None) -> Iterator[ServerProcess]:
    """The server under the run; after it, its log must hold no error, and the seeded items are written again."""
    srv = start_server(env=ENV)
    call(srv.url + "/ignite/cache/items:7", "PUT", {"value": "fuzz"})   # what an earlier run left there
    yield srv
    srv.stop()
    print(f"\nfuzz run: {sum(SENT.values())} cases:",
          ", ".join(f"{op} {n}" for op, n in sorted(SENT.items())))
    reseeded = run_app("seed", timeout=120)   # the run wrote to the seeded keys (items:7 is the keys' example)
    assert reseeded.returncode == 0, reseeded.stderr
    # PUT /items/{id} wrote rows of its own, and the cache holds what the run read: both go.
    cleaned = run_module("tests.service.fuzz_cleanup", timeout=60)
    assert cleaned.returncode == 0, cleaned.stderr
    logged = [line for line in srv.stderr().splitlines(keepends=True) if '"app.error"' in line]
    assert not logged, "the server logged errors during the run:\n" + "".join(logged)[:20000]


@schemathesis.check
def error_is_json_with_request_id(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every error is JSON with ``error`` and ``request_id`` (the X-Request-ID of the response)."""
    if response.status_code < 400:
        return None
    ctype = response.headers.get("content-type", [""])[0]
    assert ctype.startswith("application/json"), f"an error with Content-Type {ctype!r}"
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str), f"no error message: {body}"
    assert body.get("request_id") == response.headers.get("x-request-id", [None])[0], f"no request id: {body}"
    return None


def test_the_run_uses_the_document_the_server_serves(fuzzed: ServerProcess) -> None:
    status, _, served = call(fuzzed.url + "/openapi.json")
    assert (status, served) == (200, DOCUMENT)


@schema.parametrize()
def test_api(case: Case, fuzzed: ServerProcess) -> None:
    budget = (case.headers or {}).get("X-Request-Timeout")
    if budget is not None:
        try:
            seconds = float(budget)
        except ValueError:
            seconds = math.nan
        if 0 < seconds < BUDGET_FLOOR_S:
            case.headers["X-Request-Timeout"] = str(BUDGET_FLOOR_S)
    declared = case.method.lower() in DOCUMENT["paths"][case.path]
    SENT[f"{case.method} {case.path}" if declared else "(undeclared methods)"] += 1
    case.call_and_validate(base_url=fuzzed.url, headers={"Authorization": f"Bearer {TOKEN}"})
