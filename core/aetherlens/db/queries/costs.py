"""The cost engine's tables: the one module that reads and writes them.

``cost_energy_slots`` / ``cost_demand_windows`` (stored energy per slot and site demand per window),
``cost_energy_state`` (what they were derived with, and how far), ``cost_pending`` (hours touched by
writes, marked by the writer in the data's transaction), ``cost_job_state`` (each tariff's pricing
signature and watermark), ``cost_calculations`` (cost per device, tariff and slot) and its rollups
``cost_hourly`` (UTC hours, each row with the revision of its last change) and ``cost_daily`` (the
tariff's local days); ``cost_hourly_removed`` and ``cost_history_activations`` (what else changed the
served history, and at which revision).

Money and energy are ``numeric`` and travel as ``Decimal``: sums are exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Final

import asyncpg

COST_ROLLUP_LOCK_KEY: Final = 0x4165_7468_436F_7374  # "AethCost": one rollup refresh at a time
COUNTER_TYPES: Final = ("energy", "energy_exported")
ENERGY_TYPES: Final = ("energy", "energy_exported", "power")

# --- cost_pending -----------------------------------------------------------------------------------
MARK_PENDING_SQL: Final = """
INSERT INTO cost_pending (bucket) SELECT unnest($1::timestamptz[])
ON CONFLICT (bucket) DO UPDATE SET marked_at = now()
"""


type Mark = tuple[dt.datetime, str]  # (hour, row version)


async def pending_marks(conn: asyncpg.Connection) -> list[Mark]:
    """Every pending hour with the version of its mark (a writer's re-mark changes it)."""
    rows = await conn.fetch("SELECT bucket, xmin::text AS version FROM cost_pending ORDER BY bucket")
    return [(r["bucket"], r["version"]) for r in rows]


async def consume_marks(conn: asyncpg.Connection, marks: Sequence[Mark]) -> None:
    """Delete the marks that were read, unless a writer marked the hour again meanwhile (as in
    rollup_pending: a re-mark whose data the job did not see has a new row version)."""
    if marks:
        await conn.execute(
            "DELETE FROM cost_pending AS p USING unnest($1::timestamptz[], $2::text[]) AS s (b, v)"
            " WHERE p.bucket = s.b AND p.xmin::text = s.v",
            [b for b, _ in marks],
            [v for _, v in marks],
        )


# --- raw readings the derivation needs -----------------------------------------------------------------
async def first_energy_reading(conn: asyncpg.Connection) -> dt.datetime | None:
    value: dt.datetime | None = await conn.fetchval(
        "SELECT min(time) FROM metrics WHERE metric_type = ANY($1::text[])", list(ENERGY_TYPES)
    )
    return value


async def earliest_previous_reading(
    conn: asyncpg.Connection, before: dt.datetime, lookback: dt.timedelta
) -> dt.datetime | None:
    """The earliest of each energy series' last reading before ``before`` (within ``lookback``).

    A reading that arrives late closes the interval that started at its series' previous reading, which
    is priced where it starts: that is how far back a late write reaches. One index probe per series.
    """
    value: dt.datetime | None = await conn.fetchval(
        "SELECT min(p.time) FROM metrics_latest AS l, LATERAL ("
        "  SELECT m.time FROM metrics AS m"
        "  WHERE m.device_id = l.device_id AND m.metric_type = l.metric_type"
        "    AND m.time < $1 AND m.time >= $2 ORDER BY m.time DESC LIMIT 1) AS p"
        " WHERE l.metric_type = ANY($3::text[])",
        before,
        before - lookback,
        list(ENERGY_TYPES),
    )
    return value


# --- cost_energy_state --------------------------------------------------------------------------------
async def energy_state(conn: asyncpg.Connection) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT signature, slot_minutes, derived_to FROM cost_energy_state"
    )
    return row


async def set_energy_state(
    conn: asyncpg.Connection, signature: str, slot_minutes: int, derived_to: dt.datetime
) -> None:
    await conn.execute(
        "INSERT INTO cost_energy_state (signature, slot_minutes, derived_to) VALUES ($1, $2, $3)"
        " ON CONFLICT (singleton) DO UPDATE SET signature = $1, slot_minutes = $2, derived_to = $3,"
        " updated_at = now()",
        signature,
        slot_minutes,
        derived_to,
    )


