"""What each endpoint accepts and answers, declared beside its handler: the source of the OpenAPI document.

A handler class declares its endpoint as a class attribute::

    class ItemHandler(BaseHandler):
        endpoint = api.Endpoint(path=(api.ITEM_ID,), operations=(
            api.Operation("get", "One item from MySQL", backends=("mysql",),
                          responses={200: api.Response("the item", ITEM), 404: api.not_found("no such item")}),
        ))

``path`` names the route's groups in order (``/mysql/items/([^/]+)`` becomes ``/mysql/items/{id}``);
each ``Operation`` is one HTTP method with its query and header parameters, its request body
and its responses.  ``app.openapi`` turns the route table and these declarations into the
document.  The parameters are also what the handlers check input with (``Param.parse``, used
by the input helpers of ``app.handlers.base``), so the bounds and patterns the document states
are the ones the code applies.  Bounds that are settings (``server.max_sleep_s``, say) are
functions of the settings, read when the document is made and when a request is checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

import tornado.web

from app.settings import Settings

Schema = dict[str, Any]          # a JSON Schema (2020-12, the dialect of OpenAPI 3.1)
Bound = float | Callable[[Settings], float]
Method = Literal["get", "post", "put", "patch", "delete"]
Location = Literal["path", "query", "header"]

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")

_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
NUMBER_PATTERN = _NUMBER   # a JSON-style decimal number: float() alone would also take "1_0", " 7 ", "inf"


def resolve(bound: Bound, settings: Settings) -> float:
    return bound(settings) if callable(bound) else bound


def shown(value: float) -> str:
    """A bound as people write it: 5, 0.01, 2147483647 (not 2.14748e+09)."""
    return str(int(value)) if value == int(value) else f"{value:g}"


def bad_input(message: str) -> tornado.web.HTTPError:
    """A 400 whose body says ``message`` (rendered by ``BaseHandler.write_error``)."""
    return tornado.web.HTTPError(400, "%s", message)


class Kind(Protocol[T_co]):
    """What a parameter's value is: its schema in the document, and the check of a raw string."""

    def schema(self, settings: Settings) -> Schema: ...

    def parse(self, name: str, raw: str, settings: Settings) -> T_co: ...

    def wording(self, settings: Settings) -> str: ...


@dataclass(frozen=True)
class Integer:
    """A decimal integer (ASCII digits, an optional sign) from ``minimum`` to ``maximum``."""

    minimum: Bound
    maximum: Bound

    def bounds(self, settings: Settings) -> tuple[int, int]:
        return math.ceil(resolve(self.minimum, settings)), math.floor(resolve(self.maximum, settings))

    def schema(self, settings: Settings) -> Schema:
        low, high = self.bounds(settings)
        return {"type": "integer", "minimum": low, "maximum": high}

    def wording(self, settings: Settings) -> str:
        low, high = self.bounds(settings)
        return f"an integer from {low} to {high}"

    def parse(self, name: str, raw: str, settings: Settings) -> int:
        low, high = self.bounds(settings)
        number = None
        if _INTEGER.fullmatch(raw):
            try:
                number = int(raw, 10)
            except ValueError:   # more digits than int() converts
                number = None
        if number is None:
            raise bad_input(f"{name} must be an integer, not {raw[:64]!r}")
        if not low <= number <= high:
            raise bad_input(f"{name} must be from {low} to {high}, not {raw[:64]}")
        return number


@dataclass(frozen=True)
class Number:
    """A finite decimal number (``1``, ``0.5``, ``2e-3``) from ``minimum`` to ``maximum``."""

    minimum: Bound
    maximum: Bound

    def bounds(self, settings: Settings) -> tuple[float, float]:
        return resolve(self.minimum, settings), resolve(self.maximum, settings)

    def schema(self, settings: Settings) -> Schema:
        low, high = self.bounds(settings)
        return {"type": "number", "minimum": low, "maximum": high}

    def wording(self, settings: Settings) -> str:
        low, high = self.bounds(settings)
        return f"a number from {shown(low)} to {shown(high)}"

    def parse(self, name: str, raw: str, settings: Settings) -> float:
        low, high = self.bounds(settings)
        if not _NUMBER.fullmatch(raw):
            raise bad_input(f"{name} must be a number, not {raw[:64]!r}")
        value = float(raw)
        if not (math.isfinite(value) and low <= value <= high):
            raise bad_input(f"{name} must be from {shown(low)} to {shown(high)}, not {raw[:64]}")
        return value


@dataclass(frozen=True)
class Text:
    """A string matching ``pattern`` whole; ``rule`` says in words what that is, for the 400."""

    pattern: re.Pattern[str]
    rule: str
    min_length: int
    max_length: int

    def schema(self, settings: Settings) -> Schema:
        return {"type": "string", "pattern": f"^{self.pattern.pattern}$", "minLength": self.min_length,
                "maxLength": self.max_length}

    def wording(self, settings: Settings) -> str:
        return self.rule

    def parse(self, name: str, raw: str, settings: Settings) -> str:
        if not self.pattern.fullmatch(raw):
            raise bad_input(f"{self.rule}, not {raw[:64]!r}")
        return raw


