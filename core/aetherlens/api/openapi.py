"""The OpenAPI 3.1 document, generated from the same route specs and pydantic types that validate
requests and shape responses, so the document cannot drift from the code."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from aetherlens.api.routing import RouteSpec

# Set by create_app; here (not in app.py) so the route serving the document needs nothing of app.py.
SPECS_KEY = web.AppKey("aetherlens_specs", list[RouteSpec])
OPENAPI_KEY = web.AppKey("aetherlens_openapi", dict[str, Any])

_REF = "#/components/schemas/{model}"
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
_STATUS_TEXT = {
    400: "Invalid request (the message names the field)",
    401: "Missing or invalid credentials",
    403: "The credentials lack the route's scope",
    404: "Not found",
    409: "Conflict",
    413: "Request body larger than api.max_body_bytes",
    422: "Well-formed but unworkable (details.field names the field)",
    429: "Rate limited; see Retry-After",
    503: "Temporarily unavailable; see Retry-After",
}


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def build_document(specs: Iterable[RouteSpec], *, version: str) -> dict[str, Any]:
    specs = list(specs)
    # Collect every type once, in the mode it is used in (validation for input, serialization for output).
    inputs: list[tuple[tuple[int, str], JsonSchemaMode, TypeAdapter[Any]]] = []
    for i, spec in enumerate(specs):
        if spec.query is not None:
            inputs.append(((i, "query"), "validation", TypeAdapter(spec.query)))
        body_adapter = spec.body_adapter or spec.body_doc_adapter
        if body_adapter is not None:
            inputs.append(((i, "body"), "validation", body_adapter))
        if spec.response_adapter is not None:
            inputs.append(((i, "response"), "serialization", spec.response_adapter))
    schemas, defs = TypeAdapter.json_schemas(inputs, ref_template=_REF) if inputs else ({}, {})
    components: dict[str, Any] = dict(defs.get("$defs", {}))
    components["Error"] = _ERROR_SCHEMA

    paths: dict[str, dict[str, Any]] = {}
    for i, spec in enumerate(specs):
        op: dict[str, Any] = {
            "operationId": spec.operation_id,
            "summary": spec.summary,
            "tags": list(spec.tags),
        }
        if spec.description:
            op["description"] = spec.description
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _path_schema(spec, name)}
            for name in spec.path_params
        ]
        if spec.query is not None:
            params.extend(_query_parameters(spec.query, schemas[((i, "query"), "validation")], components))
        if params:
            op["parameters"] = params
        if spec.body_adapter is not None or spec.body_doc_adapter is not None:
            op["requestBody"] = {
                "required": spec.body_required,
                "content": {"application/json": {"schema": schemas[((i, "body"), "validation")]}},
            }
        responses: dict[str, Any] = {}
        if spec.status == 204:
            responses["204"] = {"description": "Done"}
        elif spec.response_adapter is not None:
            responses[str(spec.status)] = {
                "description": spec.summary,
                "content": {spec.content_type: {"schema": schemas[((i, "response"), "serialization")]}},
            }
        else:
            responses[str(spec.status)] = {
                "description": spec.summary,
                "content": {spec.content_type: {"schema": {"type": "string"}}},
            }
        statuses = set(spec.errors)
        has_body = spec.body_adapter is not None or spec.body_doc_adapter is not None
        if spec.query is not None or has_body or spec.path_params:
            statuses.add(400)
        if has_body:
            statuses.add(413)
        if spec.scope is not None:
            statuses |= {401, 403, 429}
            op["security"] = [{"bearer": []}]
        elif spec.rate_limit == "ip":
            statuses.add(429)
        if spec.scope is None:
            op["security"] = []
        for status in sorted(statuses):
            responses[str(status)] = _error_response(status)
        op["responses"] = responses
        if spec.scope is not None:
            op["x-scope"] = spec.scope
        paths.setdefault(_openapi_path(spec.path), {})[spec.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AetherLens API",
            "version": version,
            "description": (
                "Energy, cost and cloud-spend monitoring. Authenticate with `Authorization: Bearer <JWT or "
                'API key>`. Every error is `{"error": {"code", "message", "details"}}`. The WebSocket '
                "stream lives at `/api/v1/stream` (see docs/API.md)."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A JWT access token from /api/v1/auth/login, or an API key (al_...).",
                }
            },
        },
    }


def _path_schema(spec: RouteSpec, name: str) -> dict[str, Any]:
    regex = spec.path_patterns.get(name)
    if regex is None:
        # aiohttp's default segment: anything but a slash.
        return {"type": "string", "minLength": 1, "pattern": "^[^/]+$"}
    return {"type": "string", "pattern": f"^(?:{regex})$"}


def _openapi_path(path: str) -> str:
    # aiohttp allows `{name:regex}`; OpenAPI wants `{name}`.
    import re

    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]*\}", r"{\1}", path)


def _query_parameters(
    model: type[BaseModel], schema: dict[str, Any], components: dict[str, Any]
) -> list[dict[str, Any]]:
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if prop.get("description"):
            param["description"] = prop["description"]
        if prop.get("type") == "array" or any(p.get("type") == "array" for p in prop.get("anyOf", [])):
            param["style"] = "form"
            param["explode"] = True
        params.append(param)
    return params