# --- cost_energy_slots / cost_demand_windows ----------------------------------------------------------
async def replace_energy(
    conn: asyncpg.Connection,
    start: dt.datetime,
    end: dt.datetime,
    slots: Iterable[tuple[dt.datetime, str, Decimal, Decimal]],
    windows: Iterable[tuple[dt.datetime, int, Decimal]],
    gaps: Iterable[tuple[str, str, dt.datetime, dt.datetime, Decimal | None]],
    meter_device: str | None,
) -> None:
    """Replace the stored slots, windows and gaps in ``[start, end)`` (idempotent: never adds twice);
    the site's slots are summed from the devices' (or taken from the meter's) in the same transaction."""
    async with conn.transaction():
        await conn.execute("DELETE FROM cost_energy_slots WHERE slot >= $1 AND slot < $2", start, end)
        await conn.execute("DELETE FROM cost_site_slots WHERE slot >= $1 AND slot < $2", start, end)
        await conn.execute("DELETE FROM cost_demand_windows WHERE start >= $1 AND start < $2", start, end)
        await conn.execute("DELETE FROM cost_energy_gaps WHERE t0 >= $1 AND t0 < $2", start, end)
        await conn.copy_records_to_table(
            "cost_energy_gaps", records=list(gaps), columns=["device_id", "metric_type", "t0", "t1", "kwh"]
        )
        await conn.copy_records_to_table(
            "cost_energy_slots",
            records=list(slots),
            columns=["slot", "device_id", "import_kwh", "export_kwh"],
        )
        await conn.copy_records_to_table(
            "cost_demand_windows", records=list(windows), columns=["start", "window_minutes", "kw"]
        )
        await conn.execute(
            "INSERT INTO cost_site_slots (slot, import_kwh, export_kwh)"
            " SELECT slot, sum(import_kwh), sum(export_kwh) FROM cost_energy_slots"
            " WHERE slot >= $1 AND slot < $2 AND ($3::text IS NULL OR device_id = $3) GROUP BY slot",
            start,
            end,
            meter_device,
        )


async def device_slots(
    conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT slot, device_id, import_kwh, export_kwh FROM cost_energy_slots"
        " WHERE slot >= $1 AND slot < $2",
        start,
        end,
    )
    return rows


async def site_slots(conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime) -> list[asyncpg.Record]:
    """The site's kWh per slot (the site cost_energy_state's signature names)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT slot, import_kwh, export_kwh FROM cost_site_slots WHERE slot >= $1 AND slot < $2",
        start,
        end,
    )
    return rows


async def demand_windows(
    conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime, windows: Sequence[int]
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT start, window_minutes, kw FROM cost_demand_windows"
        " WHERE window_minutes = ANY($1::int[]) AND start >= $2 AND start < $3",
        list(windows),
        start,
        end,
    )
    return rows


async def energy_gaps(
    conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime, device_id: str | None
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT device_id, metric_type, t0, t1, kwh FROM cost_energy_gaps WHERE t0 >= $1 AND t0 < $2"
        " AND ($3::text IS NULL OR device_id = $3)",
        start,
        end,
        device_id,
    )
    return rows


async def first_stored_slot(conn: asyncpg.Connection) -> dt.datetime | None:
    value: dt.datetime | None = await conn.fetchval("SELECT min(slot) FROM cost_energy_slots")
    return value


# --- cost_job_state -----------------------------------------------------------------------------------
async def job_state(conn: asyncpg.Connection, tariff_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT watermark, versions_sig FROM cost_job_state WHERE tariff_id = $1", tariff_id
    )
    return row


async def set_job_state(
    conn: asyncpg.Connection, tariff_id: str, watermark: dt.datetime, signature: str
) -> None:
    await conn.execute(
        "INSERT INTO cost_job_state (tariff_id, watermark, versions_sig) VALUES ($1, $2, $3)"
        " ON CONFLICT (tariff_id) DO UPDATE SET watermark = $2, versions_sig = $3, updated_at = now()",
        tariff_id,
        watermark,
        signature,
    )


# --- cost_calculations and its rollups ----------------------------------------------------------------
COST_COLUMNS: Final = ["time", "device_id", "tariff_id", "kwh", "cost", "period", "carbon_kg", "estimated"]


async def replace_costs(
    conn: asyncpg.Connection,
    tariff_id: str,
    start: dt.datetime,
    end: dt.datetime,
    records: Sequence[tuple[Any, ...]],
) -> None:
    """Replace the tariff's cost rows in ``[start, end)`` with ``records`` (COST_COLUMNS order)."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM cost_calculations WHERE tariff_id = $1 AND time >= $2 AND time < $3",
            tariff_id,
            start,
            end,
        )
        await conn.copy_records_to_table("cost_calculations", records=records, columns=COST_COLUMNS)


