"""The OpenAPI 3.1 document of the service, made from the route table and each handler's declaration.

``publish(routes, settings)`` runs once, when the application is made (no I/O): it turns every
route's ``endpoint`` (``app.api``) into a path item, adds what ``BaseHandler`` does for every
operation (the ``X-Request-ID`` and ``X-Request-Timeout`` headers, 400 and 500, and 502, 503 and
504 for an operation that calls a backend) and renders the document twice: as JSON for
``GET /openapi.json`` and as a plain HTML page for ``GET /docs``.

The document cannot say what the code does not do: a handler whose implemented methods differ
from its declared operations, or whose route has a different number of groups than it declares
path parameters, stops the application from being made (``DocumentError``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import orjson
import tornado.web

from app import api
from app.handlers.base import BaseHandler
from app.settings import Settings

Routes = Sequence[tuple[str, type[tornado.web.RequestHandler], str]]
METHODS = ("get", "post", "put", "patch", "delete")
_GROUP = re.compile(r"\((?!\?)[^()]*\)")

DESCRIPTION = """\
A Tornado service on uvloop with asynchronous MySQL, MongoDB, Redis and Apache Ignite clients.

Every response carries an `X-Request-ID` header (the client's own, when it sends a valid one);
every error is JSON with `error` and `request_id`, plus `backend` and `detail` when a backend
failed. Every request has a time budget that each backend call made for it inherits; a client
may ask for less with `X-Request-Timeout: <seconds>`.

This document is generated from the handlers' own declarations (`app/api.py`, `app/openapi.py`);
the bounds it states are this server's settings.
"""

# Shared pieces, referred to by name from the operations.
REQUEST_ID_HEADER: dict[str, Any] = {
    "description": "The request's id: the client's X-Request-ID when it is 1-128 of A-Z a-z 0-9 . _ : -, "
                   "else one made by the server.",
    "required": True,
    "schema": {"type": "string", "pattern": f"^{api.REQUEST_ID_PATTERN.pattern}$"},
}
REQUEST_ID_PARAM: dict[str, Any] = {
    "name": "X-Request-ID", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "An id for this request, echoed in the response and the logs when it is 1-128 of "
                   "A-Z a-z 0-9 . _ : - (otherwise the server makes one).",
}
REQUEST_TIMEOUT_PARAM: dict[str, Any] = {
    "name": "X-Request-Timeout", "in": "header", "required": False,
    "schema": {"type": "number", "exclusiveMinimum": 0},
    "description": "Seconds this request may take, if less than the server's own budget "
                   "(server.request_timeout_s); every backend call made for it gets at most what is left.",
}
SHARED_RESPONSES: Mapping[str, api.Response] = {
    "BadRequest": api.BAD_REQUEST, "InternalError": api.INTERNAL, "BackendError": api.BACKEND_ERROR,
    "Unavailable": api.UNAVAILABLE, "Timeout": api.TIMEOUT,
}
BEARER = "publishToken"


class DocumentError(ValueError):
    """A declaration that does not match its handler or route."""


@dataclass(frozen=True)
class Published:
    """The document, ready to send: as a dict, as JSON and as the HTML page."""

    document: dict[str, Any]
    json: bytes
    html: bytes


def publish(routes: Routes, settings: Settings) -> Published:
    doc = document(routes, settings)
    return Published(doc, orjson.dumps(doc), render_html(doc).encode())


def openapi_path(pattern: str, names: Sequence[str]) -> str:
    """``/mysql/items/([^/]+)`` with names ``("id",)`` -> ``/mysql/items/{id}``."""
    groups = _GROUP.findall(pattern)
    if len(groups) != len(names):
        raise DocumentError(f"{pattern}: {len(groups)} groups, but {len(names)} path parameters declared")
    it = iter(names)
    path = _GROUP.sub(lambda _: "{" + next(it) + "}", pattern)
    return re.sub(r"\\(.)", r"\1", path.removesuffix("$"))


def implemented_methods(handler: type[tornado.web.RequestHandler]) -> set[str]:
    """The methods a handler class defines itself (Tornado answers the others with 405)."""
    return {m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}


def endpoint_of(handler: type[tornado.web.RequestHandler]) -> api.Endpoint:
    endpoint = getattr(handler, "endpoint", None)
    if not isinstance(endpoint, api.Endpoint):
        raise DocumentError(f"{handler.__qualname__} declares no endpoint (an app.api.Endpoint)")
    declared = [op.method for op in endpoint.operations]
    if sorted(declared) != sorted(implemented_methods(handler)) or len(set(declared)) != len(declared):
        raise DocumentError(f"{handler.__qualname__} implements {sorted(implemented_methods(handler))} "
                            f"but declares {declared}")
    return endpoint


def document(routes: Routes, settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of these routes, with the bounds these settings give."""
    paths: dict[str, Any] = {}
    tags: dict[str, None] = {}
    schemas: dict[str, api.Schema] = {}
    for pattern, handler, route in routes:
        endpoint = endpoint_of(handler)
        for name, schema in endpoint.schemas.items():
            if schemas.setdefault(name, schema) != schema:
                raise DocumentError(f"{handler.__qualname__}: another schema is already named {name}")
        path = openapi_path(pattern, [p.name for p in endpoint.path])
        tag = handler.__module__.rsplit(".", 1)[-1]
        tags[tag] = None
        conventions = issubclass(handler, BaseHandler)
        paths[path] = {op.method: _operation(op, endpoint, route, tag, conventions, settings)
                       for op in endpoint.operations}
    return {
        "openapi": "3.1.0",
        "info": {"title": "asyncstack", "version": _version(), "description": DESCRIPTION},
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "headers": {"X-Request-ID": REQUEST_ID_HEADER},
            "parameters": {"X-Request-ID": REQUEST_ID_PARAM, "X-Request-Timeout": REQUEST_TIMEOUT_PARAM},
            "responses": {name: _response(r, conventions=True) for name, r in SHARED_RESPONSES.items()},
            "securitySchemes": {BEARER: {"type": "http", "scheme": "bearer",
                                         "description": "The publish token (ws.publish_token)."}},
        },
    }


