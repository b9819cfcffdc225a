"""Metrics reach the stream per committed write batch (latest value per series, one queue item per batch):
a reading client stays connected through a 50,000-row ingest; a client that does not read is dropped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from aetherlens.api.stream import CLOSE_SLOW_CONSUMER, StreamHub, publish_written
from aetherlens.models import Metric

from .conftest import Api, MakeApi, running_collector

DEVICES = 100
READINGS = 500  # per device: 50,000 rows in one submit


async def _subscribed(api: Api, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await api.client.ws_connect("/api/v1/stream")
    await ws.send_json({"type": "auth", "token": token})
    assert (await ws.receive_json(timeout=20)) == {"type": "auth_ok"}
    await ws.send_json({"type": "subscribe", "topics": ["metrics"]})
    assert (await ws.receive_json(timeout=20))["type"] == "subscribed"
    return ws


async def test_a_reading_client_stays_connected_through_a_50000_row_batch(
    make_api: MakeApi, tmp_path: Path
) -> None:
    api = await make_api()
    ws = await _subscribed(api, await api.key(["read"]))
    start = datetime.now(UTC) - timedelta(seconds=READINGS + 60)
    batch = [
        Metric(start + timedelta(seconds=i), f"dev{d:03d}", "power", float(d * 10_000 + i), "W")
        for i in range(READINGS)
        for d in range(DEVICES)
    ]
    last_time = (start + timedelta(seconds=READINGS - 1)).isoformat()
    expected = {f"dev{d:03d}": float(d * 10_000 + READINGS - 1) for d in range(DEVICES)}

    async with running_collector(api.dsn, tmp_path) as (collector, writer):
        # The runtime's listener: committed batches go to the stream through publish_written.
        writer.add_listener(lambda rows: publish_written(api.ctx.stream, rows))
        result = await collector.submit(batch)
        assert result.accepted == DEVICES * READINGS and not result.rejected

        latest: dict[str, Any] = {}
        while latest != expected:
            msg = await ws.receive(timeout=30)
            assert msg.type == aiohttp.WSMsgType.TEXT, f"stream ended: {msg} (close {ws.close_code})"
            event = msg.json()
            assert event["type"] == "metric" and set(event["data"]) == {
                "time", "device_id", "metric_type", "value", "unit",
            }  # fmt: skip
            latest[event["data"]["device_id"]] = event["data"]["value"]
            if event["data"]["value"] == expected[event["data"]["device_id"]]:
                assert event["data"]["time"] == last_time
    assert api.ctx.stream.disconnected_slow == 0
    # Still connected: the socket answers.
    await ws.send_json({"type": "subscribe", "topics": ["metrics"]})
    assert (await ws.receive_json(timeout=20))["type"] == "subscribed"
    await ws.close()


async def test_a_client_that_does_not_read_is_dropped(make_api: MakeApi) -> None:
    hub = StreamHub(queue_size=4)
    api = await make_api(ctx={"stream": hub})
    reader_ws = await _subscribed(api, await api.key(["read"]))
    idle_ws = await _subscribed(api, await api.key(["read"], name="idle"))  # never reads from here on

    moment = datetime.now(UTC)
    # Each batch is 20,000 series (a few MB on the wire), so the idle client's socket buffers fill
    # after a few batches; then its queue of batches fills and it is dropped.
    rows = [(moment, f"d{i}", "power", float(i), "W", None) for i in range(20_000)]
    got_batch = asyncio.Event()

    async def read_all() -> None:
        while True:
            msg = await reader_ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            if msg.json()["data"]["device_id"] == "d19999":  # the last series of a batch
                got_batch.set()

    reading = asyncio.create_task(read_all())
    for _ in range(100):
        if hub.disconnected_slow:
            break
        got_batch.clear()
        assert publish_written(hub, rows) >= 1
        # The reading client keeps up: it has every batch before the next one is published.
        await asyncio.wait_for(got_batch.wait(), timeout=30)
    assert hub.disconnected_slow == 1, "the idle client was never dropped"

    # The idle client, reading at last, finds the close after what its buffers held.
    while True:
        msg = await idle_ws.receive(timeout=30)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
    assert idle_ws.close_code == CLOSE_SLOW_CONSUMER
    assert not reader_ws.closed and not reading.done()
    reading.cancel()
    await reader_ws.close()
