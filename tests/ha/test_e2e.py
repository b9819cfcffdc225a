"""End to end: the real core (`.venv/bin/aetherlens demo` on loopback: simulator household + the demo
tariff, its own database on the machine's PostgreSQL) and the integration against it, in this test's
Home Assistant. The statistics' rows must equal `/costs/history` hour by hour, sums included.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from homeassistant.components.recorder import get_instance
from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.const import STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import async_wait_recording_done

from custom_components.aetherlens import statistics as stats
from custom_components.aetherlens.const import CONF_API_KEY, CONF_URL, DOMAIN

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / ".venv" / "bin" / "aetherlens"
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
ZONE = "Europe/Berlin"  # history points carry +01:00; statistics are written at UTC hours
FIRST_PRICING = 150.0  # seconds: the cost job runs a minute after start (its first run precedes data)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(not CORE.exists(), reason="the core's .venv is not built (scripts/setup)"),
]


async def wait_until(what: str, check: Callable[[], Awaitable[Any]], timeout: float) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pg(tool: str, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        tool, "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    assert process.returncode == 0, f"{tool} {' '.join(args)}: {err.decode()}"


@dataclass
class RealCore:
    url: str
    api_key: str
    process: asyncio.subprocess.Process
    log: Path
    database: str

    async def get(self, path: str, **params: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{self.url}/api/v1{path}",
                params=params,
                headers={"Authorization": f"Bearer {self.api_key}"},
            ) as response,
        ):
            assert response.status == 200, (path, response.status, await response.text())
            return await response.json()


@pytest.fixture
async def real_core(socket_enabled: None, tmp_path: Path) -> AsyncGenerator[RealCore]:
    database = f"aetherlens_ha_statistics_e2e_{uuid.uuid4().hex[:10]}"
    await _pg("createdb", database)
    port = _free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AETHERLENS_")},
        "AETHERLENS_DATA_DIR": str(tmp_path / "data"),
        "AETHERLENS_DATABASE_URL": f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{database}",
        "AETHERLENS_SITE__TIMEZONE": ZONE,
        "AETHERLENS_SITE__CURRENCY": "EUR",
    }
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(CORE), "demo", "--host", "127.0.0.1", "--port", str(port),
            stdout=stdout, stderr=stderr, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:

        async def printed_key() -> str | None:
            assert process.returncode is None, f"the core exited: {err.read_text()[-2000:]}"
            found = re.search(r"API key \([^)]*\): (al_\S+)", out.read_text())
            return found.group(1) if found else None

        key = await wait_until("the core's API key on stdout", printed_key, 60)
        yield RealCore(f"http://127.0.0.1:{port}", key, process, err, database)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # a clean stop: the writer drains, the pool closes
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        await _pg("dropdb", "--if-exists", "--force", database)


async def read_statistics(hass: HomeAssistant, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    rows = await get_instance(hass).async_add_executor_job(
        statistics_during_period, hass, EPOCH, None, ids, "hour", None, {"state", "sum"}
    )
    return {i: rows.get(i, []) for i in ids}


def _expected(points: list[dict[str, Any]], key: str) -> list[tuple[datetime, float, float]]:
    """(UTC hour, state, running sum) of every hour from the first point to the last, gaps as 0."""
    by_hour = {datetime.fromisoformat(p["time"]).astimezone(UTC): p[key] for p in points}
    out, total, hour = [], Decimal(0), min(by_hour)
    while hour <= max(by_hour):
        value = by_hour.get(hour, 0.0)
        total += Decimal(repr(value))
        out.append((hour, value, float(total)))
        hour += timedelta(hours=1)
    return out


async def test_statistics_equal_the_real_core_history(hass: HomeAssistant, real_core: RealCore) -> None:
    info = await real_core.get("/info")
    assert info["api_version"] == 1

    async def priced() -> dict[str, Any] | None:
        answer = await real_core.get("/costs/changes", since="0")
        return answer if len(answer["changes"]) > 1 else None

    full = await wait_until("the cost job's first pricing", priced, FIRST_PRICING)
    devices = {c["device_id"] for c in full["changes"]} - {None}
    assert {"sim-h001-rack", "sim-h001-fridge"} <= devices

    await add_cloud_costs(real_core)
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=info["instance_id"],
        data={CONF_URL: real_core.url, CONF_API_KEY: real_core.api_key},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await check_sensors(hass, entry, real_core, info["instance_id"])
    await check_cloud_sensors(hass, real_core, info["instance_id"])

    # The statistics' backfill started in the background at setup.
    importer: stats.StatisticsImporter = hass.data[stats.DATA_IMPORTERS][entry.entry_id]

    async def backfilled() -> bool:
        await async_wait_recording_done(hass)
        return importer.completed >= 1

    await wait_until("the background backfill", backfilled, 120)

    # The core re-prices the open hour every minute: sync until an answer of /costs/changes reports
    # nothing newer than what was written, then the history read right after is what HA holds.
    async def settled() -> bool:
        await importer.async_sync()
        await async_wait_recording_done(hass)
        return not (await real_core.get("/costs/changes", since=str(importer.revision)))["changes"]

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = datetime.fromisoformat(full["changes"][0]["from"])
    for _attempt in range(5):
        await wait_until("a sync with no change after it", settled, 120)
        site = await real_core.get(
            "/costs/history", **{"from": start.isoformat(), "to": end.isoformat(), "resolution": "hour"}
        )
        per_device = {
            d: await real_core.get(
                "/costs/history",
                **{"from": start.isoformat(), "to": end.isoformat(), "resolution": "hour", "device_id": d},
            )
            for d in sorted(devices)
        }
        if not (await real_core.get("/costs/changes", since=str(importer.revision)))["changes"]:
            break  # nothing was re-priced while the history was read
    assert importer.completed >= 1 and importer.revision >= full["revision"]

    want: dict[str, list[tuple[datetime, float, float]]] = {
        "aetherlens:cost_site": _expected(site["points"], "cost")
    }
    for device, history in per_device.items():
        slug = importer.slugs[device]
        want[stats.energy_statistic_id(slug)] = _expected(history["points"], "kwh")
        want[stats.cost_statistic_id(slug)] = _expected(history["points"], "cost")
    got = await read_statistics(hass, set(want))
    for statistic_id, rows in want.items():
        written = got[statistic_id]
        assert [datetime.fromtimestamp(r["start"], UTC) for r in written] == [h for h, _, _ in rows], (
            statistic_id
        )
        assert [r["state"] for r in written] == pytest.approx([s for _, s, _ in rows]), statistic_id
        assert [r["sum"] for r in written] == pytest.approx([t for _, _, t in rows]), statistic_id
    # The site's total over the history equals the sum of its points (the bill so far, to the cent).
    total = sum(Decimal(repr(p["cost"])) for p in site["points"])
    assert got["aetherlens:cost_site"][-1]["sum"] == pytest.approx(float(total))
    assert len(got["aetherlens:cost_site"]) >= 48  # the simulator's 48 h of backfill, priced
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.entry_id not in hass.data[stats.DATA_IMPORTERS]


def _entity(hass: HomeAssistant, unique_id: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id("sensor", DOMAIN, unique_id)
    assert entity_id is not None, f"no sensor {unique_id}"
    return entity_id


def _state(hass: HomeAssistant, entity_id: str) -> float | str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    try:
        return float(state.state)
    except ValueError:
        return state.state


async def add_cloud_costs(core: RealCore) -> None:
    """What a cost plugin stores (its path into the table is tested in the core's tests): today's
    estimate, a closed day of this month where there is one, the forecast for the rest, a budget."""
    today = datetime.now(UTC).date()
    rows = [(today, "1.25", "actual", True)]
    if today.day > 1:
        rows.append((today - timedelta(days=1), "2.50", "actual", False))
    tomorrow = today + timedelta(days=1)
    if tomorrow.month == today.month:
        rows.append((tomorrow, "3.00", "forecast", False))
    values = ", ".join(
        f"('{day}', 'aws', '123456789012', 'Amazon EC2', {amount}, 'USD', '{kind}', {estimated})"
        for day, amount, kind, estimated in rows
    )
    await _pg(
        "psql", "-d", core.database, "-v", "ON_ERROR_STOP=1", "-c",
        "INSERT INTO cloud_costs (day, provider, account, service, amount, currency, kind, estimated) "
        f"VALUES {values}; INSERT INTO cloud_budgets (provider, account, amount, currency, source) "
        "VALUES ('aws', '123456789012', 40, 'USD', 'aws_cost')",
    )  # fmt: skip


async def check_cloud_sensors(hass: HomeAssistant, core: RealCore, instance: str) -> None:
    """The account's sensors equal the core's /cloud-costs/summary."""
    (account,) = (await core.get("/cloud-costs/summary"))["items"]
    assert (account["provider"], account["account"], account["currency"]) == ("aws", "123456789012", "USD")
    assert account["estimated_today"] == pytest.approx(1.25) and account["budget"] == pytest.approx(40)
    prefix = f"{instance}_cloud_aws:123456789012"
    for key, field in (
        ("cloud_month_to_date", "month_to_date"),
        ("cloud_today", "estimated_today"),
        ("cloud_budget", "budget"),
        ("cloud_forecast", "forecast_month"),
    ):
        expected = account[field]
        got = _state(hass, _entity(hass, f"{prefix}_{key}"))
        if expected is None:
            assert got == STATE_UNKNOWN, key
        else:
            assert got == pytest.approx(expected, abs=1e-9), key


async def check_sensors(hass: HomeAssistant, entry: MockConfigEntry, core: RealCore, instance: str) -> None:
    """Sensor states equal the core's answers: live values exactly (the stream delivers each reading,
    so the state catches up with /metrics/current), costs after a poll to the cent (fixed charges
    accrue by the second between the poll and the question)."""
    rack = "sim-h001-rack"
    coordinator = entry.runtime_data.coordinator
    for metric in ("power", "energy"):
        entity_id = _entity(hass, f"{instance}_{rack}_{metric}")
        current = await core.get("/metrics/current")
        (device,) = [d for d in current["devices"] if d["device_id"] == rack]
        newest = datetime.fromisoformat(device["metrics"][metric]["time"])

        # The simulator keeps writing, so "equal to /metrics/current right now" races the next reading.
        # Instead: HA has caught up with (at least) the reading the core had a moment ago, and it holds
        # exactly the value the core stored for that reading.
        async def caught_up(
            entity_id: str = entity_id, metric: str = metric, newest: datetime = newest
        ) -> bool:
            held = coordinator.data.metrics.get(rack, {}).get(metric)
            if held is None or held.time < newest:
                return False
            stored = await core.get(
                "/metrics",
                device_id=rack,
                metric_type=metric,
                resolution="raw",
                **{"from": held.time.isoformat(), "to": (held.time + timedelta(milliseconds=1)).isoformat()},
            )
            values = [p["value"] for p in stored["points"]]
            # HA writes a float state with 15 significant digits (412.68376064787003 -> "412.68376064787").
            return (
                bool(values)
                and values[-1] == held.value
                and _state(hass, entity_id) == pytest.approx(held.value, rel=1e-14)
            )

        await wait_until(f"{entity_id} to equal the core's stored reading", caught_up, 60)

    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done()
    summary = await core.get("/costs/summary")
    assert summary["tariff_id"] is not None
    for key, field in (
        ("month_to_date", "month_to_date"),
        ("site_cost_today", "today"),
        ("carbon_today", "carbon_today_kg"),
    ):
        assert _state(hass, _entity(hass, f"{instance}_{key}")) == pytest.approx(summary[field], abs=0.01), (
            key
        )
    assert _state(hass, _entity(hass, f"{instance}_current_price")) == summary["current_price"]
    assert _state(hass, _entity(hass, f"{instance}_current_period")) == summary["current_period"]
    today = await core.get(
        "/costs/devices", **{"from": summary["day_start"], "to": datetime.now(UTC).isoformat()}
    )
    costs = {i["device_id"]: i["cost"] for i in today["items"]}
    rack_today = _state(hass, _entity(hass, f"{instance}_{rack}_cost_today"))
    assert rack_today == pytest.approx(costs[rack], abs=0.01)
