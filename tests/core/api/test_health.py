"""/health, /health/live, /health/ready and /metrics (parsed with prometheus_client's parser)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from aetherlens.costs import service
from aetherlens.costs.job import CostJob

from .conftest import MakeApi


class WriterState:
    """A writer-status provider (the real writer exposes the same ``status()`` mapping)."""

    def __init__(self, **state: Any) -> None:
        self.state = state

    def status(self) -> Mapping[str, Any]:
        return self.state


class Plugins:
    def __init__(self, plugins: list[dict[str, Any]]) -> None:
        self.plugins = plugins

    def status(self) -> Sequence[Mapping[str, Any]]:
        return self.plugins

    async def restart(self, plugin_id: str) -> None:
        raise NotImplementedError

    async def reconfigure(self, plugin_id: str, config: Mapping[str, Any]) -> None:
        raise NotImplementedError


async def test_health_ok(make_api: MakeApi) -> None:
    api = await make_api(ctx={"writer": WriterState(spool_bytes=0, queue_depth=0)})
    resp = await api.client.get("/health/live")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}
    resp = await api.client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "spool", "rollups", "quarantine", "disk"}
    assert body["checks"]["disk"]["free_bytes"] > 0
    resp = await api.client.get("/health/ready")
    assert resp.status == 200
    assert set((await resp.json())["checks"]) == {"database", "spool"}


async def test_health_degraded_and_failing(make_api: MakeApi) -> None:
    api = await make_api(
        ctx={
            "writer": WriterState(spool_bytes=4096, queue_depth=10),
            "supervisor": Plugins([{"id": "shelly", "state": "running"}, {"id": "kasa", "state": "failed"}]),
        }
    )
    resp = await api.client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "degraded"
    assert body["checks"]["spool"]["status"] == "degraded"
    assert body["checks"]["plugins"] == {"status": "degraded", "total": 2, "unhealthy": ["kasa"]}

    full = await make_api(ctx={"writer": WriterState(spool_bytes=0, queue_depth=200_000, queue_max=200_000)})
    resp = await full.client.get("/health/ready")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "failing" and body["checks"]["spool"]["status"] == "failing"


def _samples(text: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


async def test_prometheus_metrics(make_api: MakeApi) -> None:
    api = await make_api()
    h = {"Authorization": f"Bearer {await api.key(['read'])}"}
    before = _count(_samples(await (await api.client.get("/metrics")).text()), "/api/v1/info", "200")
    for _ in range(3):
        assert (await api.client.get("/api/v1/info", headers=h)).status == 200
    await api.client.get("/api/v1/does-not-exist")
    resp = await api.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = _samples(await resp.text())
    assert _count(samples, "/api/v1/info", "200") == before + 3
    assert _count(samples, "unmatched", "404") >= 1
    buckets = [
        s
        for s in samples
        if s.name == "aetherlens_http_request_duration_seconds_count" and s.labels["route"] == "/api/v1/info"
    ]
    assert buckets and buckets[0].value >= 3
    # Route templates, not raw paths: an id in the path must not create a label per id.
    await api.client.get("/api/v1/auth/api-keys/abc", headers=await api.headers())
    labels = {s.labels.get("route") for s in _samples(await (await api.client.get("/metrics")).text())}
    assert "/api/v1/auth/api-keys/abc" not in labels


def _count(samples: list[Any], route: str, status: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == "aetherlens_http_requests_total"
        and s.labels["route"] == route
        and s.labels["status"] == status
        and s.labels["method"] == "GET"
    )


async def test_costs_check_names_a_series_the_cost_job_left_out(make_api: MakeApi) -> None:
    job = CostJob()
    api = await make_api(ctx={"cost_job": job})
    resp = await api.client.get("/health")
    assert (await resp.json())["checks"]["costs"] == {
        "status": "ok",
        "progress": {"phase": "idle"},
        "failed_series": [],
    }
    await service.create_tariff(api.pool, {"name": "flat", "periods": {"flat": {"price": "0.10"}}})
    await api.pool.execute(
        "INSERT INTO metrics (time, device_id, metric_type, value) VALUES"
        " ('2026-04-01 01:00+00', 'bad', 'power', 5e-324), ('2026-04-01 01:05+00', 'bad', 'power', 5e-324)"
    )
    await job.run_once(api.pool, now=dt.datetime(2026, 4, 2, tzinfo=dt.UTC))
    resp = await api.client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "degraded"
    costs = body["checks"]["costs"]
    assert costs["status"] == "degraded" and "bad" in costs["message"]
    assert [f["device_id"] for f in costs["failed_series"]] == ["bad"]


async def test_health_degraded_while_write_batches_are_quarantined(make_api: MakeApi) -> None:
    writer = WriterState(quarantined_batches=2, quarantined_metrics=7, dead_letter="/d/dead-letter.jsonl")
    api = await make_api(ctx={"writer": writer})
    resp = await api.client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "degraded"
    check = body["checks"]["quarantine"]
    assert check["status"] == "degraded" and check["batches"] == 2 and check["metrics"] == 7
    assert "/d/dead-letter.jsonl" in check["message"]


async def test_health_names_the_series_whose_rollups_fail(make_api: MakeApi) -> None:
    api = await make_api()
    failed = [
        {"width": "hour", "bucket": "2026-03-01T00:00:00+00:00", "device_id": "big", "metric_type": "power",
         "error": "NumericValueOutOfRangeError: value out of range: overflow"},
    ]  # fmt: skip
    async with api.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO core_state (key, value) VALUES ('rollup_failures', $1)", json.dumps(failed)
        )
    body = await (await api.client.get("/health")).json()
    assert body["status"] == "degraded"
    check = body["checks"]["rollups"]
    assert check["status"] == "degraded" and "big/power" in check["message"]
    assert check["failed"] == failed
