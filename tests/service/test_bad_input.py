"""What the generated-request run (test_fuzz.py) found, and what reading the handlers beside it found.

Each test is a request that was answered with a 5xx, or otherwise than the API document says;
the comment above it says what the answer was before (and when reading, not the run, found it).
Every answer here is also checked against the document (status declared, body matching its
schema, errors with a request id).
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from email.message import Message
from typing import Any

import jsonschema
import pytest
import redis as redis_py

from app import openapi, seed
from app.server import ROUTES
from app.settings import REDIS_PORT, STACK_HOST, load_settings
from tests.conftest import ServerProcess, run_app, start_server
from tests.service.http import call

TOKEN = "bad-input-token"
DOCUMENT = openapi.document(ROUTES, load_settings())


@pytest.fixture(scope="module")
def srv(seeded: None) -> Iterator[ServerProcess]:
    server = start_server(env={"ASYNCSTACK_WS__PUBLISH_TOKEN": TOKEN})
    yield server
    server.stop()
    done = run_app("seed", timeout=120)   # some tests here write to the seeded keys
    assert done.returncode == 0, done.stderr


def documented(template: str, method: str, answer: tuple[int, Message, Any]) -> Any:
    """The body of ``answer``, after checking it against the document's response for its status."""
    status, headers, body = answer
    responses = DOCUMENT["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, (template, method, status, body)
    response = responses[str(status)]
    if "$ref" in response:
        response = DOCUMENT["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": DOCUMENT["components"]}).validate(body)
    assert headers["X-Request-ID"]
    if status >= 400:
        assert body["request_id"] == headers["X-Request-ID"]
    return body


def key() -> str:
    return f"bad-input:{uuid.uuid4().hex}"


# -- Redis: what a key holds is the key's state, not a backend failure (was 502 "backend error") ------------


def test_incr_of_a_key_holding_text_is_409_naming_the_key(srv: ServerProcess) -> None:
    # POST /redis/counters/items:7/incr (the item's JSON): 502 {"error": "backend error", ...}
    k = key()
    call(srv.url + f"/redis/kv/{k}", "PUT", {"value": "not a number", "ttl_s": 60})
    body = documented("/redis/counters/{key}/incr", "POST", call(srv.url + f"/redis/counters/{k}/incr", "POST"))
    assert body["error"] == f"{k}: ERR value is not an integer or out of range"


def test_incr_past_the_largest_counter_is_409(srv: ServerProcess) -> None:
    k = key()
    call(srv.url + f"/redis/kv/{k}", "PUT", {"value": str(2**63 - 1), "ttl_s": 60})
    body = documented("/redis/counters/{key}/incr", "POST", call(srv.url + f"/redis/counters/{k}/incr", "POST"))
    assert "overflow" in body["error"]


def test_blpop_of_a_key_holding_text_is_409(srv: ServerProcess) -> None:
    # GET /redis/blpop/items:7?s=0.01: 502 {"error": "backend error", "detail": "redis: WRONGTYPE ..."}
    k = key()
    call(srv.url + f"/redis/kv/{k}", "PUT", {"value": "text", "ttl_s": 60})
    body = documented("/redis/blpop/{key}", "GET", call(srv.url + f"/redis/blpop/{k}?s=0.01"))
    assert body["error"].startswith(f"{k}: WRONGTYPE")


def test_get_of_a_key_holding_a_list_is_409(srv: ServerProcess) -> None:
    # GET /redis/kv/<a list> (or a channel's stream, ws:<channel>): 502 — found by reading, not by the run
    k = key()
    client = redis_py.Redis(host=STACK_HOST, port=REDIS_PORT)
    try:
        client.rpush(k, "x")
        client.expire(k, 60)
        body = documented("/redis/kv/{key}", "GET", call(srv.url + f"/redis/kv/{k}"))
    finally:
        client.delete(k)
        client.close()
    assert body["error"].startswith(f"{k}: WRONGTYPE")


# -- Redis: ttl_s as the document says it ------------------------------------------------------------------


def test_a_null_ttl_is_no_expiry_as_the_document_says(srv: ServerProcess) -> None:
    # PUT {"value": "", "ttl_s": null}: 200, but the document said ttl_s is an integer (fixed in the document)
    ttl = DOCUMENT["paths"]["/redis/kv/{key}"]["put"]["requestBody"]["content"]["application/json"]
    assert jsonschema.Draft202012Validator(ttl["schema"]).is_valid({"value": "", "ttl_s": None})
    k = key()
    assert documented("/redis/kv/{key}", "PUT", call(srv.url + f"/redis/kv/{k}", "PUT",
                                                    {"value": "", "ttl_s": None})) == {"key": k, "value": ""}


