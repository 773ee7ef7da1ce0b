"""MongoDB endpoints: insert a JSON document, find it by id."""

from __future__ import annotations

import re
import uuid
from typing import Any

import tornado.web

from app import api
from app.handlers.base import BaseHandler
from drivers.errors import BackendError

COLLECTION = "docs"
SERVER_FIELDS = ("_id", "id")   # the id is the server's: a body naming it is refused
MAX_DEPTH = 100                  # MongoDB's limit of nested documents and arrays

# What every MongoDB-compatible server stores (FerretDB, which the local stack runs, is the strictest):
# field names that do not start with $ and hold no . or NUL, nor " or \ (FerretDB 1.24 fails with an
# internal error on those in a top-level name), no array directly inside an array, and integral numbers
# within 64 bits.  Checked here, so a document a server would refuse is a 400 that says why; the same
# rules are the schema below.
_NAME = r'([^$.\x00"\\][^.\x00"\\]*)?'
FIELD_NAME = re.compile(_NAME)
SCALAR: api.Schema = {"anyOf": [{"type": ["string", "boolean", "null"]}, api.NUMBER_64]}
SCHEMAS: dict[str, api.Schema] = {
    "MongoObject": {"type": "object", "propertyNames": {"pattern": f"^{_NAME}$"},
                    "additionalProperties": api.ref("MongoValue")},
    "MongoValue": {"anyOf": [SCALAR, {"type": "array", "items": api.ref("MongoElement")}, api.ref("MongoObject")]},
    "MongoElement": {"anyOf": [SCALAR, api.ref("MongoObject")]},
}
# Codes with which a server refuses a document for what is in it (BadValue, $-prefixed, empty or dotted
# field names, validation, too large): the request's fault whatever the rules above missed.
REFUSED_CODES = frozenset({2, 52, 56, 57, 121, 10334})

DOC_ID: api.Param[str] = api.Param("id", api.KEY_TEXT, "A document id, as POST /mongo/docs answered it.",
                                   example="0" * 32)
NEW_DOC = api.Body(
    {"allOf": [api.ref("MongoObject")], "propertyNames": {"not": {"enum": list(SERVER_FIELDS)}}},
    "A JSON object without `_id` or `id` (the server assigns the id). Field names must not start with $ "
    "or contain . \\ \" or NUL; an array must not hold arrays directly; integral numbers must fit 64 bits; "
    f"at most {MAX_DEPTH} levels deep.")


def document_problem(value: Any, where: str = "the document", depth: int = 0) -> str | None:
    """What keeps ``value`` (parsed JSON) from being stored, or None."""
    if depth > MAX_DEPTH:
        return f"{where} is nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, dict):
        for name, field in value.items():
            if not FIELD_NAME.fullmatch(name):
                return f"field name {name[:64]!r} in {where} starts with $ or holds . \\ \" or NUL"
            found = document_problem(field, f"field {name[:64]!r}", depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, list):
                return f"{where} holds an array inside an array"
            found = document_problem(item, where, depth + 1)
            if found:
                return found
    elif isinstance(value, int | float) and not isinstance(value, bool) and not api.fits_64(value):
        return f"{where} holds {value!r}: integral numbers must fit 64 bits"
    return None


class DocsHandler(BaseHandler):
    """``POST /mongo/docs`` with a JSON object: stored with a server-assigned id; 201 ``{"id": ...}``."""

    endpoint = api.Endpoint(schemas=SCHEMAS, operations=(
        api.Operation("post", "Store a JSON object in MongoDB under a new id", body=NEW_DOC, backends=("mongo",),
                      responses={
                          201: api.json("Stored.", api.obj({"id": {"type": "string"}}),
                                        api.Header("Location", {"type": "string"}, "/mongo/docs/{id}")),
                      }),
    ))

    async def post(self) -> None:
        doc = self.json_body()
        if any(name in doc for name in SERVER_FIELDS):
            raise tornado.web.HTTPError(400, "the id is assigned by the server; leave out _id and id")
        problem = document_problem(doc)
        if problem:
            raise tornado.web.HTTPError(400, "mongo: cannot store this document: %s", problem)
        doc_id = uuid.uuid4().hex
        try:
            with self.request_input():  # a number BSON cannot hold is the body's fault
                await self.ctx.mongo.collection(COLLECTION).insert_one({"_id": doc_id, **doc})
        except BackendError as exc:
            details = getattr(exc.__cause__, "details", None) or {}
            if getattr(exc.__cause__, "code", None) not in REFUSED_CODES:
                raise
            raise tornado.web.HTTPError(400, "mongo: cannot store this document: %s",
                                        details.get("errmsg", exc.message)) from exc
        self.set_header("Location", f"/mongo/docs/{doc_id}")
        self.write_json({"id": doc_id}, 201)


class DocHandler(BaseHandler):
    """``GET /mongo/docs/{id}``: the document (its ``_id`` as ``id``), or 404."""

    endpoint = api.Endpoint(path=(DOC_ID,), operations=(
        api.Operation("get", "One stored document", backends=("mongo",), responses={
            200: api.json("The document as it was posted, with its `id`.", api.obj({"id": {"type": "string"}})),
            404: api.not_found("No document with this id."),
        }),
    ))

    async def get(self, doc_id: str) -> None:
        self.key_arg(doc_id, DOC_ID)
        doc = await self.ctx.mongo.collection(COLLECTION).find_one({"_id": doc_id})
        if doc is None:
            self.write_json({"error": f"no document {doc_id}", "request_id": self.request_id}, 404)
            return
        doc["id"] = doc.pop("_id")
        self.write_json(doc)