async def delete_tariff_costs(conn: asyncpg.Connection, tariff_id: str) -> None:
    """Every cost row of a deleted tariff, its rollups and its job state (in the caller's transaction)."""
    await conn.execute("DELETE FROM cost_calculations WHERE tariff_id = $1", tariff_id)
    await conn.execute("DELETE FROM cost_hourly WHERE tariff_id = $1", tariff_id)
    await conn.execute("DELETE FROM cost_hourly_removed WHERE tariff_id = $1", tariff_id)
    await conn.execute("DELETE FROM cost_history_activations WHERE tariff_id = $1", tariff_id)
    await conn.execute("DELETE FROM cost_daily WHERE tariff_id = $1", tariff_id)
    await conn.execute("DELETE FROM cost_job_state WHERE tariff_id = $1", tariff_id)


# cost_hourly is upserted, not deleted and inserted: a row whose numbers did not change keeps its revision
# (033), so /costs/changes reports only what re-pricing really changed. Rows the range no longer holds go
# to cost_hourly_removed with a fresh revision (their series changed there too).
_HOURLY_REFRESH: Final = """
WITH fresh AS (
    SELECT date_trunc('hour', time, 'UTC') AS bucket, device_id, tariff_id, sum(kwh) AS kwh,
           sum(cost) AS cost, coalesce(sum(carbon_kg), 0) AS carbon_kg, bool_or(estimated) AS estimated,
           count(*) AS count
    FROM cost_calculations WHERE tariff_id = $1 AND time >= $2 AND time < $3
    GROUP BY 1, device_id, tariff_id
), gone AS (
    DELETE FROM cost_hourly AS h WHERE h.tariff_id = $1 AND h.bucket >= $2 AND h.bucket < $3
      AND NOT EXISTS (SELECT 1 FROM fresh AS f WHERE f.bucket = h.bucket AND f.device_id = h.device_id)
    RETURNING h.bucket, h.device_id, h.tariff_id
), removed AS (
    INSERT INTO cost_hourly_removed (bucket, device_id, tariff_id)
    SELECT bucket, device_id, tariff_id FROM gone
    ON CONFLICT (device_id, tariff_id, bucket) DO UPDATE SET revision = nextval('cost_hourly_revision_seq')
)
INSERT INTO cost_hourly (bucket, device_id, tariff_id, kwh, cost, carbon_kg, estimated, count)
SELECT bucket, device_id, tariff_id, kwh, cost, carbon_kg, estimated, count FROM fresh
ON CONFLICT (device_id, tariff_id, bucket) DO UPDATE SET
    revision = CASE
        WHEN (cost_hourly.kwh, cost_hourly.cost, cost_hourly.carbon_kg)
             IS DISTINCT FROM (EXCLUDED.kwh, EXCLUDED.cost, EXCLUDED.carbon_kg)
        THEN nextval('cost_hourly_revision_seq') ELSE cost_hourly.revision END,
    kwh = EXCLUDED.kwh, cost = EXCLUDED.cost, carbon_kg = EXCLUDED.carbon_kg,
    estimated = EXCLUDED.estimated, count = EXCLUDED.count
WHERE (cost_hourly.kwh, cost_hourly.cost, cost_hourly.carbon_kg, cost_hourly.estimated, cost_hourly.count)
      IS DISTINCT FROM (EXCLUDED.kwh, EXCLUDED.cost, EXCLUDED.carbon_kg, EXCLUDED.estimated, EXCLUDED.count)
"""
_DAILY_REFRESH: Final = (
    "DELETE FROM cost_daily WHERE tariff_id = $1 AND bucket >= $2 AND bucket < $3",
    """
    INSERT INTO cost_daily (bucket, device_id, tariff_id, kwh, cost, carbon_kg, estimated, count)
    SELECT date_trunc('day', time, $4::text), device_id, tariff_id, sum(kwh), sum(cost),
           coalesce(sum(carbon_kg), 0), bool_or(estimated), count(*)
    FROM cost_calculations WHERE tariff_id = $1 AND time >= $2 AND time < $3
    GROUP BY 1, device_id, tariff_id
    """,
)


