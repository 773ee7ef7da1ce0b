"""The API document: valid OpenAPI 3.1, every route in it, made from the handlers' declarations, served with a page.

The declarations are also what the handlers check input with; the tests at the end hold the two
to each other (the schema in the document accepts a value exactly when the code does).
"""

from __future__ import annotations

import html
import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import tornado.web
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from app import api, openapi
from app.handlers import ignite, mongo, mysql, redis
from app.handlers.base import BaseHandler
from app.server import ROUTES
from app.settings import Settings, load_settings
from tests.conftest import ServerProcess, start_server
from tests.service.http import call

SETTINGS = load_settings()
DOCUMENT = openapi.document(ROUTES, SETTINGS)


@pytest.fixture(scope="module")
def docs_server(stack: None) -> Iterator[ServerProcess]:
    srv = start_server(env={"ASYNCSTACK_SERVER__MAX_SLEEP_S": "1.5", "ASYNCSTACK_SERVER__MAX_RANGE": "777"})
    yield srv
    srv.stop()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return dict(target)
    return node


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)


def test_every_route_is_in_the_document_with_its_parameters_named() -> None:
    assert len(DOCUMENT["paths"]) == len(ROUTES)
    for pattern, handler, route in ROUTES:
        path = openapi.openapi_path(pattern, [p.name for p in handler.endpoint.path])  # type: ignore[attr-defined]
        item = DOCUMENT["paths"][path]
        assert sorted(item) == sorted(openapi.implemented_methods(handler)), route
        for method, op in item.items():
            assert op["operationId"] == f"{route}_{method}"
            in_path = {p["name"] for p in map(lambda p: resolve(DOCUMENT, p), op["parameters"]) if p["in"] == "path"}
            assert in_path == set(re.findall(r"\{(\w+)\}", path)), (route, method)
    assert "/mysql/items/{id}" in DOCUMENT["paths"]
    assert "/redis/counters/{key}/incr" in DOCUMENT["paths"]
    assert "/openapi.json" in DOCUMENT["paths"]


def test_every_error_response_is_json_with_error_and_request_id() -> None:
    """Except /ws: its answers to a plain HTTP request are the WebSocket handshake's own plain text."""
    checked = 0
    for path, _, op in operations(DOCUMENT):
        for status, ref in op["responses"].items():
            response = resolve(DOCUMENT, ref)
            if int(status) < 400 or path == "/ws":
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema["type"] == "object"
            assert {"error", "request_id"} <= set(schema["required"]), (path, status)
            assert schema["properties"]["error"]["type"] == schema["properties"]["request_id"]["type"] == "string"
            assert "X-Request-ID" in response["headers"]
            checked += 1
    assert checked > 50