@dataclass(frozen=True)
class Param(Generic[T]):
    """A path, query or header parameter."""

    name: str
    kind: Kind[T]
    description: str
    where: Location = "path"
    required: bool = True
    example: Any = None          # a value that exists (a seeded id): the document's example

    def parse(self, raw: str | None, settings: Settings) -> T:
        """The value, checked; a 400 saying what was wrong otherwise (``missing`` included)."""
        if raw is None:
            raise bad_input(f"missing {self.where} argument {self.name} ({self.kind.wording(settings)})")
        return self.kind.parse(self.name, raw, settings)


@dataclass(frozen=True)
class Header:
    """A response header."""

    name: str
    schema: Schema
    description: str
    required: bool = True


@dataclass(frozen=True)
class Response:
    """One status's answer: its body's schema (None: no body) and media type, and its headers."""

    description: str
    schema: Schema | None = None
    media_type: str = "application/json"
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True)
class Body:
    """A request body: JSON, described by ``schema``."""

    schema: Schema
    description: str
    media_type: str = "application/json"


@dataclass(frozen=True)
class Operation:
    """One method of an endpoint.

    ``backends``: the backends it calls (its failures are then 502, 503 or 504, added to the
    responses by the document); ``bearer``: it needs ``Authorization: Bearer <token>``.
    """

    method: Method
    summary: str
    responses: Mapping[int, Response]
    description: str = ""
    params: tuple[Param[Any], ...] = ()
    body: Body | None = None
    backends: tuple[str, ...] = ()
    bearer: bool = False


@dataclass(frozen=True)
class Endpoint:
    """A handler class's declaration: its path parameters in route-group order, and its operations."""

    operations: tuple[Operation, ...]
    path: tuple[Param[Any], ...] = ()
    schemas: Mapping[str, Schema] = field(default_factory=dict)   # named: "$ref": "#/components/schemas/<name>"


# -- shared declarations -------------------------------------------------------------------------

INT32 = Integer(-(2**31), 2**31 - 1)
ITEM_ID: Param[int] = Param("id", INT32, "An item id (the seed writes items 1 to 1000).", example=7)

KEY_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,200}")
KEY_RULE = "a key is 1-200 characters of A-Z a-z 0-9 . _ : -"
KEY_TEXT = Text(KEY_PATTERN, KEY_RULE, 1, 200)
KEY: Param[str] = Param("key", KEY_TEXT, "A key: 1 to 200 of A-Z a-z 0-9 . _ : -", example="items:7")

# A JSON number the backends can store: an integral value (1, 1.0, 1e3) must fit 64 bits, since JSON (and
# JSON Schema) cannot tell 1e300 from an integer; any other finite number is a double.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUMBER_64: Schema = {"anyOf": [{"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
                               {"type": "number", "not": {"type": "integer"}}]}
NUMBER_64_RULE = "a number whose integral values fit 64 bits"


def fits_64(value: float) -> bool:
    """Whether a parsed JSON number fits ``NUMBER_64`` (a float of 2**63 or more is what a larger integer became)."""
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    return not value.is_integer() or INT64_MIN < value < 2**63


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def error_schema(required: Mapping[str, Schema] | None = None, optional: Mapping[str, Schema] | None = None) -> Schema:
    """The one error shape: ``error`` and ``request_id`` always, plus what a kind of error adds."""
    required = dict(required or {})
    return {"type": "object", "required": ["error", "request_id", *required],
            "properties": {"error": {"type": "string", "description": "what was wrong"},
                           "request_id": {"type": "string", "description": "the X-Request-ID of the response"},
                           **required, **(optional or {})}}


def json(description: str, schema: Schema, *headers: Header) -> Response:
    return Response(description, schema, headers=headers)


def not_found(description: str) -> Response:
    return Response(description, error_schema())


def obj(required: Mapping[str, Schema], optional: Mapping[str, Schema] | None = None, *,
        closed: bool = False) -> Schema:
    """An object schema: these fields required, those optional; ``closed``: no others."""
    schema: Schema = {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}
    if closed:
        schema["additionalProperties"] = False
    return schema


NULLABLE_STRING: Schema = {"type": ["string", "null"]}
ITEM: Schema = obj({"id": {"type": "integer"}, "name": {"type": "string"}, "price_cents": {"type": "integer"}})
SCALAR: Schema = {"type": ["string", "number", "boolean"]}

# The error responses every BaseHandler operation may give, and those of one that calls a backend.
_BACKEND = {"backend": {"type": "string"}, "detail": {"type": "string"}}
BAD_REQUEST = Response("Bad input; the body says what was wrong.", error_schema())
INTERNAL = Response("A bug of this service (its traceback is logged, never sent).",
                    error_schema(optional={"backend": {"type": "string"}}))
BACKEND_ERROR = Response("The backend's own error, or a backend that broke its protocol.", error_schema(_BACKEND))
UNAVAILABLE = Response(
    "The backend cannot be reached (\"backend unavailable\"), or had no room for the call within the "
    "request's budget (\"backend busy\", with Retry-After).",
    error_schema(_BACKEND, {"retry_after_s": {"type": "integer", "minimum": 1}}),
    headers=(Header("Retry-After", {"type": "integer", "minimum": 1},
                    "Seconds to wait before trying again; sent when the backend is busy.", required=False),))
TIMEOUT = Response("A deadline passed: the call's own, or the request's budget (X-Request-Timeout).",
                   error_schema({**_BACKEND, "waited_ms": {"type": "integer", "minimum": 0}}))
BACKEND_RESPONSES: Mapping[int, Response] = {502: BACKEND_ERROR, 503: UNAVAILABLE, 504: TIMEOUT}