async def refresh_cost_rollups(
    conn: asyncpg.Connection,
    tariff_id: str,
    hours: Sequence[tuple[dt.datetime, dt.datetime]],
    days: Sequence[tuple[dt.datetime, dt.datetime]],
    zone: str,
) -> None:
    """Rebuild cost_hourly over whole UTC-hour ranges and cost_daily over whole local-day ranges."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", COST_ROLLUP_LOCK_KEY)
        # cost_hourly is filled in the job's run, before any ANALYZE: the planner then takes it for empty
        # and joins the refresh's rows to it in a nested loop, quadratic in the rows of the range (a
        # first pass over months of history never finished). Hash joins are linear whatever the estimate.
        await conn.execute("SET LOCAL enable_nestloop = off")
        for start, end in hours:
            await conn.execute(_HOURLY_REFRESH, tariff_id, start, end)
        for start, end in days:
            await conn.execute(_DAILY_REFRESH[0], tariff_id, start, end)
            await conn.execute(_DAILY_REFRESH[1], tariff_id, start, end, zone)


async def device_totals(
    conn: asyncpg.Connection, tariff_id: str, start: dt.datetime, end: dt.datetime
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT device_id, sum(kwh) AS kwh, sum(cost) AS cost, coalesce(sum(carbon_kg), 0) AS carbon_kg,"
        " bool_or(estimated) AS estimated FROM cost_calculations"
        " WHERE tariff_id = $1 AND time >= $2 AND time < $3 GROUP BY device_id ORDER BY device_id",
        tariff_id,
        start,
        end,
    )
    return rows


_HISTORY_SQL: Final = {
    table: (
        f"SELECT bucket, sum(kwh) AS kwh, sum(cost) AS cost, sum(carbon_kg) AS carbon_kg FROM {table}"
        " WHERE tariff_id = $1 AND bucket >= $2 AND bucket < $3"
        " AND ($4::text IS NULL OR device_id = $4) GROUP BY bucket ORDER BY bucket"
    )
    for table in ("cost_hourly", "cost_daily")
}


async def history(
    conn: asyncpg.Connection,
    resolution: str,
    tariff_id: str,
    start: dt.datetime,
    end: dt.datetime,
    device_id: str | None,
) -> list[asyncpg.Record]:
    """Cost points per UTC hour (``hour``) or per local day of the tariff (``day``)."""
    table = {"hour": "cost_hourly", "day": "cost_daily"}[resolution]
    rows: list[asyncpg.Record] = await conn.fetch(_HISTORY_SQL[table], tariff_id, start, end, device_id)
    return rows


# --- what changed in the hourly history (033) ------------------------------------------------------------
_CHANGED_SQL: Final = """
SELECT device_id, min(bucket) AS first FROM (
    SELECT device_id, bucket FROM cost_hourly WHERE tariff_id = $1 AND revision > $2
    UNION ALL
    SELECT device_id, bucket FROM cost_hourly_removed WHERE tariff_id = $1 AND revision > $2 AND $3
) AS changed GROUP BY device_id ORDER BY device_id
"""
_HIGH_WATER_SQL: Final = """
SELECT coalesce(greatest(
    (SELECT max(revision) FROM cost_hourly WHERE tariff_id = $1),
    (SELECT max(revision) FROM cost_hourly_removed WHERE tariff_id = $1),
    (SELECT revision FROM cost_history_activations WHERE tariff_id = $1)), 0)
"""


async def history_changes(
    conn: asyncpg.Connection, tariff_id: str, since: int
) -> tuple[int, list[tuple[str, dt.datetime]]]:
    """The tariff's revision high-water mark and, per device, the earliest hour changed after ``since``.

    Everything counts as changed when the tariff became the active one after ``since`` (its rows are
    then what the history serves); a full listing leaves out removed rows (nothing is there to read).
    One snapshot for the mark and the changes, so nothing committed between them is skipped.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        mark: int = await conn.fetchval(_HIGH_WATER_SQL, tariff_id)
        activated = await conn.fetchval(
            "SELECT revision FROM cost_history_activations WHERE tariff_id = $1", tariff_id
        )
        if activated is not None and activated > since:
            since = 0
        rows = await conn.fetch(_CHANGED_SQL, tariff_id, since, since > 0)
    return mark, [(r["device_id"], r["first"]) for r in rows]
