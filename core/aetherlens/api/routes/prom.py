"""GET /metrics: the Prometheus text exposition of the default registry (requests and latency from the
API middleware; ingest counters and queue depth registered by the collector and writer)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from aetherlens.api.routing import Call, route


@route(
    "GET",
    "/metrics",
    scope=None,
    summary="Prometheus metrics",
    tags=["health"],
    content_type="text/plain",
)
async def prometheus_metrics(call: Call[None, None]) -> web.StreamResponse:
    response = web.Response(body=generate_latest(REGISTRY))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