def test_an_integral_float_ttl_is_an_integer(srv: ServerProcess) -> None:
    # PUT {"value": "x", "ttl_s": 21551.0}: 400 "ttl_s must be a positive integer"; JSON Schema calls 21551.0 integer
    k = key()
    documented("/redis/kv/{key}", "PUT", call(srv.url + f"/redis/kv/{k}", "PUT", {"value": "x", "ttl_s": 60.0}))
    client = redis_py.Redis(host=STACK_HOST, port=REDIS_PORT)
    try:
        assert 0 < client.ttl(k) <= 60
    finally:
        client.delete(k)
        client.close()


def test_a_ttl_redis_cannot_take_is_400(srv: ServerProcess) -> None:
    # PUT {"value": "x", "ttl_s": 4611686018427387904}: 502 "ERR invalid expire time" — found by reading
    body = documented("/redis/kv/{key}", "PUT", call(srv.url + f"/redis/kv/{key()}", "PUT",
                                                    {"value": "x", "ttl_s": 2**62}))
    assert body["error"] == "ttl_s must be an integer from 1 to 2147483647"


# -- Ignite: numbers as the document says them --------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"-9223372036854775809", b"9223372036854775808", b"1e300"])
def test_an_ignite_value_beyond_64_bits_is_400(srv: ServerProcess, raw: bytes) -> None:
    # PUT /ignite/cache/items:7 {"value": -9223372036854775809}: 200 {"value": -9.223372036854776e+18}, a
    # different number, stored, and an answer outside the document
    answer = call(srv.url + f"/ignite/cache/{key()}", "PUT", raw=b'{"value": ' + raw + b"}",
                  headers={"Content-Type": "application/json"})
    body = documented("/ignite/cache/{key}", "PUT", answer)
    assert answer[0] == 400
    assert "integral values fit 64 bits" in body["error"]


def test_an_ignite_value_within_64_bits_is_stored(srv: ServerProcess) -> None:
    k = key()
    for value in (-(2**63), 2**63 - 1, 12.25, -1.5e-300, True, "text"):
        assert documented("/ignite/cache/{key}", "PUT", call(srv.url + f"/ignite/cache/{k}", "PUT",
                                                             {"value": value}))["value"] == value


# -- MongoDB: a document the server refuses is the body's fault (was 502 "backend error") ------------------


@pytest.mark.parametrize(("doc", "says"), [
    ({"a": [[1]]}, "field 'a' holds an array inside an array"),       # FerretDB: nested arrays are not supported
    ({"n": {"b": [[]]}}, "field 'b' holds an array inside an array"),
    ({"$a": 1}, "field name '$a' in the document starts with $"),    # every MongoDB server refuses these two
    ({"x": [{"a.b": 1}]}, "field name 'a.b' in field 'x' starts with $ or holds"),
    ({'a"': 1}, "field name 'a\"' in the document"),                 # FerretDB 1.24: internal error (code 1)
    ({"\\": 1}, "field name '\\\\' in the document"),
])
def test_a_document_mongo_would_refuse_is_400_saying_why(srv: ServerProcess, doc: dict[str, Any], says: str) -> None:
    body = documented("/mongo/docs", "POST", call(srv.url + "/mongo/docs", "POST", doc))
    assert body["error"].startswith("mongo: cannot store this document: "), body
    assert says in body["error"]


def test_a_document_nested_deeper_than_mongo_allows_is_400(srv: ServerProcess) -> None:
    # Not a failure before (FerretDB stores it; MongoDB refuses it): the rule the document now states
    doc: dict[str, Any] = {}
    inner = doc
    for _ in range(120):
        inner["a"] = {}
        inner = inner["a"]
    body = documented("/mongo/docs", "POST", call(srv.url + "/mongo/docs", "POST", doc))
    assert "nested more than 100 levels deep" in body["error"]


def test_what_every_mongo_server_stores_is_stored(srv: ServerProcess) -> None:
    doc = {"a$": 1, "": None, "a b": [1, {"c": [2]}], "\u00e9": "\u0000", "n": -(2**63), "f": 1.5, "x": {"id": 1}}
    created = documented("/mongo/docs", "POST", call(srv.url + "/mongo/docs", "POST", doc))
    found = documented("/mongo/docs/{id}", "GET", call(srv.url + f"/mongo/docs/{created['id']}"))
    assert found == {**doc, "id": created["id"]}


# -- fanout: a value under an item's key that is not an item (was 500) ---------------------------------------


