"""Metric routes: POST /metrics (ingest), GET /metrics (one series), GET /metrics/current.

Ingest parses the envelope with orjson itself instead of through a pydantic body model: a batch may hold
100,000 metrics, and a bad metric must reject only that metric (the collector reports it by index), never
the whole batch. The reads build their JSON with orjson directly because they are the hot paths the
dashboards poll; ``test_metrics_routes`` checks the answers against the declared response models.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from aetherlens.api.routing import Call, route
from aetherlens.api.schemas.metrics import (
    MAX_INGEST_METRICS,
    CurrentOut,
    IngestBody,
    IngestResult,
    MetricsQuery,
    SeriesOut,
)
from aetherlens.db.queries import devices as device_queries
from aetherlens.db.queries import metrics as q
from aetherlens.errors import BackpressureError, NotFoundError, ValidationError


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def parse_envelope(raw: bytes) -> list[Any]:
    """The contract's ingest envelope; anything else is a 400 that says what is wrong."""
    if not raw:
        raise ValidationError('request body is required: {"metrics": [...]}', details={"field": "body"})
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}", details={"field": "body"}) from None
    if not isinstance(envelope, dict):
        raise ValidationError(
            'request body must be a JSON object {"metrics": [...]}', details={"field": "body"}
        )
    unknown = sorted(set(envelope) - {"metrics"})
    if unknown:
        raise ValidationError(
            f"unknown field(s) in the envelope: {', '.join(unknown)}", details={"fields": unknown}
        )
    metrics = envelope.get("metrics")
    if not isinstance(metrics, list):
        raise ValidationError("'metrics' must be a list of metric objects", details={"field": "metrics"})
    if len(metrics) > MAX_INGEST_METRICS:
        raise ValidationError(
            f"too many metrics in one request: {len(metrics)} > {MAX_INGEST_METRICS}; split the batch",
            details={"field": "metrics", "count": len(metrics), "max": MAX_INGEST_METRICS},
        )
    return metrics


@route(
    "POST",
    "/api/v1/metrics",
    scope="ingest",
    body_doc=IngestBody,
    response=IngestResult,
    errors=(400, 413, 503),
    summary="Ingest a batch of metrics",
    description=(
        'Body: `{"metrics": [{"time", "device_id", "metric_type", "value", "unit"?, "tags"?}]}`, at most '
        "100,000 metrics. 200 even when some or all "
        "metrics are rejected (each by index with a reason); 400 only for a bad envelope; 503 with "
        "Retry-After while the write queue is full. A 200 means every accepted metric is committed or "
        "durably spooled."
    ),
)
async def ingest_metrics(call: Call[None, None]) -> web.Response:
    metrics = parse_envelope(await call.request.read())
    collector = call.ctx.collector
    if collector is None:
        raise BackpressureError("ingest is not available: the collector is not running", retry_after=5)
    result = await collector.submit(metrics, wait=False)
    return json_response(
        {
            "accepted": result.accepted,
            "rejected": [{"index": r.index, "reason": r.reason} for r in result.rejected],
        }
    )


@route(
    "GET",
    "/api/v1/metrics",
    scope="read",
    query=MetricsQuery,
    response=SeriesOut,
    errors=(404,),
    summary="One series over a time range",
    description=(
        f"A raw answer carries at most {q.MAX_RAW_POINTS:,} points: `resolution=raw` over a range holding "
        "more is a 400 `too_many_points` (`details.max_points`); `auto` answers hourly instead."
    ),
)
async def query_metrics(call: Call[MetricsQuery, None]) -> web.Response:
    query = call.query
    assert query.from_ is not None and query.to is not None  # filled by MetricsQuery's defaults
    series = await q.query_series(
        call.ctx.pool,
        query.device_id,
        query.metric_type,
        query.from_,
        query.to,
        resolution=query.resolution,
        agg=query.agg,
    )
    if not series.points and not await device_queries.device_exists(call.ctx.pool, query.device_id):
        raise NotFoundError(f"device {query.device_id!r} not found", details={"device_id": query.device_id})
    return json_response(
        {
            "device_id": series.device_id,
            "metric_type": series.metric_type,
            "unit": series.unit,
            "resolution": series.resolution,
            "points": [{"time": t, "value": v} for t, v in series.points],
        }
    )


@route(
    "GET",
    "/api/v1/metrics/current",
    scope="read",
    response=CurrentOut,
    summary="Latest value of every series",
)
async def current_metrics(call: Call[None, None]) -> web.Response:
    grouped = await q.current_values(call.ctx.pool)
    return json_response(
        {
            "devices": [
                {
                    "device_id": device_id,
                    "metrics": {
                        v.metric_type: {"value": v.value, "unit": v.unit, "time": v.time} for v in values
                    },
                }
                for device_id, values in grouped.items()
            ]
        }
    )
