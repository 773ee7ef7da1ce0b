"""``GET /openapi.json`` and ``GET /docs``: the API document and its page, made once when the app is (no I/O)."""

from __future__ import annotations

from app import api
from app.handlers.base import BaseHandler
from app.openapi import Published

DOCUMENT_SETTING = "api_document"   # the key of the published document in the Application's settings


class _Published(BaseHandler):
    def published(self) -> Published:
        document = self.application.settings[DOCUMENT_SETTING]
        assert isinstance(document, Published)
        return document


class OpenApiHandler(_Published):
    endpoint = api.Endpoint(operations=(
        api.Operation("get", "This document (OpenAPI 3.1)", responses={
            200: api.json("The OpenAPI document of this server, with its settings' bounds.",
                          api.obj({"openapi": {"type": "string"}, "info": {"type": "object"},
                                   "paths": {"type": "object"}})),
        }),
    ))

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(self.published().json)


class DocsPageHandler(_Published):
    endpoint = api.Endpoint(operations=(
        api.Operation("get", "This document as a page for people", responses={
            200: api.Response("Every operation with its parameters, body and responses.", {"type": "string"},
                              media_type="text/html"),
        }),
    ))

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.published().html)
