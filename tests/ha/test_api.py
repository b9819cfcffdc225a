"""The typed client against the loopback core serving recorded answers (real HTTP, real WebSocket)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import aiohttp
import pytest

from custom_components.aetherlens.api import (
    AetherLensAuthError,
    AetherLensClient,
    AetherLensConnectionError,
    AetherLensError,
    AetherLensNotFoundError,
    AlertTransition,
    CostEvent,
    MetricEvent,
    Subscribed,
    normalize_url,
    parse_stream_message,
)

from .conftest import ACTIVE_TARIFF, INSTANCE_ID, CoreServer, load_fixture


@pytest.fixture
async def session() -> AsyncGenerator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def client(core: CoreServer, session: aiohttp.ClientSession) -> AetherLensClient:
    return AetherLensClient(core.url, core.api_key, session)


async def test_info(client: AetherLensClient) -> None:
    info = await client.info()
    assert info.instance_id == INSTANCE_ID
    assert info.currency == "USD"
    assert info.timezone == "Etc/UTC"
    assert info.api_version == 1
    assert info.capabilities["timescaledb"] is False


async def test_devices_and_current_metrics(client: AetherLensClient) -> None:
    devices = await client.devices()
    assert [d.id for d in devices] == [d["id"] for d in load_fixture("devices.json")["items"]]
    assert devices[1].name == "Heat pump 1" and devices[1].type == "hvac" and devices[1].room is None
    current = await client.current_metrics()
    recorded = load_fixture("metrics_current.json")["devices"][1]["metrics"]
    assert current["sim-h001-hvac"]["power"].value == recorded["power"]["value"]
    assert current["sim-h001-hvac"]["energy"].unit == "kWh"
    assert current["sim-h001-hvac"]["energy"].time == datetime.fromisoformat(recorded["energy"]["time"])
    assert "energy" not in current["sim-h001-solar"]


async def test_costs(client: AetherLensClient, core: CoreServer) -> None:
    summary = await client.cost_summary()
    recorded = load_fixture("costs_summary.json")
    assert summary.today == recorded["today"]
    assert summary.current_period == "off_peak"
    assert summary.tariff_id == ACTIVE_TARIFF
    assert summary.day_start == datetime(2026, 12, 1, tzinfo=UTC)
    assert summary.previous_cycle_start == datetime(2026, 11, 1, tzinfo=UTC)

    costs = await client.device_costs(summary.day_start, datetime(2026, 12, 1, 12, tzinfo=UTC))
    assert costs["sim-h001-rack"].cost == next(
        i["cost"]
        for i in load_fixture("costs_devices_today.json")["items"]
        if i["device_id"] == "sim-h001-rack"
    )
    assert core.calls("/costs/devices")[-1] == {
        "from": "2026-12-01T00:00:00+00:00",
        "to": "2026-12-01T12:00:00+00:00",
    }

    rows = await client.comparison(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert [r.name for r in rows] == ["Flat rate", "Demo time-of-use"]
    assert rows[0].total is not None and rows[1].total is not None and rows[0].total < rows[1].total

    tariff = await client.tariff(ACTIVE_TARIFF)
    assert tariff.periods == ("peak", "off_peak") and tariff.active
    with pytest.raises(AetherLensNotFoundError):
        await client.tariff("nope")

    bill = await client.bill("2026-11-01", "2026-12-02")
    assert bill == load_fixture("costs_bill.json")
    assert core.calls("/costs/bill")[-1] == {"from": "2026-11-01", "to": "2026-12-02"}


async def test_cost_history_and_changes(client: AetherLensClient, core: CoreServer) -> None:
    core.answers["/costs/history"] = lambda _r: (
        200,
        {"points": [{"time": "2026-12-01T00:00:00+00:00", "kwh": 1.5, "cost": 0.21, "carbon_kg": 0.4}]},
    )
    core.answers["/costs/changes"] = lambda _r: (
        200,
        {"revision": 7, "changes": [{"device_id": None, "from": "2026-11-30T10:00:00+00:00"}]},
    )
    points = await client.cost_history(
        datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC), device_id="sim-h001-rack"
    )
    assert points[0].cost == 0.21 and points[0].time == datetime(2026, 12, 1, tzinfo=UTC)
    assert core.calls("/costs/history")[-1]["device_id"] == "sim-h001-rack"
    changes = await client.cost_changes(3)
    assert changes.revision == 7
    assert changes.changes[0].device_id is None
    assert core.calls("/costs/changes")[-1] == {"since": "3"}


async def test_cloud_accounts_missing_route_and_present(client: AetherLensClient, core: CoreServer) -> None:
    assert await client.cloud_accounts() is None
    core.data["cloud_costs_summary"] = load_fixture("cloud_costs_summary.json")
    accounts = await client.cloud_accounts()
    assert accounts is not None
    assert [a.key for a in accounts] == ["aws:123456789012", "azure:sub-home-lab"]
    assert accounts[0].forecast_month == 212.5 and accounts[1].forecast_month is None


async def test_alerts_events_and_ack(client: AetherLensClient, core: CoreServer) -> None:
    rules = await client.alerts()
    assert [(r.id, r.name, r.severity) for r in rules] == [
        ("1", "Rack over 400 W", "warning"),
        ("2", "Fridge silent", "critical"),
    ]
    assert await client.alert_events() == []
    core.data["alert_events"] = load_fixture("alert_events_open.json")
    events = await client.alert_events()
    assert events[0].is_open and not events[1].is_open
    acked = await client.acknowledge("17")
    assert acked.acknowledged_at is not None and acked.acknowledged_by == "api-key:ha"
    with pytest.raises(AetherLensNotFoundError):
        await client.acknowledge("999")


async def test_errors(core: CoreServer, session: aiohttp.ClientSession) -> None:
    with pytest.raises(AetherLensAuthError) as auth:
        await AetherLensClient(core.url, "wrong", session).info()
    assert auth.value.status == 401 and auth.value.code == "invalid_token"

    client = AetherLensClient(core.url, core.api_key, session)
    core.fail("/info", 503)
    with pytest.raises(AetherLensConnectionError):
        await client.info()
    core.fail("/info", 500, body="not json")
    with pytest.raises(AetherLensError) as err:
        await client.info()
    assert err.value.status == 500 and not isinstance(err.value, AetherLensConnectionError)
    core.heal("/info")

    await core.stop()
    with pytest.raises(AetherLensConnectionError):
        await client.info()
    await core.start()
    assert (await client.info()).instance_id == INSTANCE_ID


async def test_timeout(core: CoreServer, session: aiohttp.ClientSession) -> None:
    release = asyncio.Event()
    client = AetherLensClient(core.url, core.api_key, session, request_timeout=0.05)
    # A server that accepts and never answers: the client's own timeout must end the call.
    original = core._handle

    async def hang(request: object) -> object:
        await release.wait()
        return await original(request)  # type: ignore[arg-type]

    core._handle = hang  # type: ignore[method-assign]
    await core.stop()
    await core.start()
    try:
        with pytest.raises(AetherLensConnectionError, match="timeout"):
            await client.info()
    finally:
        release.set()


def test_normalize_url() -> None:
    assert normalize_url("core.local:8080/") == "http://core.local:8080"
    assert normalize_url(" https://x.example/base/ ") == "https://x.example/base"
    with pytest.raises(ValueError, match="not an http"):
        normalize_url("ftp://x")


def test_parse_stream_messages() -> None:
    recorded = load_fixture("stream_messages.json")
    assert parse_stream_message(recorded[0]) is None  # auth_ok
    assert parse_stream_message(recorded[1]) == Subscribed(("alerts", "costs", "metrics"))
    metric = parse_stream_message(recorded[2])
    assert isinstance(metric, MetricEvent) and metric.device_id == recorded[2]["data"]["device_id"]
    cost = parse_stream_message({"type": "cost", "data": load_fixture("costs_summary.json")})
    assert isinstance(cost, CostEvent) and cost.summary.current_period == "off_peak"
    alert = parse_stream_message(
        {
            "type": "alert",
            "data": {
                "alert_id": 1,
                "event_id": 17,
                "name": "Rack over 400 W",
                "device_id": "sim-h001-rack",
                "severity": "warning",
                "state": "firing",
                "value": 423.3,
                "message": "too much",
                "time": "2026-12-01T12:20:00+00:00",
            },
        }
    )
    assert isinstance(alert, AlertTransition) and alert.state == "firing" and alert.event_id == "17"
    with pytest.raises(AetherLensError, match="unknown state"):
        parse_stream_message({"type": "alert", "data": {"alert_id": 1, "event_id": 2, "state": "odd"}})


async def test_stream(client: AetherLensClient, core: CoreServer) -> None:
    recorded = load_fixture("stream_messages.json")
    received: list[object] = []

    async def consume() -> None:
        async for event in client.stream():
            received.append(event)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(core.subscribed.wait(), 5)
    await core.push({"type": "metric", "data": {"oops": 1}})  # malformed: skipped, stream stays
    for message in recorded[2:5]:
        await core.push(message)
    await core.close_streams(1001)
    with pytest.raises(AetherLensConnectionError, match="1001"):
        await asyncio.wait_for(task, 5)
    assert received[0] == Subscribed(("metrics", "costs", "alerts"))
    assert [e.metric.value for e in received[1:] if isinstance(e, MetricEvent)] == [
        m["data"]["value"] for m in recorded[2:5]
    ]


async def test_stream_refused_key(core: CoreServer, session: aiohttp.ClientSession) -> None:
    client = AetherLensClient(core.url, "wrong", session)
    with pytest.raises(AetherLensAuthError):
        async for _ in client.stream():
            pass


async def test_stream_unreachable(core: CoreServer, session: aiohttp.ClientSession) -> None:
    client = AetherLensClient(core.url, core.api_key, session)
    await core.stop()
    with pytest.raises(AetherLensConnectionError):
        async for _ in client.stream():
            pass


async def test_stream_idle_counts_as_dead(client: AetherLensClient, core: CoreServer) -> None:
    with pytest.raises(AetherLensConnectionError, match="sent nothing"):
        async for event in client.stream(idle_timeout=0.2):
            assert isinstance(event, Subscribed)