def test_every_operation_of_the_base_handler_answers_400_and_500_and_backend_failures() -> None:
    for path, method, op in operations(DOCUMENT):
        if path == "/ws":
            continue
        assert {"400", "500"} <= set(op["responses"]), (path, method)
        if "Calls:" in op.get("description", ""):
            assert {"502", "503", "504"} <= set(op["responses"]), (path, method)
    busy = DOCUMENT["components"]["responses"]["Unavailable"]
    assert busy["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}


def test_the_bounds_are_the_settings() -> None:
    small = openapi.document(ROUTES, load_settings(server={"max_sleep_s": 0.5, "max_range": 10}))
    [sleep_s] = [p for p in small["paths"]["/mysql/sleep"]["get"]["parameters"] if p.get("name") == "s"]
    assert sleep_s["schema"] == {"type": "number", "minimum": 0, "maximum": 0.5}
    [n] = [p for p in small["paths"]["/ignite/range"]["get"]["parameters"] if p.get("name") == "n"]
    assert n["schema"] == {"type": "integer", "minimum": 1, "maximum": 10}


def test_the_server_serves_the_document_and_a_page(docs_server: ServerProcess) -> None:
    status, headers, served = call(docs_server.url + "/openapi.json")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert headers["X-Request-ID"]
    expected = openapi.document(ROUTES, load_settings(server={"max_sleep_s": 1.5, "max_range": 777}))
    assert served == json.loads(json.dumps(expected))      # the server's own settings' bounds
    with urllib.request.urlopen(docs_server.url + "/docs", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        page = response.read().decode()
    assert page.startswith("<!doctype html>")
    assert "http" not in page.replace('href="/openapi.json"', "")    # nothing fetched from elsewhere
    for path, method, op in operations(DOCUMENT):
        assert f'id="{op["operationId"]}"' in page
        assert f"<code>{path}</code>" in page, (method, path)
        assert html.escape(op["summary"]) in page


def test_an_undeclared_method_is_405_with_allow_from_the_declaration(docs_server: ServerProcess) -> None:
    status, headers, body = call(docs_server.url + "/redis/kv/k", "DELETE")
    assert status == 405
    assert headers["Allow"] == "GET, PUT"
    assert body["request_id"] == headers["X-Request-ID"]


def test_a_plain_get_of_ws_answers_as_the_document_says(docs_server: ServerProcess) -> None:
    status, headers, body = call(docs_server.url + "/ws")
    assert status == 400
    assert "400" in DOCUMENT["paths"]["/ws"]["get"]["responses"]
    assert headers["Content-Type"].startswith("text/plain") or headers["Content-Type"].startswith("text/html")
    assert "Upgrade" in body


# -- a declaration that does not match its handler stops the document (and the app) from being made ------


class _Undeclared(BaseHandler):
    endpoint = api.Endpoint(operations=(api.Operation("get", "x", responses={}),))

    def get(self) -> None:
        pass

    def post(self) -> None:
        pass


class _Declared(BaseHandler):
    endpoint = api.Endpoint(operations=(api.Operation("get", "x", responses={}),))

    def get(self) -> None:
        pass


class _NoEndpoint(tornado.web.RequestHandler):
    def get(self) -> None:
        pass


@pytest.mark.parametrize(("route", "message"), [
    ((r"/x", _Undeclared, "x"), "implements ['get', 'post'] but declares ['get']"),
    ((r"/x/([^/]+)", _Declared, "x"), "1 groups, but 0 path parameters declared"),
    ((r"/x", _NoEndpoint, "x"), "declares no endpoint"),
])
def test_a_declaration_that_drifted_is_refused(route: tuple[str, type[tornado.web.RequestHandler], str],
                                               message: str) -> None:
    with pytest.raises(openapi.DocumentError, match=re.escape(message)):
        openapi.document([route], SETTINGS)


# -- what the document accepts is what the code accepts ----------------------------------------------------


def _schema_accepts(schema: dict[str, Any], value: Any) -> bool:
    root = {**schema, "components": DOCUMENT["components"]}
    return jsonschema.Draft202012Validator(root).is_valid(value)


def _code_accepts(param: api.Param[Any], raw: str, settings: Settings) -> bool:
    try:
        param.parse(raw, settings)
    except tornado.web.HTTPError as exc:
        assert exc.status_code == 400
        return False
    return True


def _as_json_value(raw: str, kind: str) -> Any:
    """A path or query string as the JSON value its schema sees: a number when it is written as one."""
    if kind == "integer" and re.fullmatch(r"[+-]?[0-9]+", raw):
        return int(raw)
    if kind == "number" and re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", raw):
        return float(raw)
    return raw


@pytest.mark.parametrize("param", [api.ITEM_ID, api.KEY, mysql.SLEEP_S, ignite.RANGE_N, redis.BLPOP_S,
                                   mongo.DOC_ID], ids=lambda p: p.name)
@pytest.mark.parametrize("raw", [
    "7", "-7", "0", "+7", "-0", "2147483647", "2147483648", "-2147483649", "1_0", " 7", "7 ", "\u0667",
    ".5", "5.", "1.5", "0.01", "5", "5.0", "1e3", "1e400", "nan", "inf", "abc", "",
    "items:7", "a" * 200, "a" * 201, "bad key",
])
def test_a_parameter_is_accepted_exactly_when_its_schema_says(param: api.Param[Any], raw: str) -> None:
    schema = param.kind.schema(SETTINGS)
    value = _as_json_value(raw, schema["type"])
    assert _code_accepts(param, raw, SETTINGS) == _schema_accepts(schema, value), (param.name, raw)


def test_a_missing_query_argument_is_400_saying_what_it_should_be() -> None:
    with pytest.raises(tornado.web.HTTPError, match="missing query argument s"):
        mysql.SLEEP_S.parse(None, SETTINGS)
    try:
        mysql.SLEEP_S.parse(None, SETTINGS)
    except tornado.web.HTTPError as exc:
        assert exc.log_message is not None
        assert exc.log_message % exc.args == "missing query argument s (a number from 0 to 5)"


# Not the float -2.0**63: the JSON parser makes it of -9223372036854775809 too, so the code refuses it
# (the one value where code and schema differ: test_the_float_at_minus_2_to_the_63_is_refused).
_NUMBERS = st.integers(-(2**64), 2**64) | st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda v: v != -(2.0**63)) | st.sampled_from([2.0**63, 1e300, 9223372036854775807, -9223372036854775808])
_JSON = st.recursive(
    st.none() | st.booleans() | _NUMBERS | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=4) | st.sampled_from(["$a", "a.b", "a\\b", 'a"', "", "id", "_id", "x"]), inner, max_size=3),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=4) | st.sampled_from(["$x", "a.b", "q\"", "id", "_id"]), _JSON, max_size=4))
def test_a_mongo_document_is_refused_exactly_when_its_schema_says(doc: dict[str, Any]) -> None:
    code = mongo.document_problem(doc) is None and not any(name in doc for name in mongo.SERVER_FIELDS)
    assert code == _schema_accepts(mongo.NEW_DOC.schema, doc), doc


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_an_ignite_cache_value_is_refused_exactly_when_its_schema_says(value: Any) -> None:
    code = isinstance(value, str | int | float) and (isinstance(value, str | bool) or api.fits_64(value))
    assert code == _schema_accepts(ignite.CACHE_VALUE, value), value


def test_the_float_at_minus_2_to_the_63_is_refused() -> None:
    """orjson reads -9223372036854775809 (below 64 bits) as the float -2**63; refusing that float refuses it."""
    import orjson
    assert orjson.loads(b"-9223372036854775809") == -(2.0**63)
    assert not api.fits_64(orjson.loads(b"-9223372036854775809"))
    assert api.fits_64(orjson.loads(b"-9223372036854775808"))
