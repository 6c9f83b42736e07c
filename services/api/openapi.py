"""The OpenAPI 3.1 document, generated from the route table and the typed Structs
(msgspec.json.schema_components), never kept by hand."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from services.api import schemas as s
from services.api.inputs import ID
from services.api.routes import Route

_PARAM = re.compile(r"{([a-z_]+)}")
_REF = "#/components/schemas/{name}"
DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    202: "Accepted: durable, sent shortly",
    204: "Done",
    400: "Malformed JSON",
    401: "No or unknown credentials (unauthorized)",
    403: "A token or role that may not do this (forbidden)",
    404: "Not found (also another business's)",
    409: "A state conflict",
    413: "The body is too large",
    415: "A body of a type this route does not take",
    422: "Invalid (validation_failed, with the fields)",
    429: "Rate or quota (rate_limited, quota_exceeded), with Retry-After",
    503: "The broker or database is unreachable",
}


def _ref(type_: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=type_.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(route: Route) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": f"^{ID.pattern}$"},
        }
        for name in _PARAM.findall(route.path)
    ]
    parameters += [
        {"name": q.name, "in": "query", "required": False, "description": q.description,
         "schema": q.schema}
        for q in route.query
    ]  # fmt: skip
    if route.idempotent:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same key with the same body answers the first answer again",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    success: dict[str, Any] = {"description": DESCRIPTIONS[route.status]}
    if route.answer is not None:
        success["content"] = _json(_ref(route.answer))
    if route.binary:
        success["content"] = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    codes = {401, 403, 429, 503, *route.errors}
    if route.request is not None or route.body is not None:
        codes |= {400, 413, 422}
    responses = {str(route.status): success}
    for code in sorted(codes):
        responses[str(code)] = {"description": DESCRIPTIONS[code], "content": _json(_ref(s.Error))}
    operation: dict[str, Any] = {
        "operationId": route.handler.__module__.rsplit(".", 1)[-1] + "." + route.handler.__name__,
        "summary": route.summary,
        "security": [{"platform_token" if route.auth == "platform" else "api_key": []}],
        "parameters": parameters,
        "responses": responses,
    }
    if route.auth == "key" and route.roles != ("admin", "agent", "viewer"):
        operation["description"] = f"Roles: {', '.join(route.roles)}."
    if route.request is not None:
        operation["requestBody"] = {"required": True, "content": _json(_ref(route.request))}
    elif route.body is not None:
        operation["requestBody"] = {"required": True, "content": route.body}
    return operation


def document(routes: tuple[Route, ...]) -> dict[str, Any]:
    types: list[Any] = [s.Error]
    for route in routes:
        types += [t for t in (route.request, route.answer) if t is not None]
    _, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    paths["/v1/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OK", "content": _json({"type": "object"})}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "WhatsApp business platform API",
            "version": "1",
            "description": "The public API, version 1 (docs/api.md).",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "platform_token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "ADMIN_TOKEN",
                },
                "api_key": {"type": "http", "scheme": "bearer", "description": "wak_..."},
            },
        },
    }
