"""The stream runner on its own: reconnects after errors, stops on a refused key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import aiohttp
import pytest

from custom_components.aetherlens.api import AetherLensClient, MetricEvent, StreamEvent
from custom_components.aetherlens.stream import LiveStream, StreamCallbacks

from .conftest import CoreServer, load_fixture, wait_until


@pytest.fixture
async def session() -> AsyncGenerator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def test_a_failing_handler_reconnects(
    core: CoreServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[StreamEvent] = []
    changes: list[str] = []

    def on_event(event: StreamEvent) -> None:
        if not received:
            received.append(event)
            raise RuntimeError("bug in a handler")
        received.append(event)

    live = LiveStream(
        AetherLensClient(core.url, core.api_key, session),
        StreamCallbacks(
            on_event=on_event,
            on_connected=lambda: changes.append("up"),
            on_disconnected=lambda: changes.append("down"),
            on_auth_failed=lambda: changes.append("auth"),
        ),
    )
    task = asyncio.create_task(live.run())
    try:
        await wait_until(lambda: live.connected and bool(core.sockets), "the first connection")
        message = load_fixture("stream_messages.json")[2]
        await core.push(message)
        # The handler's bug ends that connection; the runner logs it and connects again.
        await wait_until(lambda: core.stream_connections == 2 and bool(core.sockets), "a reconnect")
        await wait_until(lambda: live.connected, "connected again")
        await core.push(message)
        await wait_until(lambda: len(received) == 2, "the event after the reconnect")
        assert isinstance(received[1], MetricEvent)
        assert changes == ["up", "down", "up"]
        assert any("Unexpected error in the AetherLens stream" in r.getMessage() for r in caplog.records)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_refused_key_stops_the_runner(core: CoreServer, session: aiohttp.ClientSession) -> None:
    changes: list[str] = []
    live = LiveStream(
        AetherLensClient(core.url, "revoked", session),
        StreamCallbacks(
            on_event=lambda _e: None,
            on_connected=lambda: changes.append("up"),
            on_disconnected=lambda: changes.append("down"),
            on_auth_failed=lambda: changes.append("auth"),
        ),
    )
    await asyncio.wait_for(live.run(), 5)  # returns: no retry loop against a refused key
    assert changes == ["auth"]
