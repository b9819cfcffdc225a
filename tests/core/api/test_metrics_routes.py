"""Metric routes over HTTP: ingest through the real Collector + Writer into PostgreSQL, the envelope
rules (400/413/503), series queries (raw/hour/day/auto), current values, scopes and 404s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from aetherlens.api.schemas.metrics import CurrentOut, SeriesOut
from aetherlens.db.queries.metrics import MAX_RAW_POINTS
from aetherlens.db.writer import Writer

from .conftest import Api, MakeApi, running_collector
from .test_devices_routes import bearer, error_of

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=3)


IngestApi = Callable[..., Awaitable[tuple[Api, Writer]]]


@pytest.fixture
async def ingest_api(make_api: MakeApi, api_dsn: str, tmp_path: Path) -> AsyncIterator[IngestApi]:
    stack: list[Any] = []

    async def make(writer: dict[str, Any] | None = None, **overrides: Any) -> tuple[Api, Writer]:
        cm = running_collector(api_dsn, tmp_path, **(writer or {}))
        collector, w = await cm.__aenter__()
        stack.append(cm)
        return await make_api(ctx={"collector": collector, "writer": w}, **overrides), w

    yield make
    for cm in reversed(stack):
        await cm.__aexit__(None, None, None)


def metric(i: int, device: str = "plug1", **extra: Any) -> dict[str, Any]:
    return {
        "time": (T0 + timedelta(minutes=i)).isoformat(),
        "device_id": device,
        "metric_type": "power",
        "value": float(i),
        **extra,
    }


async def test_ingest_commits_accepted_and_reports_rejected_by_index(ingest_api: IngestApi) -> None:
    api, _ = await ingest_api()
    h = bearer(await api.key(["ingest"]))
    batch = [
        metric(0),
        metric(1, unit="kW"),  # converted to W
        {
            "time": "2026-01-01T00:00:00",
            "device_id": "plug1",
            "metric_type": "power",
            "value": 1,
        },  # no offset
        metric(2, metric_type="humidity"),  # not in the vocabulary
        metric(3, device="bad id"),
        "not an object",
        {
            "time": (T0 + timedelta(minutes=4)).timestamp(),
            "device_id": "plug2",
            "metric_type": "energy",
            "value": 1500,
            "unit": "Wh",
            "tags": {"phase": "L2"},
        },
    ]
    resp = await api.client.post("/api/v1/metrics", data=orjson.dumps({"metrics": batch}), headers=h)
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert result["accepted"] == 3
    assert [r["index"] for r in result["rejected"]] == [2, 3, 4, 5]
    assert all(r["reason"] for r in result["rejected"])
    assert "offset" in result["rejected"][0]["reason"]

    # A 200 means committed: the rows are in PostgreSQL now.
    rows = await api.pool.fetch("SELECT device_id, metric_type, value, unit FROM metrics ORDER BY time")
    assert [tuple(r) for r in rows] == [
        ("plug1", "power", 0.0, "W"),
        ("plug1", "power", 1000.0, "W"),
        ("plug2", "energy", 1.5, "kWh"),
    ]
    # ...and readable through the query routes.
    r = await api.client.get(
        "/api/v1/metrics",
        params={"device_id": "plug1", "metric_type": "power", "from": T0.isoformat(), "to": NOW.isoformat()},
        headers=bearer(await api.key(["read"])),
    )
    assert (await r.json())["points"] == [
        {"time": T0.isoformat(), "value": 0.0},
        {"time": (T0 + timedelta(minutes=1)).isoformat(), "value": 1000.0},
    ]


async def test_envelope_errors_are_400_with_a_reason(ingest_api: IngestApi) -> None:
    api, _ = await ingest_api()
    h = bearer(await api.key(["ingest"]))
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"{}", "'metrics' must be a list"),
        (b'{"metrics": {"a": 1}}', "'metrics' must be a list"),
        (b'{"metrics": [], "extra": 1}', "unknown field"),
        (b"", "body is required"),
        (orjson.dumps({"metrics": [{}] * 100_001}), "too many metrics"),
    ]
    for body, reason in cases:
        resp = await api.client.post("/api/v1/metrics", data=body, headers=h)
        assert resp.status == 400, (body[:40], await resp.text())
        assert reason in error_of(await resp.json(), "validation_error")["message"]
    assert await api.pool.fetchval("SELECT count(*) FROM metrics") == 0
    resp = await api.client.post("/api/v1/metrics", json={"metrics": []}, headers=h)
    assert await resp.json() == {"accepted": 0, "rejected": []}


async def test_oversize_body_is_413(ingest_api: IngestApi) -> None:
    api, _ = await ingest_api(api={"max_body_bytes": 4096})
    h = bearer(await api.key(["ingest"]))
    resp = await api.client.post(
        "/api/v1/metrics", data=orjson.dumps({"metrics": [metric(i) for i in range(200)]}), headers=h
    )
    assert resp.status == 413
    error_of(await resp.json(), "payload_too_large")
    assert await api.pool.fetchval("SELECT count(*) FROM metrics") == 0


async def test_full_write_queue_is_503_with_retry_after(ingest_api: IngestApi) -> None:
    # The first batch fills the queue and waits for its (slow) flush; the second finds no room.
    api, writer = await ingest_api(writer={"flush_interval": 2.0, "queue_max": 2})
    h = bearer(await api.key(["ingest"]))
    first = asyncio.create_task(
        api.client.post("/api/v1/metrics", json={"metrics": [metric(0), metric(1)]}, headers=h)
    )
    for _ in range(1000):
        if writer.status()["queue_depth"]:
            break
        await asyncio.sleep(0.01)
    else:  # without the first batch queued the 503 below would prove nothing
        pytest.fail("the first batch never reached the write queue")
    resp = await api.client.post("/api/v1/metrics", json={"metrics": [metric(5)]}, headers=h)
    assert resp.status == 503, await resp.text()
    assert int(resp.headers["Retry-After"]) >= 1
    error_of(await resp.json(), "queue_full")
    done = await first
    assert (await done.json())["accepted"] == 2
    assert await api.pool.fetchval("SELECT count(*) FROM metrics") == 2


async def test_ingest_without_collector_is_503(make_api: MakeApi) -> None:
    api = await make_api()
    resp = await api.client.post(
        "/api/v1/metrics", json={"metrics": []}, headers=bearer(await api.key(["ingest"]))
    )
    assert resp.status == 503
    assert "Retry-After" in resp.headers


async def test_ingest_and_read_scopes(make_api: MakeApi) -> None:
    api = await make_api()
    read = bearer(await api.key(["read"]))
    ingest = bearer(await api.key(["ingest"]))
    assert (await api.client.post("/api/v1/metrics", json={"metrics": []}, headers=read)).status == 403
    assert (await api.client.get("/api/v1/metrics/current", headers=ingest)).status == 403
    resp = await api.client.get(
        "/api/v1/metrics", params={"device_id": "d", "metric_type": "power"}, headers=ingest
    )
    assert resp.status == 403
    assert (await api.client.post("/api/v1/metrics", json={"metrics": []})).status == 401


async def _seed(api: Api) -> None:
    await api.pool.execute("INSERT INTO devices (id, name) VALUES ('d1', 'one'), ('d2', 'two')")
    await api.pool.execute(
        """INSERT INTO metrics (time, device_id, metric_type, value, unit)
           SELECT $1::timestamptz + make_interval(mins => i), 'd1', 'power', i, 'W'
           FROM generate_series(0, 179) i""",
        T0,
    )
    for table, width in (("metrics_hourly", timedelta(hours=1)), ("metrics_daily", timedelta(days=1))):
        await api.pool.execute(
            f"""INSERT INTO {table} (bucket, device_id, metric_type, avg, min, max, sum, count, first, last)
                SELECT $1::timestamptz - $2::interval * i, 'd1', 'power', i, i - 1, i + 1, i * 60, 60, i, i
                FROM generate_series(1, 100) i""",
            datetime(2026, 1, 1, tzinfo=UTC),
            width,
        )
    await api.pool.execute(
        """INSERT INTO metrics_latest (device_id, metric_type, time, value, unit)
           VALUES ('d1', 'power', $1, 179, 'W'), ('d1', 'energy', $1, 12.5, 'kWh'),
                  ('d2', 'power', $1, 3, 'W')""",
        T0 + timedelta(minutes=179),
    )


async def test_series_query_resolutions_and_aggregates(make_api: MakeApi) -> None:
    api = await make_api()
    await _seed(api)
    h = bearer(await api.key(["read"]))

    async def get(**params: str) -> dict[str, Any]:
        resp = await api.client.get(
            "/api/v1/metrics", params={"device_id": "d1", "metric_type": "power", **params}, headers=h
        )
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        SeriesOut.model_validate(data)
        return data

    raw = await get(**{"from": T0.isoformat(), "to": (T0 + timedelta(minutes=30)).isoformat()})
    assert (raw["resolution"], raw["unit"], len(raw["points"])) == ("raw", "W", 30)
    assert raw["points"][29]["value"] == 29.0
    assert datetime.fromisoformat(raw["points"][0]["time"]) == T0

    end = datetime(2026, 1, 1, tzinfo=UTC)
    hourly = await get(
        **{
            "from": (end - timedelta(hours=10)).isoformat(),
            "to": end.isoformat(),
            "resolution": "hour",
            "agg": "max",
        }
    )
    assert [p["value"] for p in hourly["points"]] == [float(i + 1) for i in range(10, 0, -1)]
    auto_day = await get(
        **{"from": (end - timedelta(days=90)).isoformat(), "to": end.isoformat(), "agg": "sum"}
    )
    assert auto_day["resolution"] == "day"
    assert len(auto_day["points"]) == 90
    assert auto_day["points"][-1] == {"time": (end - timedelta(days=1)).isoformat(), "value": 60.0}
    auto_hour = await get(**{"from": (end - timedelta(days=3)).isoformat(), "to": end.isoformat()})
    assert auto_hour["resolution"] == "hour" and len(auto_hour["points"]) == 72

    # Default range: the last 24 h.
    default = await get()
    assert default["resolution"] == "raw" and len(default["points"]) == 180


async def test_bad_ranges_and_params_are_400_and_unknown_device_404(make_api: MakeApi) -> None:
    api = await make_api()
    await _seed(api)
    h = bearer(await api.key(["read"]))
    base = {"device_id": "d1", "metric_type": "power"}
    cases = [
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "'from' must be earlier than 'to'"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "'from' must be earlier than 'to'"),
        ({"from": "yesterday"}, "query.from"),
        ({"from": "2026-01-01T00:00:00", "to": "2026-01-02T00:00:00Z"}, "query.from"),
        ({"resolution": "minute"}, "query.resolution"),
        ({"agg": "median"}, "query.agg"),
        ({"bogus": "1"}, "query.bogus"),
        ({"to": "0001-01-01T00:00:00Z"}, "too early"),
        ({"from": "0001-01-01T00:00:00+14:00", "to": "0001-01-02T00:00:00Z"}, "outside the supported range"),
    ]
    for params, text in cases:
        resp = await api.client.get("/api/v1/metrics", params={**base, **params}, headers=h)
        assert resp.status == 400, (params, await resp.text())
        assert text in error_of(await resp.json(), "validation_error")["message"], params
    resp = await api.client.get("/api/v1/metrics", params={"metric_type": "power"}, headers=h)
    assert resp.status == 400
    assert "query.device_id" in (await resp.json())["error"]["message"]
    resp = await api.client.get("/api/v1/metrics", params={**base, "device_id": "ghost"}, headers=h)
    assert resp.status == 404
    error_of(await resp.json(), "not_found")
    # An unencoded '+' arrives as a space and is still understood.
    resp = await api.client.get(
        "/api/v1/metrics?device_id=d1&metric_type=power&from=2025-12-31T00:00:00+01:00&to=2026-01-01T00:00:00Z",
        headers=h,
    )
    assert resp.status == 200, await resp.text()


async def test_current_values_for_all_devices(make_api: MakeApi) -> None:
    api = await make_api()
    await _seed(api)
    resp = await api.client.get("/api/v1/metrics/current", headers=await api.headers("viewer"))
    assert resp.status == 200
    data = await resp.json()
    CurrentOut.model_validate(data)
    when = (T0 + timedelta(minutes=179)).isoformat()
    assert data == {
        "devices": [
            {
                "device_id": "d1",
                "metrics": {
                    "energy": {"value": 12.5, "unit": "kWh", "time": when},
                    "power": {"value": 179.0, "unit": "W", "time": when},
                },
            },
            {"device_id": "d2", "metrics": {"power": {"value": 3.0, "unit": "W", "time": when}}},
        ]
    }


async def test_raw_reads_are_capped_and_over_the_cap_is_a_400_naming_it(make_api: MakeApi) -> None:
    api = await make_api()
    h = bearer(await api.key(["read"]))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await api.pool.execute("INSERT INTO devices (id, name) VALUES ('busy', 'busy')")
    # One point per second, one more than an answer may carry.
    await api.pool.execute(
        """INSERT INTO metrics (time, device_id, metric_type, value, unit)
           SELECT $1::timestamptz + make_interval(secs => i), 'busy', 'power', i, 'W'
           FROM generate_series(0, $2::int - 1) AS i""",
        start,
        MAX_RAW_POINTS + 1,
    )
    last = start + timedelta(seconds=MAX_RAW_POINTS)  # the time of the one point past the cap

    async def get(to: datetime, resolution: str) -> Any:
        params = {"device_id": "busy", "metric_type": "power", "from": start.isoformat()}
        return await api.client.get(
            "/api/v1/metrics", params={**params, "to": to.isoformat(), "resolution": resolution}, headers=h
        )

    resp = await get(last + timedelta(seconds=1), "raw")
    assert resp.status == 400, (await resp.text())[:300]  # a wrong 200 carries 5 MB
    error = error_of(await resp.json(), "too_many_points")
    assert f"{MAX_RAW_POINTS}" in error["message"]
    assert error["details"]["max_points"] == MAX_RAW_POINTS

    at_cap = await get(last, "raw")  # `to` is exclusive: exactly the cap
    assert at_cap.status == 200, await at_cap.text()
    points = (await at_cap.json())["points"]
    assert len(points) == MAX_RAW_POINTS and points[-1]["value"] == MAX_RAW_POINTS - 1

    auto = await get(last + timedelta(seconds=1), "auto")  # a short range, but too dense for raw
    assert auto.status == 200, await auto.text()
    assert (await auto.json())["resolution"] == "hour"
