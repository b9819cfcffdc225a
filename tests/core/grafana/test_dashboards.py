"""Every Grafana panel's SQL runs against the real schema, as Grafana's read-only role, and returns rows.

The dashboards in grafana/dashboards/ are plain JSON with raw SQL; Grafana expands its macros
(``$__timeFilter``, ``$__timeGroupAlias``, ...) and template variables before sending the query. This test
expands them the way Grafana's PostgreSQL datasource does, for a short range (raw readings), a month
(hourly rollups) and four months (daily rollups), on a database seeded through the product's own jobs
(rollups, cost job), on plain PostgreSQL and, where installed, TimescaleDB.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import yaml
from dbtest import PLAIN, pause_scheduled_jobs

from aetherlens.costs import service
from aetherlens.costs.engine import cycle_bounds
from aetherlens.costs.job import CostJob
from aetherlens.costs.tariff import parse_tariff
from aetherlens.db.capabilities import Capabilities, probe
from aetherlens.db.migrations import apply_migrations
from aetherlens.db.rollups import RollupJob, mark_pending

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "aetherlens.yaml"
PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "aetherlens.yaml"
DEVICES = {"tv": "Living-room TV", "rack": "Server rack"}
TARIFF: dict[str, Any] = {
    "name": "Grafana TOU",
    "currency": "EUR",
    "timezone": "Europe/Berlin",
    "billing_cycle_day": 5,
    "periods": {"peak": {"price": "0.40", "carbon_kg_per_kwh": "0.4"}, "off": {"price": "0.20"}},
    "schedule": [{"period": "peak", "hours": "17-21"}, {"period": "off", "hours": "21-17"}],
    "fixed": {"per_day": "0.50"},
}
RANGES = {"one day (raw)": 1, "a month (hourly rollups)": 30, "four months (daily rollups)": 120}


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            yield f"{path.stem}: {panel['title']}", panel


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def expand(sql: str, start: dt.datetime, end: dt.datetime, variables: dict[str, list[str]]) -> str:
    """Grafana's PostgreSQL macros and multi-value variables (quoted, comma-joined), as it sends them."""
    interval = max(60, int((end - start).total_seconds()) // 1000)  # about 1000 points, at least 1 min

    def rfc3339(t: dt.datetime) -> str:
        return _quote(t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def group(match: re.Match[str]) -> str:
        column = match.group(2).strip()
        text = f"floor(extract(epoch from {column})/{interval})*{interval}"
        return text + (' AS "time"' if match.group(1) == "Alias" else "")

    sql = re.sub(r"\$__timeGroup(Alias)?\(([^,]+),\s*\$__interval\)", group, sql)
    between = f"BETWEEN {rfc3339(start)} AND {rfc3339(end)}"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} {between}", sql)
    sql = sql.replace("$__timeFrom()", rfc3339(start)).replace("$__timeTo()", rfc3339(end))
    for name, values in variables.items():
        sql = re.sub(rf"\$\{{?{name}\}}?\b", ",".join(_quote(v) for v in values), sql)
    assert "$" not in sql, f"unexpanded macro or variable left: {sql}"
    return sql


async def seed(conn: asyncpg.Connection, caps: Capabilities, now: dt.datetime) -> None:
    """120 days of 15-minute power and energy readings for two devices, then the product's jobs."""
    for device_id, name in DEVICES.items():
        await conn.execute("INSERT INTO devices (id, name, type) VALUES ($1, $2, 'plug')", device_id, name)
    await service.create_tariff(conn, TARIFF)
    start = (now - dt.timedelta(days=121)).replace(minute=0, second=0, microsecond=0)
    rows: list[tuple[dt.datetime, str, str, float]] = []
    counters = dict.fromkeys(DEVICES, 0.0)
    t, i = start, 0
    while t <= now:
        for n, device_id in enumerate(DEVICES):
            watts = 80.0 + 40 * n + 30 * math.sin(i / 9 + n)
            rows.append((t, device_id, "power", watts))
            rows.append((t, device_id, "energy", counters[device_id]))
            counters[device_id] += watts / 4000  # kWh in the next 15 minutes
        t, i = t + dt.timedelta(minutes=15), i + 1
    await conn.copy_records_to_table(
        "metrics", records=rows, columns=["time", "device_id", "metric_type", "value"]
    )
    await conn.execute(
        "INSERT INTO metrics_latest (device_id, metric_type, time, value)"
        " SELECT DISTINCT ON (device_id, metric_type) device_id, metric_type, time, value"
        " FROM metrics ORDER BY device_id, metric_type, time DESC"
    )
    await mark_pending(conn, {r[0] for r in rows})
    await RollupJob(caps).run_until_idle(conn)
    await CostJob().run_once(conn, now=now)
    # Cloud spend as the cloud plugins record it: actual days of this and last month, and a forecast
    # for the rest of this month.
    today = now.date()
    first = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    day = first
    while day < today:
        for provider, account, service_name, amount in (
            ("aws", "123456789012", "Amazon EC2", "3.10"),
            ("aws", "123456789012", "Amazon S3", "0.42"),
            ("azure", "lab-subscription", "Virtual Machines", "2.75"),
        ):
            await conn.execute(
                "INSERT INTO cloud_costs (day, provider, account, service, amount, currency)"
                " VALUES ($1, $2, $3, $4, $5::numeric, 'USD')",
                day,
                provider,
                account,
                service_name,
                amount,
            )
        day += dt.timedelta(days=1)
    await conn.execute(
        "INSERT INTO cloud_costs (day, provider, account, amount, currency, kind)"
        " SELECT d::date, 'aws', '123456789012', 3.5, 'USD', 'forecast'"
        " FROM generate_series($1::date, (date_trunc('month', $1::date) + interval '1 month - 1 day')::date,"
        " interval '1 day') AS d",
        today,
    )


async def check_every_panel(conn: asyncpg.Connection, now: dt.datetime) -> None:
    variables = {
        "device": list(DEVICES),
        "provider": ["aws", "azure"],
        "currency": ["EUR"],
    }
    checked = 0
    async with conn.transaction():
        # Grafana connects as the read-only role: every table and view a panel reads must be granted.
        await conn.execute("SET LOCAL ROLE aetherlens_readonly")
        for path in DASHBOARDS:
            for variable in json.loads(path.read_text(encoding="utf-8"))["templating"]["list"]:
                name = variable["name"]
                assert await conn.fetch(variable["query"]), f"{path.stem}: variable {name} is empty"
        for label, panel in panels():
            for target in panel["targets"]:
                for range_name, days in RANGES.items():
                    sql = expand(target["rawSql"], now - dt.timedelta(days=days), now, variables)
                    rows = await conn.fetch(sql)
                    assert rows, f"{label} returned no rows over {range_name}:\n{sql}"
                    if target["format"] == "time_series":
                        assert "time" in set(rows[0].keys()), f"{label}: a time series needs a 'time' column"
                        values = [v for k, v in rows[0].items() if k not in ("time", "metric")]
                        assert values and all(isinstance(v, int | float) for v in values), label
                    checked += 1
    assert checked >= 3 * 15, checked


@pytest.fixture
async def plain_conn(migrated_database: Any) -> Any:
    conn = await asyncpg.connect(await migrated_database())
    yield conn
    await conn.close()


async def test_every_panel_returns_rows_on_plain_postgresql(plain_conn: asyncpg.Connection) -> None:
    now = dt.datetime.now(dt.UTC)
    await seed(plain_conn, PLAIN, now)
    await check_every_panel(plain_conn, now)


@pytest.mark.timescaledb
async def test_every_panel_returns_rows_on_timescaledb(fresh_timescaledb: Any) -> None:
    conn = await asyncpg.connect(await fresh_timescaledb())
    try:
        caps = await probe(conn)
        await apply_migrations(conn, caps)
        await pause_scheduled_jobs(conn)
        now = dt.datetime.now(dt.UTC)
        await seed(conn, caps, now)
        await check_every_panel(conn, now)
    finally:
        await conn.close()


async def test_dashboard_totals_equal_the_api(plain_conn: asyncpg.Connection) -> None:
    """The bill dashboard's 'today' and 'cycle to date' are the core's own numbers (/costs/summary)."""
    now = dt.datetime.now(dt.UTC)
    await seed(plain_conn, PLAIN, now)
    bill = json.loads((ROOT / "grafana" / "dashboards" / "bill.json").read_text(encoding="utf-8"))
    by_title = {p["title"]: p["targets"][0]["rawSql"] for p in bill["panels"]}
    today = await plain_conn.fetchval(expand(by_title["Cost today (${currency})"], now, now, {}))
    to_date = await plain_conn.fetchval(expand(by_title["Billing cycle to date (${currency})"], now, now, {}))
    cycle = await plain_conn.fetchrow("SELECT * FROM dashboard_billing_cycle")
    summary = await service.history(plain_conn, None, cycle["day_start"], now, "hour")
    assert today == pytest.approx(sum(p["cost"] for p in summary["points"]), abs=1e-9)
    history = await service.history(plain_conn, None, cycle["cycle_start"], now, "hour")
    assert to_date == pytest.approx(sum(p["cost"] for p in history["points"]), abs=1e-9)
    assert to_date > today > 0
    # The SQL view's cycle is the bill engine's (the view re-states it for Grafana; they must not drift):
    # day 5 of the month at local midnight in Berlin, whatever DST change lies between two cycles.
    tariff = parse_tariff(TARIFF)
    assert (cycle["cycle_start"], cycle["cycle_end"]) == cycle_bounds(tariff, now)
    before = cycle["cycle_start"] - dt.timedelta(hours=1)
    assert cycle["previous_cycle_start"] == cycle_bounds(tariff, before)[0]
    local = cycle["cycle_start"].astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.day, local.hour, local.minute) == (5, 0, 0)


def test_provisioning_points_every_panel_at_the_datasource() -> None:
    datasources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    (source,) = datasources
    assert source["user"] == "aetherlens_readonly" and source["jsonData"]["database"] == "aetherlens"
    assert source["type"] == "grafana-postgresql-datasource"
    providers = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    assert providers[0]["options"]["path"].endswith("/aetherlens")
    assert len(DASHBOARDS) == 3
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == source["uid"], (path.name, variable["name"])
    assert len(uids) == len(DASHBOARDS)
    for label, panel in panels():
        assert panel["datasource"]["uid"] == source["uid"], label
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"]), label
