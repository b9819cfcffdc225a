"""The route framework: error envelope, validation, 404/405/413, request ids, security headers, CORS."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from aetherlens.api.routing import ApiModel, Call, RouteTable
from aetherlens.errors import BackpressureError, ConflictError

from .conftest import MakeApi

probe_routes = RouteTable()


class ProbeQuery(ApiModel):
    limit: int = Field(default=10, ge=1, le=100)
    tag: list[str] = Field(default_factory=list)


class ProbeBody(ApiModel):
    name: str
    count: int


class ProbeOut(ApiModel):
    limit: int
    tag: list[str]
    name: str | None = None
    count: int | None = None


@probe_routes.route(
    "GET", "/api/v1/_probe", scope="read", query=ProbeQuery, response=ProbeOut, summary="probe"
)
async def probe_get(call: Call[ProbeQuery, None]) -> ProbeOut:
    return ProbeOut(limit=call.query.limit, tag=call.query.tag)


@probe_routes.route(
    "POST", "/api/v1/_probe", scope="read", body=ProbeBody, response=ProbeOut, summary="probe"
)
async def probe_post(call: Call[None, ProbeBody]) -> dict[str, Any]:
    return {"limit": 0, "tag": [], "name": call.body.name, "count": call.body.count}


@probe_routes.route("GET", "/api/v1/_boom", scope="read", summary="raises")
async def probe_boom(call: Call[None, None]) -> None:
    raise RuntimeError("secret internals")


@probe_routes.route("POST", "/api/v1/_full", scope="ingest", summary="queue full")
async def probe_full(call: Call[None, None]) -> None:
    raise BackpressureError("write queue is full", retry_after=2.5)


@probe_routes.route("GET", "/api/v1/_conflict", scope="read", summary="typed error")
async def probe_conflict(call: Call[None, None]) -> None:
    raise ConflictError("already there", details={"id": "x"})


def assert_envelope(data: Any, code: str) -> dict[str, Any]:
    assert set(data) == {"error"}, data
    assert data["error"]["code"] == code, data
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    error: dict[str, Any] = data["error"]
    return error


async def test_query_is_validated_and_parsed(make_api: MakeApi) -> None:
    api = await make_api(extra_routes=(probe_routes,))
    h = await api.headers("viewer")
    resp = await api.client.get("/api/v1/_probe?limit=5&tag=a&tag=b", headers=h)
    assert resp.status == 200
    assert await resp.json() == {"limit": 5, "tag": ["a", "b"], "name": None, "count": None}

    resp = await api.client.get("/api/v1/_probe?limit=abc", headers=h)
    assert resp.status == 400
    err = assert_envelope(await resp.json(), "validation_error")
    assert "query.limit" in err["message"]

    resp = await api.client.get("/api/v1/_probe?bogus=1", headers=h)
    assert resp.status == 400
    err = assert_envelope(await resp.json(), "validation_error")
    assert "unknown field 'query.bogus'" in err["message"]


async def test_body_validation(make_api: MakeApi) -> None:
    api = await make_api(extra_routes=(probe_routes,))
    h = await api.headers("viewer")
    resp = await api.client.post("/api/v1/_probe", json={"name": "x", "count": 3}, headers=h)
    assert resp.status == 200
    assert (await resp.json())["count"] == 3

    cases = [
        ({"name": "x", "count": 3, "extra": 1}, "unknown field 'body.extra'"),
        ({"name": "x", "count": "3"}, "'body.count'"),  # strict: a string is not an int
        ({"name": 5, "count": 3}, "'body.name'"),
        ({"name": "x"}, "missing required field 'body.count'"),
    ]
    for payload, expected in cases:
        resp = await api.client.post("/api/v1/_probe", json=payload, headers=h)
        assert resp.status == 400, payload
        err = assert_envelope(await resp.json(), "validation_error")
        assert expected in err["message"], (payload, err)
        assert err["details"]["errors"]

    resp = await api.client.post("/api/v1/_probe", data=b'{"name": "x",', headers=h)
    assert resp.status == 400
    err = assert_envelope(await resp.json(), "validation_error")
    assert "not valid JSON" in err["message"]


async def test_unknown_route_wrong_method_and_oversize_body(make_api: MakeApi) -> None:
    api = await make_api(extra_routes=(probe_routes,), api={"max_body_bytes": 2048})
    resp = await api.client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert_envelope(await resp.json(), "not_found")

    resp = await api.client.put("/api/v1/info")
    assert resp.status == 405
    err = assert_envelope(await resp.json(), "method_not_allowed")
    assert "GET" in err["details"]["allowed"]
    assert "GET" in resp.headers["Allow"]

    h = await api.headers("viewer")
    resp = await api.client.post(
        "/api/v1/_probe", data=b'{"name": "' + b"x" * 5000 + b'", "count": 1}', headers=h
    )
    assert resp.status == 413
    err = assert_envelope(await resp.json(), "payload_too_large")
    assert err["details"]["max_body_bytes"] == 2048


async def test_unexpected_exception_is_a_500_envelope_without_internals(
    make_api: MakeApi, caplog: Any
) -> None:
    api = await make_api(extra_routes=(probe_routes,))
    h = await api.headers("viewer")
    resp = await api.client.get("/api/v1/_boom", headers={**h, "X-Request-ID": "req-boom-1"})
    assert resp.status == 500
    body = await resp.text()
    assert "secret internals" not in body
    err = assert_envelope(await resp.json(), "internal_error")
    assert err["details"]["request_id"] == "req-boom-1"
    assert resp.headers["X-Request-ID"] == "req-boom-1"
    assert any("secret internals" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_security_headers_and_request_id(make_api: MakeApi) -> None:
    api = await make_api()
    resp = await api.client.get("/health/live")
    assert resp.status == 200
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert len(resp.headers["X-Request-ID"]) == 32
    resp = await api.client.get("/api/v1/docs")
    assert resp.status == 200
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "/api/v1/docs/docs.js" in await resp.text()
    for asset in ("/api/v1/docs/docs.js", "/api/v1/docs/docs.css"):
        assert (await api.client.get(asset)).status == 200


async def test_cors_only_for_configured_origins(make_api: MakeApi) -> None:
    api = await make_api(api={"cors_origins": ["https://grafana.example"]})
    preflight = {"Origin": "https://grafana.example", "Access-Control-Request-Method": "GET"}
    resp = await api.client.options("/api/v1/info", headers=preflight)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "https://grafana.example"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    resp = await api.client.get("/api/v1/info", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_request_id_on_every_log_line_of_a_request(make_api: MakeApi, capsys: Any) -> None:
    import logging

    from aetherlens.obs import JsonFormatter

    api = await make_api(extra_routes=(probe_routes,))
    h = await api.headers("viewer")
    records: list[logging.LogRecord] = []
    formatted: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            formatted.append(JsonFormatter().format(record))  # formatted in the request's context

    handler = Capture()
    logger = logging.getLogger("aetherlens")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        await api.client.get("/api/v1/_boom", headers={**h, "X-Request-ID": "trace-42"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    import json

    lines = [json.loads(f) for f in formatted]
    assert {line["logger"] for line in lines} >= {"aetherlens.api", "aetherlens.api.access"}
    assert all(line.get("request_id") == "trace-42" for line in lines), lines
    access = next(line for line in lines if line["logger"] == "aetherlens.api.access")
    assert access["status"] == 500 and access["path"] == "/api/v1/_boom" and access["method"] == "GET"
    assert access["principal"].startswith("user:")


async def test_typed_errors_map_to_status_and_code(make_api: MakeApi) -> None:
    api = await make_api(extra_routes=(probe_routes,))
    key = {"Authorization": f"Bearer {await api.key(['ingest', 'read'])}"}
    resp = await api.client.post("/api/v1/_full", headers=key)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "3"
    assert assert_envelope(await resp.json(), "queue_full")["details"] == {"retry_after": 2.5}
    resp = await api.client.get("/api/v1/_conflict", headers=key)
    assert resp.status == 409
    assert assert_envelope(await resp.json(), "conflict")["details"] == {"id": "x"}


async def test_nul_characters_are_refused_at_the_edge(make_api: MakeApi) -> None:
    api = await make_api(extra_routes=(probe_routes,))
    h = await api.headers("viewer")
    resp = await api.client.get("/api/v1/_probe", params={"tag": "a\x00b"}, headers=h)
    assert resp.status == 400
    assert "query.tag" in assert_envelope(await resp.json(), "validation_error")["message"]
    resp = await api.client.post("/api/v1/_probe", data=b'{"name": "a\\u0000", "count": 1}', headers=h)
    assert resp.status == 400
    assert "body.name" in assert_envelope(await resp.json(), "validation_error")["message"]


async def test_stream_without_websocket_upgrade_is_an_enveloped_400(make_api: MakeApi) -> None:
    api = await make_api()
    resp = await api.client.get("/api/v1/stream")
    assert resp.status == 400
    assert_envelope(await resp.json(), "bad_request")