def _version() -> str:
    try:
        return metadata.version("asyncstack")
    except metadata.PackageNotFoundError:
        return "0"


def _param(param: api.Param[Any], settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.name, "in": param.where, "required": param.required,
                           "description": param.description, "schema": param.kind.schema(settings)}
    if param.example is not None:
        out["example"] = param.example
    return out


def _response(response: api.Response, *, conventions: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"description": response.description}
    headers: dict[str, Any] = {}
    if conventions:
        headers["X-Request-ID"] = {"$ref": "#/components/headers/X-Request-ID"}
    for header in response.headers:
        headers[header.name] = {"description": header.description, "required": header.required,
                                "schema": header.schema}
    if headers:
        out["headers"] = headers
    if response.schema is not None:
        out["content"] = {response.media_type: {"schema": response.schema}}
    return out


def _operation(op: api.Operation, endpoint: api.Endpoint, route: str, tag: str, conventions: bool,
               settings: Settings) -> dict[str, Any]:
    params: list[dict[str, Any]] = [_param(p, settings) for p in (*endpoint.path, *op.params)]
    responses: dict[int, api.Response] = dict(op.responses)
    if conventions:
        params += [{"$ref": "#/components/parameters/X-Request-ID"},
                   {"$ref": "#/components/parameters/X-Request-Timeout"}]
        responses.setdefault(400, api.BAD_REQUEST)
        responses.setdefault(500, api.INTERNAL)
        if op.backends:
            for status, response in api.BACKEND_RESPONSES.items():
                responses.setdefault(status, response)
    shared = {id(r): name for name, r in SHARED_RESPONSES.items()}
    out: dict[str, Any] = {
        "operationId": f"{route}_{op.method}",
        "summary": op.summary,
        "tags": [tag],
        "parameters": params,
        "responses": {str(status): {"$ref": f"#/components/responses/{shared[id(r)]}"} if id(r) in shared
                      else _response(r, conventions=conventions) for status, r in sorted(responses.items())},
    }
    description = op.description
    if op.backends:
        description = f"{description}\n\nCalls: {', '.join(op.backends)}.".strip()
    if description:
        out["description"] = description
    if op.body is not None:
        out["requestBody"] = {"required": True, "description": op.body.description,
                              "content": {op.body.media_type: {"schema": op.body.schema}}}
    if op.bearer:
        out["security"] = [{BEARER: []}]
    return out


