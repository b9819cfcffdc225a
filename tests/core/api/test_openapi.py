"""The OpenAPI document: valid OpenAPI 3.1, every registered route in it, and the same types as the code."""

from __future__ import annotations

import re

import jsonschema
from schemathesis.specs.openapi.definitions import OPENAPI_31

from aetherlens.api.openapi import SPECS_KEY

from .conftest import MakeApi


def _openapi_path(path: str) -> str:
    return re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]*\}", r"{\1}", path)


async def test_document_is_valid_openapi_31_and_complete(make_api: MakeApi) -> None:
    api = await make_api()
    resp = await api.client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    jsonschema.Draft202012Validator(OPENAPI_31).validate(doc)
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name

    specs = api.app[SPECS_KEY]
    assert len(specs) >= 20
    for spec in specs:
        op = doc["paths"][_openapi_path(spec.path)][spec.method.lower()]
        assert op["summary"]
        assert op["operationId"] == spec.operation_id
        if spec.scope is None:
            assert op["security"] == []
        else:
            assert op["security"] == [{"bearer": []}]
            assert {"401", "403"} <= set(op["responses"])
            assert op["x-scope"] == spec.scope
    # Every documented operation is a registered route (nothing stale in the document).
    documented = {(p, m.upper()) for p, item in doc["paths"].items() for m in item}
    assert documented == {(_openapi_path(s.path), s.method) for s in specs}
    ids = [s.operation_id for s in specs]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


async def test_document_matches_contract_shapes(make_api: MakeApi) -> None:
    api = await make_api()
    doc = await (await api.client.get("/api/v1/openapi.json")).json()
    schemas = doc["components"]["schemas"]

    def resolve(schema: dict) -> dict:  # type: ignore[type-arg]
        return schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema

    login = doc["paths"]["/api/v1/auth/login"]["post"]
    body = resolve(login["requestBody"]["content"]["application/json"]["schema"])
    assert set(body["required"]) == {"username", "password"}
    assert body["additionalProperties"] is False  # unknown fields are rejected, and documented so
    tokens = resolve(login["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(tokens["properties"]) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert "429" in login["responses"]
    info = resolve(
        doc["paths"]["/api/v1/info"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    )
    assert {"instance_id", "version", "api_version", "currency", "timezone", "capabilities"} <= set(
        info["properties"]
    )
    keys = resolve(
        doc["paths"]["/api/v1/auth/api-keys"]["post"]["responses"]["201"]["content"]["application/json"][
            "schema"
        ]
    )
    assert set(keys["required"]) >= {"id", "name", "scopes", "key"}
    error = schemas["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    assert doc["paths"]["/api/v1/auth/logout"]["post"]["requestBody"]["required"] is False
    assert "204" in doc["paths"]["/api/v1/users/{name}"]["delete"]["responses"]
    # Ingest parses its own body (bad metrics are rejected one by one) but documents the contract's shape.
    ingest = doc["paths"]["/api/v1/metrics"]["post"]
    envelope = resolve(ingest["requestBody"]["content"]["application/json"]["schema"])
    assert envelope["properties"]["metrics"]["maxItems"] == 100_000
    metric = resolve(envelope["properties"]["metrics"]["items"])
    assert set(metric["required"]) == {"time", "device_id", "metric_type", "value"}
    assert {"unit", "tags"} <= set(metric["properties"])
    assert {"400", "413", "503"} <= set(ingest["responses"])


async def test_docs_page_is_self_contained(make_api: MakeApi) -> None:
    api = await make_api()
    html = await (await api.client.get("/api/v1/docs")).text()
    assert "http://" not in html and "https://" not in html  # no CDN
    script = await (await api.client.get("/api/v1/docs/docs.js")).text()
    assert "/api/v1/openapi.json" in script and "innerHTML" not in script
