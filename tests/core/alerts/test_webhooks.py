"""Webhooks: a loopback receiver gets each transition exactly once, also when it was down at first
(retries with backoff on the engine's clock), a hanging endpoint never blocks evaluation, and a
delivery that keeps failing is given up and shown in the backlog."""

from __future__ import annotations

import asyncio
import datetime as dt

from aiohttp import web
from dbtest import wait_until

from aetherlens.alerts.webhooks import WebhookOptions, backoff
from aetherlens.db.queries import alerts as q

from .conftest import T0, Env, Receiver

MIN = dt.timedelta(minutes=1)


async def _rule(env: Env, *urls: str) -> q.AlertRule:
    await env.device("kettle")
    return await env.rule(
        name="kettle",
        device_id="kettle",
        metric_type="power",
        condition={"type": "threshold", "op": ">", "value": 1500},
        cooldown_seconds=0,
        notify=[{"type": "webhook", "url": u} for u in urls] + [{"type": "log"}],
    )


def readings(values: list[float], start: dt.datetime = T0) -> list[tuple[dt.datetime, str, str, float]]:
    return [(start + i * MIN, "kettle", "power", v) for i, v in enumerate(values)]


async def test_each_transition_is_delivered_exactly_once(env: Env, receiver: Receiver) -> None:
    await receiver.start()
    await _rule(env, receiver.url)
    engine = await env.engine()
    await env.ingest(readings([2000, 100, 1800]), engine)
    assert env.states() == ["firing", "resolved", "firing"]
    assert await engine.sender.deliver_due() == 3
    assert await engine.sender.deliver_due() == 0  # nothing twice
    assert receiver.states() == ["firing", "resolved", "firing"]
    assert [b["data"] for b in receiver.bodies] == env.published  # the stream's data, as published
    assert all(b["type"] == "alert" for b in receiver.bodies)
    assert len(set(receiver.delivery_ids)) == 3
    assert await engine.webhook_backlog() == {"pending": 0, "retrying": 0, "failed": 0}


async def test_a_receiver_down_at_first_gets_it_once_after_the_backoff(env: Env, receiver: Receiver) -> None:
    await _rule(env, receiver.url)
    engine = await env.engine()
    await env.ingest(readings([2000]), engine)
    assert await engine.sender.deliver_due() == 0  # connection refused: nothing listens yet
    assert await engine.webhook_backlog() == {"pending": 1, "retrying": 1, "failed": 0}
    await receiver.start()
    receiver.fail_with = 503  # up, but failing: the second attempt fails too
    env.clock.advance(seconds=backoff(1, engine.sender.options) + 1)
    assert await engine.sender.deliver_due() == 0
    receiver.fail_with = None
    env.clock.advance(seconds=backoff(1, engine.sender.options))  # the second backoff (20 s) not over yet
    assert await engine.sender.deliver_due() == 0
    env.clock.advance(seconds=backoff(2, engine.sender.options))
    assert await engine.sender.deliver_due() == 1
    env.clock.advance(hours=2)
    assert await engine.sender.deliver_due() == 0
    assert receiver.states() == ["firing"]
    attempts, error = await env.pool.fetchrow("SELECT attempts, last_error FROM alert_deliveries")
    assert (attempts, error) == (3, None)


async def test_a_hanging_endpoint_never_blocks_evaluation(env: Env, receiver: Receiver) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    try:
        await _rule(env, receiver.url)
        engine = await env.engine(webhooks=True, timeout=30.0)
        await env.ingest(readings([2000]), engine)
        await wait_until(entered.is_set, what="the sender is stuck in the hanging endpoint")
        # While the delivery hangs, evaluation goes on and the stream hears every transition.
        await env.ingest(readings([100, 1900, 50], T0 + MIN), engine)
        assert env.states() == ["firing", "resolved", "firing", "resolved"]
        assert not release.is_set()
    finally:
        release.set()
        await runner.cleanup()


async def test_a_delivery_that_keeps_failing_is_given_up(env: Env, receiver: Receiver) -> None:
    await receiver.start()
    receiver.fail_with = 500
    await _rule(env, receiver.url)
    engine = await env.engine(max_attempts=2)
    await env.ingest(readings([2000]), engine)
    await engine.sender.deliver_due()
    env.clock.advance(minutes=5)
    await engine.sender.deliver_due()
    assert await engine.webhook_backlog() == {"pending": 0, "retrying": 0, "failed": 1}
    error = await env.pool.fetchval("SELECT last_error FROM alert_deliveries")
    assert error == "HTTP 500"


def test_backoff_doubles_up_to_the_cap() -> None:
    options = WebhookOptions(backoff_initial=5, backoff_max=60)
    assert [backoff(n, options) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