# -- the HTML page -------------------------------------------------------------------------------

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222 }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc }
section.op { border: 1px solid #ddd; border-radius: 6px; margin: 1em 0; padding: .2em 1em .6em }
.method { display: inline-block; min-width: 4.5em; font-weight: bold; text-transform: uppercase }
.get { color: #06c } .post { color: #080 } .put { color: #a60 } .delete { color: #c00 }
code, pre { font: 13px/1.35 ui-monospace, monospace; background: #f5f5f5 }
pre { padding: .5em; overflow-x: auto; white-space: pre-wrap }
table { border-collapse: collapse; margin: .4em 0 } td, th { border: 1px solid #ddd; padding: .2em .5em;
  text-align: left; vertical-align: top }
"""


def _resolve(doc: Mapping[str, Any], node: Any) -> Any:
    """``{"$ref": "#/components/..."}`` -> the object it names (one level)."""
    if isinstance(node, Mapping) and "$ref" in node:
        target: Any = doc
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        return target
    return node


def _code(value: Any) -> str:
    return html.escape(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _rows(cells: Iterable[Sequence[str]]) -> str:
    return "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells)


def render_html(doc: Mapping[str, Any]) -> str:
    """The document as one page: every operation with its parameters, body and responses."""
    esc = html.escape
    info = doc["info"]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(info['title'])} API</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>{esc(info['title'])} {esc(info['version'])}</h1>",
             f"<p>{esc(info['description']).replace(chr(10) + chr(10), '</p><p>')}</p>",
             '<p>The machine-readable document: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>',
             "<ul>"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            parts.append(f'<li><a href="#{esc(op["operationId"])}"><span class="method {method}">{method}</span> '
                         f"<code>{esc(path)}</code></a> {esc(op['summary'])}</li>")
    parts.append("</ul>")
    for tag in doc["tags"]:
        parts.append(f"<h2>{esc(tag['name'])}</h2>")
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if tag["name"] in op["tags"]:
                    parts.append(_operation_html(doc, path, method, op))
    components = doc["components"]
    parts.append("<h2>Shared responses</h2>")
    for name, response in components["responses"].items():
        parts.append(f'<section class=op id="response-{esc(name)}"><h3>{esc(name)}</h3>'
                     f"<p>{esc(response['description'])}</p>{_content_html(response)}</section>")
    if components["schemas"]:
        parts.append("<h2>Schemas</h2>")
        for name, schema in components["schemas"].items():
            parts.append(f'<section class=op id="schema-{esc(name)}"><h3>{esc(name)}</h3>'
                         f"<pre>{_code(schema)}</pre></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _content_html(response: Mapping[str, Any]) -> str:
    esc = html.escape
    return "".join(f"<code>{esc(media)}</code><pre>{_code(c['schema'])}</pre>"
                   for media, c in response.get("content", {}).items())


def _operation_html(doc: Mapping[str, Any], path: str, method: str, op: Mapping[str, Any]) -> str:
    esc = html.escape
    out = [f'<section class=op id="{esc(op["operationId"])}">',
           f'<h3><span class="method {method}">{method}</span> <code>{esc(path)}</code></h3>',
           f"<p><b>{esc(op['summary'])}</b></p>"]
    if "description" in op:
        out.append(f"<p>{esc(op['description'])}</p>")
    if "security" in op:
        out.append("<p>Needs <code>Authorization: Bearer &lt;token&gt;</code>.</p>")
    params = [_resolve(doc, p) for p in op.get("parameters", [])]
    if params:
        out.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th><th></th></tr>")
        out.append(_rows((f"<code>{esc(p['name'])}</code>", esc(p["in"]), "yes" if p.get("required") else "no",
                          f"<code>{esc(orjson.dumps(p['schema']).decode())}</code>", esc(p.get("description", "")))
                         for p in params))
        out.append("</table>")
    body = op.get("requestBody")
    if body:
        for media, content in body["content"].items():
            out.append(f"<p>Request body (<code>{esc(media)}</code>): {esc(body.get('description', ''))}</p>"
                       f"<pre>{_code(content['schema'])}</pre>")
    out.append("<table><tr><th>status</th><th>means</th><th>body</th></tr>")
    rows = []
    for status, ref in op["responses"].items():
        response = _resolve(doc, ref)
        if "$ref" in ref:   # a shared one: shown once, at the end
            name = esc(str(ref["$ref"]).rsplit("/", 1)[1])
            shown = f'see <a href="#response-{name}">{name}</a>'
        else:
            shown = _content_html(response)
        headers = [h for h in response.get("headers", {}) if h != "X-Request-ID"]
        means = esc(response["description"]) + "".join(f"<br>header <code>{esc(h)}</code>" for h in headers)
        rows.append((esc(status), means, shown))
    out.append(_rows(rows))
    out.append("</table></section>")
    return "\n".join(out)