@pytest.mark.parametrize("value", ["", "[1]", "not json"])
def test_fanout_with_something_else_under_the_items_key_gives_null_for_that_backend(
        srv: ServerProcess, value: str) -> None:
    # PUT /redis/kv/items:7 {"value": ""} then GET /fanout/7: 500 (orjson.JSONDecodeError, logged as our bug);
    # with "[1]", a 200 whose "redis" was a list, not the object the document says
    item = 9
    seeded_value = json.dumps(seed.item(item), separators=(",", ":"))   # what `python -m app seed` stores
    try:
        call(srv.url + f"/redis/kv/items:{item}", "PUT", {"value": value})
        body = documented("/fanout/{id}", "GET", call(srv.url + f"/fanout/{item}"))
        assert body["redis"] is None
        assert body["mysql"] == {"id": item, "name": f"item-{item}", "price_cents": body["mysql"]["price_cents"]}
    finally:
        call(srv.url + f"/redis/kv/items:{item}", "PUT", {"value": seeded_value})


# -- publish: the 401 says how to authenticate (WWW-Authenticate was set, then cleared by the error) --------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic abc"])
def test_publish_without_the_token_is_401_with_www_authenticate(srv: ServerProcess, authorization: str | None) -> None:
    # POST /publish/news without Authorization: 401 without the WWW-Authenticate header the document requires
    headers = {"Authorization": authorization} if authorization else {}
    answer = call(srv.url + "/publish/news", "POST", {"x": 1}, headers=headers)
    documented("/publish/{channel}", "POST", answer)
    assert answer[0] == 401
    assert answer[1]["WWW-Authenticate"] == 'Bearer realm="publish"'


def test_publish_with_the_token_is_200(srv: ServerProcess) -> None:
    answer = call(srv.url + "/publish/news", "POST", {"x": 1}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert documented("/publish/{channel}", "POST", answer)["channel"] == "news"


# -- numbers in the path and the query: ASCII digits only, as the document's integer and number say ---------


@pytest.mark.parametrize(("path", "message"), [
    ("/mysql/items/1_0", "id must be an integer, not '1_0'"),           # was 200: item 10 (int() takes 1_0)
    ("/mysql/items/%20%207", "id must be an integer, not '  7'"),       # was 200: item 7 (int() strips blanks)
    ("/ignite/items/%D9%A7", "id must be an integer, not '\u0667'"),    # was 200: item 7 (an Arabic-Indic 7)
    ("/mysql/sleep?s=0_1", "s must be a number, not '0_1'"),            # was 200: slept 1 s
    ("/ignite/range?n=1_0", "n must be an integer, not '1_0'"),         # was 200: the sum of 1..10
])
def test_a_number_not_written_as_the_document_says_is_400(srv: ServerProcess, path: str, message: str) -> None:
    # found by reading: int() and float() take more than the document's integer and number
    status, _, body = call(srv.url + path)
    assert (status, body["error"]) == (400, message)


@pytest.mark.parametrize("raw", ["1_0", "inf", "nan", "0", "-1", "soon"])
def test_an_x_request_timeout_that_is_not_a_positive_number_is_400(srv: ServerProcess, raw: str) -> None:
    # found by the fuzz run: float() took "1_0" as 10
    status, _, body = call(srv.url + "/now", headers={"X-Request-Timeout": raw})
    assert status == 400 and "X-Request-Timeout must be a number of seconds above 0" in body["error"]


def test_readiness_within_a_spent_budget_fails_every_backend(srv: ServerProcess) -> None:
    # found by the fuzz run: the Redis and Ignite pings did not ask the budget, MySQL and MongoDB did
    status, _, body = call(srv.url + "/readyz", headers={"X-Request-Timeout": "5e-324"})
    assert status == 503 and body["failed"] == ["ignite", "mongo", "mysql", "redis"], body
    assert all("budget" in body["backends"][name]["error"] for name in body["failed"]), body


def test_a_budget_the_client_made_too_short_is_a_documented_504(srv: ServerProcess) -> None:
    """Not a bug: X-Request-Timeout below what a call takes is answered 504, as the document says."""
    answer = call(srv.url + "/mysql/items/7", headers={"X-Request-Timeout": "5e-324"})
    body = documented("/mysql/items/{id}", "GET", answer)
    assert (answer[0], body["error"], body["backend"]) == (504, "backend timeout", "mysql")


# -- readiness: its 503 is an error like the others (it had no error and no request_id) ----------------------


def test_readyz_while_draining_is_503_with_error_and_request_id(seeded: None) -> None:
    server = start_server(env={"ASYNCSTACK_SERVER__SHUTDOWN_GRACE_S": "3"})
    try:
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        answer = call(server.url + "/readyz", headers={"X-Request-ID": "drain-1"})
        body = documented("/readyz", "GET", answer)
        assert (answer[0], body["status"], body["request_id"]) == (503, "draining", "drain-1")
        assert body["error"] == "the server is shutting down"
    finally:
        server.stop()


def test_the_document_names_every_status_used_here() -> None:
    used = json.dumps(DOCUMENT["paths"]["/redis/kv/{key}"]["get"]["responses"])
    assert '"409"' in used
