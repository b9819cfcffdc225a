"""History and interruptions: recorder backfill, HA restarts, core restarts, without duplicates or loss."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .conftest import CoreFactory, ha_config, stop_core, ts
from .harness import PLUG_ENERGY, PLUG_POWER, HomeAssistant


async def wait_recorded(ha: HomeAssistant, entity_id: str, states: list[dict[str, Any]]) -> None:
    """Wait until HA's recorder returns these states (it commits on its own thread)."""
    since = (min(ts(s) for s in states) - timedelta(seconds=1)).isoformat()
    wanted = {s["last_updated"] for s in states}

    async def recorded() -> bool:
        return wanted <= {
            datetime.fromisoformat(h["last_updated"]).isoformat() for h in await ha.history(entity_id, since)
        }

    deadline = time.monotonic() + 30
    while not await recorded():
        assert time.monotonic() < deadline, f"the recorder never returned {wanted}"
        await asyncio.sleep(0.1)


def per_key(rows: list[Any]) -> dict[tuple[datetime, str, str], int]:
    counts: dict[tuple[datetime, str, str], int] = {}
    for r in rows:
        key = (r["time"], r["device_id"], r["metric_type"])
        counts[key] = counts.get(key, 0) + 1
    return counts


async def test_backfill_brings_the_recorders_history_in(ha: HomeAssistant, core_factory: CoreFactory) -> None:
    plug = await ha.device_of(PLUG_POWER)
    past = [await ha.set_lab(PLUG_POWER, v) for v in (11.0, 12.0, 13.0)]
    past_energy = [await ha.set_lab(PLUG_ENERGY, v) for v in (20.0, 20.5)]
    await wait_recorded(ha, PLUG_POWER, past)
    await wait_recorded(ha, PLUG_ENERGY, past_energy)
    # Only the last of each is HA's current state: the others can only come from the recorder.
    core = await core_factory(
        {"homeassistant": {"config": ha_config(ha, backfill_days=1, backfill_chunk_hours=6)}}
    )
    rows = await core.wait_rows(
        lambda rows: {ts(s) for s in past + past_energy} <= {r["time"] for r in rows}, plug, what="history"
    )
    got = {(r["time"], r["metric_type"]): r["value"] for r in rows}
    for state in past:
        assert got[(ts(state), "power")] == float(state["state"])
    for state in past_energy:
        assert got[(ts(state), "energy")] == float(state["state"])
    assert await core.duplicates() == []
    health = core.supervisor.runners["homeassistant"].health
    assert health["backfill"]["state"] == "done" and health["backfill"]["windows_total"] == 4, health
    assert health["backfill"]["readings"] >= 3, health


async def test_long_term_statistics_reach_back_beyond_the_recorders_states(
    ha: HomeAssistant, core_factory: CoreFactory
) -> None:
    """An energy counter's hourly statistics from before the recorder's oldest state (HA purges states
    after 10 days, statistics never) come in as hourly readings; imported here as HA's own importer
    writes them (source recorder, the entity's statistic id)."""
    plug = await ha.device_of(PLUG_ENERGY)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=20)
    values = [100.0, 100.5, 101.25, 101.25, 102.0]
    stats = [
        {"start": (hour + timedelta(hours=i)).isoformat(), "state": v, "sum": v - values[0]}
        for i, v in enumerate(values)
    ]
    await ha.ws_command(
        "recorder/import_statistics",
        metadata={
            "has_mean": False,
            "has_sum": True,
            "name": None,
            "source": "recorder",
            "statistic_id": PLUG_ENERGY,
            "unit_of_measurement": "kWh",
        },
        stats=stats,
    )

    async def imported() -> bool:
        answer = await ha.ws_command(
            "recorder/statistics_during_period",
            start_time=hour.isoformat(),
            end_time=(hour + timedelta(hours=6)).isoformat(),
            statistic_ids=[PLUG_ENERGY],
            period="hour",
            types=["state"],
        )
        return len(answer.get(PLUG_ENERGY, [])) == len(values)

    deadline = time.monotonic() + 30
    while not await imported():
        assert time.monotonic() < deadline, "HA never stored the imported statistics"
        await asyncio.sleep(0.1)
    recent = await ha.set_lab(PLUG_ENERGY, 150.0)  # a recorder state, long after the statistics

    core = await core_factory({"homeassistant": {"config": ha_config(ha, backfill_days=30)}})
    ends = [hour + timedelta(hours=i + 1) for i in range(len(values))]  # a row's reading: its hour's end
    rows = await core.wait_rows(
        lambda rows: set(ends) | {ts(recent)} <= {r["time"] for r in rows}, plug, "energy", what="statistics"
    )
    got = {r["time"]: r["value"] for r in rows}
    assert [got[t] for t in ends] == values
    assert got[ts(recent)] == 150.0
    assert await core.duplicates() == []
    health = core.supervisor.runners["homeassistant"].health
    assert health["backfill"]["statistics_read"] >= len(values), health


async def test_ha_restart_and_core_restart_lose_nothing_and_repeat_nothing(
    ha: HomeAssistant, core_factory: CoreFactory
) -> None:
    plug = await ha.device_of(PLUG_POWER)
    config = {"homeassistant": {"config": ha_config(ha, backfill_days=1, reconnect_max=2)}}
    core = await core_factory(config)
    sent = [await ha.set_lab(PLUG_POWER, v) for v in (301.0, 302.0)]
    await core.wait_rows(lambda rows: {ts(s) for s in sent} <= {r["time"] for r in rows}, plug, "power")

    await ha.stop()
    runner = core.supervisor.runners["homeassistant"]
    await core.wait_rows(lambda rows: runner.health.get("connected") is False, what="the plugin seeing HA go")
    await ha.start()
    # Right after the start: the plugin may still be waiting to reconnect; the reading must arrive anyway.
    sent += [await ha.set_lab(PLUG_POWER, v) for v in (303.0, 304.0)]
    await core.wait_rows(
        lambda rows: {ts(s) for s in sent} <= {r["time"] for r in rows}, plug, "power", within=60
    )
    # The runner's health is a snapshot refreshed every health_interval: wait for it to show the
    # reconnection instead of reading it the instant the rows are in (it lagged once under load).
    await core.wait_rows(
        lambda rows: runner.health.get("connections", 0) >= 2, what="health showing the reconnection"
    )
    assert runner.health["connections"] >= 2 and runner.crashes == 0, runner.status()

    # The core (and the plugin process) stop; HA changes meanwhile; a new core on the same data dir.
    await stop_core(core)
    sent += [await ha.set_lab(PLUG_POWER, v) for v in (305.0, 306.0)]
    await wait_recorded(ha, PLUG_POWER, sent[-2:])
    core = await core_factory(config)
    sent.append(await ha.set_lab(PLUG_POWER, 307.0))
    rows = await core.wait_rows(
        lambda rows: {ts(s) for s in sent} <= {r["time"] for r in rows}, plug, "power"
    )

    assert await core.duplicates() == []
    counts = per_key(await core.rows())
    assert all(n == 1 for n in counts.values())
    by_time = {r["time"]: r["value"] for r in rows}
    assert [by_time[ts(s)] for s in sent] == [float(s["state"]) for s in sent]  # no loss, right values
    assert all(datetime.now(UTC) - r["time"] < timedelta(days=1, minutes=5) for r in rows)
