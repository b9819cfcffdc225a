"""WebSocket /api/v1/stream: auth first, subscribe, delivery, and slow consumers dropped without
blocking publishers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from aetherlens.api.stream import CLOSE_SLOW_CONSUMER, CLOSE_UNAUTHORIZED, StreamHub

from .conftest import Api, MakeApi


async def _connect(api: Api, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await api.client.ws_connect("/api/v1/stream")
    await ws.send_json({"type": "auth", "token": token})
    return ws


async def _receive_json(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msg.json()


async def test_auth_subscribe_and_delivery(make_api: MakeApi) -> None:
    api = await make_api()
    for token in (await api.key(["read"]), await api.token("viewer")):
        ws = await _connect(api, token)
        assert await _receive_json(ws) == {"type": "auth_ok"}
        await ws.send_json({"type": "subscribe", "topics": ["metrics", "alerts"]})
        assert await _receive_json(ws) == {"type": "subscribed", "topics": ["alerts", "metrics"]}
        metric = {
            "time": "2026-01-01T00:00:00+00:00",
            "device_id": "plug1",
            "metric_type": "power",
            "value": 12.5,
            "unit": "W",
        }
        assert api.ctx.stream.publish("costs", {"today": 1.0}) == 0  # not subscribed
        assert api.ctx.stream.publish("metrics", metric) == 1
        api.ctx.stream.publish("alerts", {"id": 7})
        assert await _receive_json(ws) == {"type": "metric", "data": metric}
        assert await _receive_json(ws) == {"type": "alert", "data": {"id": 7}}
        await ws.send_json({"type": "subscribe", "topics": ["weather"]})
        assert (await _receive_json(ws))["type"] == "error"
        await ws.close()
    for _ in range(100):
        if api.ctx.stream.client_count == 0:
            break
        await asyncio.sleep(0.02)
    assert api.ctx.stream.client_count == 0


async def test_auth_failures_close_4401(make_api: MakeApi) -> None:
    api = await make_api()
    ingest_only = await api.key(["ingest"])
    for first in (
        {"type": "auth", "token": "nope"},
        {"type": "auth", "token": ingest_only},
        {"type": "subscribe"},
    ):
        ws = await api.client.ws_connect("/api/v1/stream")
        await ws.send_json(first)
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE, (first, msg)
        assert ws.close_code == CLOSE_UNAUTHORIZED, first
        await ws.close()


async def test_slow_consumer_is_disconnected_and_never_blocks(make_api: MakeApi) -> None:
    hub = StreamHub(queue_size=5)
    api = await make_api(ctx={"stream": hub})
    fast = await _connect(api, await api.key(["read"]))
    slow = await _connect(api, await api.key(["read"], name="slow"))
    for ws in (fast, slow):
        assert await _receive_json(ws) == {"type": "auth_ok"}
        await ws.send_json({"type": "subscribe", "topics": ["metrics"]})
        assert (await _receive_json(ws))["type"] == "subscribed"

    # Publish far more than the slow client's queue holds, without yielding to the event loop in
    # between: publish() itself must never wait for a consumer.
    delivered = [hub.publish("metrics", {"n": i}) for i in range(50)]
    assert hub.disconnected_slow == 2  # neither reader ran between publishes, so both overflowed
    assert delivered[0] == 2 and delivered[-1] == 0

    for ws in (fast, slow):
        seen = 0
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            seen += 1
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == CLOSE_SLOW_CONSUMER
        assert seen <= 5

    # A consumer that keeps up is not dropped.
    steady = await _connect(api, await api.key(["read"], name="steady"))
    assert await _receive_json(steady) == {"type": "auth_ok"}
    await steady.send_json({"type": "subscribe", "topics": ["metrics"]})
    await _receive_json(steady)
    for i in range(20):
        hub.publish("metrics", {"n": i})
        assert await _receive_json(steady) == {"type": "metric", "data": {"n": i}}
    assert hub.disconnected_slow == 2
    await steady.close()
