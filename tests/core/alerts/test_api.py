"""A user declares rules over HTTP and sees them fire and resolve through the API, the WebSocket
``alerts`` topic and a webhook; acknowledges through POST /alerts/events/{id}/ack; /health shows the
engine. The engine runs as the core runs it: writer listener, schedule and webhook sender, real clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from api.conftest import Api, MakeApi, running_collector
from dbtest import wait_until

from aetherlens.alerts.engine import AlertEngine
from aetherlens.alerts.webhooks import WebhookOptions
from aetherlens.runtime import cost_source

from .conftest import Receiver

KEYS = {"alert_id", "event_id", "name", "device_id", "severity", "state", "value", "message", "time"}


@asynccontextmanager
async def running(make_api: MakeApi, dsn: str, tmp: Path) -> AsyncIterator[tuple[Api, AlertEngine]]:
    async with running_collector(dsn, tmp) as (collector, writer):
        api = await make_api(ctx={"collector": collector}, alerts={"evaluation_interval": 1})
        engine = AlertEngine(
            api.pool,
            api.settings,
            publish=lambda data: api.ctx.stream.publish("alerts", data),
            costs=cost_source(api.settings),
            webhooks=WebhookOptions(backoff_initial=0.1, backoff_max=0.5, poll_interval=0.2, timeout=2),
        )
        api.ctx.alert_engine = engine
        writer.add_listener(engine.on_written)
        await engine.start()
        try:
            yield api, engine
        finally:
            writer.remove_listener(engine.on_written)
            await engine.stop()


class Stream:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def next(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=15)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        data: dict[str, Any] = msg.json()
        return data


async def _subscribe(api: Api) -> Stream:
    ws = await api.client.ws_connect("/api/v1/stream")
    await ws.send_json({"type": "auth", "token": await api.key(["read"])})
    stream = Stream(ws)
    assert await stream.next() == {"type": "auth_ok"}
    await ws.send_json({"type": "subscribe", "topics": ["alerts"]})
    assert (await stream.next())["type"] == "subscribed"
    return stream


async def test_fire_ack_resolve_through_api_stream_and_webhook(
    make_api: MakeApi, api_dsn: str, tmp_path: Path, receiver: Receiver
) -> None:
    async with running(make_api, api_dsn, tmp_path) as (api, engine):
        admin = await api.headers("admin")
        assert (
            await api.client.post("/api/v1/devices", json={"id": "kettle", "name": "Kettle"}, headers=admin)
        ).status == 201
        rule = {
            "name": "kettle left on",
            "device_id": "kettle",
            "metric_type": "power",
            "condition": {"type": "threshold", "op": ">", "value": 1500},
            "severity": "critical",
            "cooldown_seconds": 0,
            "notify": [{"type": "webhook", "url": receiver.url}],  # nothing listens there yet
        }
        resp = await api.client.post("/api/v1/alerts", json=rule, headers=admin)
        assert resp.status == 201, await resp.text()
        alert_id = (await resp.json())["id"]
        stream = await _subscribe(api)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)

        async def post(value: float, seconds_ago: int) -> None:
            t = (now - dt.timedelta(seconds=seconds_ago)).isoformat()
            body = {"metrics": [{"time": t, "device_id": "kettle", "metric_type": "power", "value": value}]}
            resp = await api.client.post("/api/v1/metrics", json=body, headers=admin)
            assert (await resp.json())["accepted"] == 1

        await post(2200, 60)
        fired = await stream.next()
        assert fired["type"] == "alert" and set(fired["data"]) == KEYS
        data = fired["data"]
        assert (data["alert_id"], data["state"], data["severity"], data["value"]) == (
            alert_id,
            "firing",
            "critical",
            2200,
        )
        events = (await (await api.client.get("/api/v1/alerts/events", headers=admin)).json())["items"]
        assert [(e["event_id"], e["state"], e["name"]) for e in events] == [
            (data["event_id"], "firing", "kettle left on")
        ]
        assert KEYS | {"triggered_at", "resolved_at", "acknowledged_at"} <= set(events[0])

        await receiver.start()  # the endpoint comes up: the retry delivers the firing once
        await wait_until(lambda: receiver.states() == ["firing"], what="the webhook got the firing")

        operator = await api.headers("operator")
        resp = await api.client.post(f"/api/v1/alerts/events/{data['event_id']}/ack", headers=operator)
        assert resp.status == 200 and (await resp.json())["state"] == "acknowledged"
        acked = (await stream.next())["data"]
        assert (acked["state"], acked["event_id"], set(acked)) == ("acknowledged", data["event_id"], KEYS)
        # A second ack changes nothing and publishes nothing.
        assert (
            await api.client.post(f"/api/v1/alerts/events/{data['event_id']}/ack", headers=operator)
        ).status == 200

        await post(300, 30)
        resolved = (await stream.next())["data"]
        assert (resolved["state"], resolved["event_id"], resolved["value"]) == (
            "resolved",
            data["event_id"],
            300,
        )
        await wait_until(
            lambda: receiver.states() == ["firing", "acknowledged", "resolved"],
            what="every transition delivered",
        )
        (event,) = (await (await api.client.get("/api/v1/alerts/events", headers=admin)).json())["items"]
        assert (event["state"], event["resolved_value"], event["acknowledged_by"]) == (
            "resolved",
            300,
            "operator-user",
        )

        # A scheduled rule created over HTTP is live at once: the kettle has been quiet for 30 s.
        quiet = {
            "name": "kettle quiet",
            "device_id": "kettle",
            "condition": {"type": "no_data", "for_seconds": 5},
        }
        assert (await api.client.post("/api/v1/alerts", json=quiet, headers=admin)).status == 201
        silent = (await stream.next())["data"]
        assert (silent["name"], silent["state"]) == ("kettle quiet", "firing")

        health = await (await api.client.get("/health")).json()
        check = health["checks"]["alerts"]
        assert check["status"] == "ok" and check["running"] and check["rules"] == 2
        assert check["webhooks"] == {"pending": 0, "retrying": 0, "failed": 0}
        assert receiver.states() == ["firing", "acknowledged", "resolved"]  # still once each
        assert engine.status()["failing_rules"] == {}


async def test_health_degrades_naming_a_rule_that_cannot_be_evaluated(
    make_api: MakeApi, api_dsn: str, tmp_path: Path
) -> None:
    async with running(make_api, api_dsn, tmp_path) as (api, engine):
        bad = await api.pool.fetchval(
            """INSERT INTO alerts (name, condition)
               VALUES ('bad', '{"type": "cost", "window": "week", "op": ">", "value": 1}') RETURNING id"""
        )
        engine.rules_changed()
        await wait_until(
            lambda: str(bad) in engine.status()["failing_rules"], what="the bad rule is reported"
        )
        check = (await (await api.client.get("/health")).json())["checks"]["alerts"]
        assert check["status"] == "degraded" and f"cannot be evaluated: {bad}" in check["message"]
    check = (await (await api.client.get("/health")).json())["checks"]["alerts"]
    assert check["status"] == "failing" and "not running" in check["message"]
