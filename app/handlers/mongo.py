"""MongoDB endpoints: insert a JSON document, find it by id."""

from __future__ import annotations

import uuid

import tornado.web

from app.handlers.base import BaseHandler

COLLECTION = "docs"


class DocsHandler(BaseHandler):
    """``POST /mongo/docs`` with a JSON object: stored with a server-assigned id; 201 ``{"id": ...}``."""

    async def post(self) -> None:
        doc = self.json_body()
        if "_id" in doc or "id" in doc:
            raise tornado.web.HTTPError(400, "the id is assigned by the server; leave out _id and id")
        doc_id = uuid.uuid4().hex
        with self.request_input():  # a number BSON cannot hold is the body's fault
            await self.ctx.mongo.collection(COLLECTION).insert_one({"_id": doc_id, **doc})
        self.set_header("Location", f"/mongo/docs/{doc_id}")
        self.write_json({"id": doc_id}, 201)


class DocHandler(BaseHandler):
    """``GET /mongo/docs/{id}``: the document (its ``_id`` as ``id``), or 404."""

    async def get(self, doc_id: str) -> None:
        self.key_arg(doc_id)
        doc = await self.ctx.mongo.collection(COLLECTION).find_one({"_id": doc_id})
        if doc is None:
            self.write_json({"error": f"no document {doc_id}", "request_id": self.request_id}, 404)
            return
        doc["id"] = doc.pop("_id")
        self.write_json(doc)
