"""Rollups ``metrics_hourly`` / ``metrics_daily`` on both storage paths (the cost rollups belong to
``aetherlens.db.queries.costs``).

Buckets are UTC hours and UTC days. Writers record every hour their rows touch in ``rollup_pending`` in
the same transaction as the rows (``mark_pending`` here, or the writer's own statement of the same
form). ``RollupJob`` then re-aggregates exactly those hours and the days containing them, so late and
backfilled data reach the rollups however old they are:

* plain PostgreSQL: the hours are re-aggregated from ``metrics`` and their days from ``metrics_hourly``
  (delete + insert of those buckets, all in one transaction that also consumes the pending rows);
* TimescaleDB: ``CALL refresh_continuous_aggregate`` over exactly those ranges, then the pending rows
  are deleted unless a writer touched them again meanwhile. The current (open) UTC day is refreshed in
  ``metrics_daily`` at most every ``open_day_refresh_interval`` seconds, because each refresh
  re-aggregates the whole day from raw rows.

Counter increase (column ``increase``, NULL for non-counter types): the reset-aware increase inside the
bucket, defined in migrations/012_rollup_functions.sql — samples in (time, value) order, each consecutive
pair adds ``v_i - v_{i-1}`` when that is >= 0, else ``v_i`` (a reset to 0); a single sample adds 0. A
day's increase is therefore its hours' increases plus the (reset-aware) steps between consecutive
hours of that day, which is how the plain path computes it from ``metrics_hourly``; TimescaleDB computes
it from the raw rows with the same function. Both give the same numbers.

A bucket that cannot be aggregated (a value the float8 arithmetic cannot carry, e.g. ``avg()`` of a
1e200 row written before ingest bounded values) fails alone on the plain path: the pass is retried
bucket by bucket and, inside a failing bucket, series by series (savepoints), so every other series
is rolled up. The failing (bucket, series) is logged, counted (``aetherlens_rollup_failures_total``)
and recorded in ``core_state`` under ``rollup_failures``, which ``/health`` reports as degraded with the
series named; each later pass re-marks the recorded buckets, so a failure clears itself once the
offending rows are deleted or fixed. TimescaleDB materializes a refresh window whole: after a failed
refresh the buckets are refreshed one by one and each failing one is recorded with the series that
cannot be aggregated (probed one by one); a neighbouring bucket whose refresh reaches the same
invalidated range fails with it and is recorded without a series (``*``); all other buckets go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import orjson
from prometheus_client import Counter

from aetherlens import timebuckets
from aetherlens.db.migrations import CapabilitiesLike, rollup_mode
from aetherlens.db.queries.costs import MARK_PENDING_SQL
from aetherlens.errors import DatabaseError, ValidationError

log = logging.getLogger(__name__)

HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)
ROLLUP_LOCK_KEY: Final = 0x4165_7468_526F_6C6C  # "AethRoll": one rollup job at a time per database

_MARK_SQL: Final = """
INSERT INTO rollup_pending (bucket) SELECT unnest($1::timestamptz[])
ON CONFLICT (bucket) DO UPDATE SET marked_at = now()
"""

# Rows locked by a writer that is still committing are skipped (SKIP LOCKED): the next run gets them,
# after their data is visible.
_CLAIM_SQL: Final = """
DELETE FROM rollup_pending WHERE bucket IN (
    SELECT bucket FROM rollup_pending ORDER BY bucket LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING bucket
"""

_HOURLY_DELETE_SQL: Final = "DELETE FROM metrics_hourly WHERE bucket = ANY($1::timestamptz[])"
_HOURLY_INSERT_SQL: Final = """
INSERT INTO metrics_hourly
    (bucket, device_id, metric_type, avg, min, max, sum, count, first, last, increase)
SELECT
    h.bucket, m.device_id, m.metric_type,
    avg(m.value), min(m.value), max(m.value), sum(m.value), count(*),
    (array_agg(m.value ORDER BY m.time, m.value))[1],
    (array_agg(m.value ORDER BY m.time DESC, m.value DESC))[1],
    CASE WHEN aetherlens_is_counter(m.metric_type) THEN
        aetherlens_counter_increase(
            array_agg(m.time) FILTER (WHERE aetherlens_is_counter(m.metric_type)),
            array_agg(m.value) FILTER (WHERE aetherlens_is_counter(m.metric_type)))
    END
FROM unnest($1::timestamptz[]) AS h (bucket)
JOIN metrics AS m ON m.time >= h.bucket AND m.time < h.bucket + INTERVAL '1 hour'
GROUP BY h.bucket, m.device_id, m.metric_type
"""

# One series of one hour (the fallback after a failed pass): same aggregation, one group.
_HOURLY_SERIES_INSERT_SQL: Final = _HOURLY_INSERT_SQL.replace(
    "GROUP BY h.bucket", "WHERE m.device_id = $2 AND m.metric_type = $3\nGROUP BY h.bucket"
)
_HOURLY_SERIES_SQL: Final = """
SELECT DISTINCT device_id, metric_type FROM metrics
WHERE time >= $1 AND time < $1 + INTERVAL '1 hour' ORDER BY 1, 2
"""

_DAILY_DELETE_SQL: Final = "DELETE FROM metrics_daily WHERE bucket = ANY($1::timestamptz[])"
# A day from its hours: exact for count/sum/min/max/first/last; avg = sum/count; the increase adds the
# reset-aware step from each hour's last sample to the next non-empty hour's first sample.
_DAILY_INSERT_SQL: Final = """
INSERT INTO metrics_daily
    (bucket, device_id, metric_type, avg, min, max, sum, count, first, last, increase)
SELECT
    day, device_id, metric_type,
    sum(sum) / sum(count), min(min), max(max), sum(sum), sum(count),
    (array_agg(first ORDER BY bucket))[1],
    (array_agg(last ORDER BY bucket DESC))[1],
    CASE WHEN aetherlens_is_counter(metric_type) THEN
        sum(increase)
        + coalesce(sum(CASE WHEN step >= 0 THEN step ELSE first END) FILTER (WHERE step IS NOT NULL), 0)
    END
FROM (
    SELECT d.day, h.*,
           h.first - lag(h.last) OVER (
               PARTITION BY d.day, h.device_id, h.metric_type ORDER BY h.bucket) AS step
    FROM unnest($1::timestamptz[]) AS d (day)
    JOIN metrics_hourly AS h ON h.bucket >= d.day AND h.bucket < d.day + INTERVAL '1 day'
) AS hours
GROUP BY day, device_id, metric_type
"""

# JIT compilation costs more than it saves on these statements; a big backfill batch sorts in memory.
_DAILY_SERIES_INSERT_SQL: Final = _DAILY_INSERT_SQL.replace(
    "h.bucket < d.day + INTERVAL '1 day'",
    "h.bucket < d.day + INTERVAL '1 day' AND h.device_id = $2 AND h.metric_type = $3",
)
_DAILY_SERIES_SQL: Final = """
SELECT DISTINCT device_id, metric_type FROM metrics_hourly
WHERE bucket >= $1 AND bucket < $1 + INTERVAL '1 day' ORDER BY 1, 2
"""

FAILURES_KEY: Final = "rollup_failures"
_FAILURES_READ_SQL: Final = "SELECT value FROM core_state WHERE key = $1"
_FAILURES_WRITE_SQL: Final = """
INSERT INTO core_state (key, value, updated_at) VALUES ($1, $2, now())
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()
"""

# The aggregates of one series over [start, end): what a continuous-aggregate refresh computes.
_SERIES_PROBE_SQL: Final = """
SELECT avg(value), sum(value) FROM metrics
WHERE time >= $1 AND time < $2 AND device_id = $3 AND metric_type = $4
"""
_SERIES_IN_RANGE_SQL: Final = """
SELECT DISTINCT device_id, metric_type FROM metrics WHERE time >= $1 AND time < $2 ORDER BY 1, 2
"""


def _failure(
    width: str, bucket: datetime, device_id: str, metric_type: str, exc: BaseException
) -> dict[str, str]:
    return {
        "width": width,
        "bucket": bucket.isoformat(),
        "device_id": device_id,
        "metric_type": metric_type,
        "error": f"{type(exc).__name__}: {exc}",
    }


ROLLUP_FAILURES: Final = Counter(
    "aetherlens_rollup_failures",
    "Rollup buckets of one series that could not be aggregated (skipped; see /health)",
    ["width"],
)

_TUNE_SQL: Final = "SET LOCAL jit = off; SET LOCAL work_mem = '64MB'"
_SUMMARIZE_SQL: Final = """
SELECT brin_summarize_new_values(index.oid)
FROM (SELECT to_regclass('metrics_time_brin') AS oid) AS index
WHERE index.oid IS NOT NULL
"""

_PENDING_SQL: Final = "SELECT bucket, xmin::text AS version FROM rollup_pending ORDER BY bucket LIMIT $1"
# Consume only rows nobody re-marked since they were read (a writer's DO UPDATE changes xmin).
_CONSUME_SQL: Final = """
DELETE FROM rollup_pending AS p
USING unnest($1::timestamptz[], $2::text[]) AS c (bucket, version)
WHERE p.bucket = c.bucket AND p.xmin::text = c.version
"""

_REFRESH_SQL: Final = (
    "CALL refresh_continuous_aggregate($1::text::regclass, $2::timestamptz, $3::timestamptz)"
)


def hour_floor(moment: datetime) -> datetime:
    """The UTC hour bucket of an aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(f"time {moment.isoformat()} has no UTC offset; rollup buckets need aware times")
    return timebuckets.hour_floor(moment)


def day_floor(moment: datetime) -> datetime:
    return timebuckets.utc_day_floor(hour_floor(moment))


def ranges(starts: Iterable[datetime], width: timedelta) -> list[tuple[datetime, datetime]]:
    """Merge bucket starts into [start, end) ranges of consecutive buckets."""
    merged: list[tuple[datetime, datetime]] = []
    for start in sorted(set(starts)):
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], start + width)
        else:
            merged.append((start, start + width))
    return merged


async def mark_pending(conn: asyncpg.Connection, hours: Iterable[datetime]) -> int:
    """Record the hours touched by a write (call it in the write's transaction); returns how many."""
    buckets = sorted({hour_floor(h) for h in hours})
    if buckets:
        await conn.execute(_MARK_SQL, buckets)
        await conn.execute(MARK_PENDING_SQL, buckets)  # the cost job's marks (late data is priced)
    return len(buckets)


@dataclass(slots=True)
class RollupResult:
    hours: list[datetime] = field(default_factory=list)
    days: list[datetime] = field(default_factory=list)
    # Pending hours consumed without re-aggregation: older than the raw retention (see RollupJob).
    skipped: list[datetime] = field(default_factory=list)
    # (bucket, series) that could not be aggregated: {"width", "bucket", "device_id", "metric_type",
    # "error"}; every other series of those buckets was rolled up.
    failed: list[dict[str, str]] = field(default_factory=list)


async def rollup_failures(conn: asyncpg.Connection) -> list[dict[str, str]]:
    """The (bucket, series) the rollup job could not aggregate at its latest pass over them."""
    raw = await conn.fetchval(_FAILURES_READ_SQL, FAILURES_KEY)
    return list(orjson.loads(raw)) if raw else []


class RollupJob:
    """Keeps the metric rollups current from ``rollup_pending``; ``run_once`` is one bounded pass."""

    def __init__(
        self,
        capabilities: CapabilitiesLike,
        *,
        max_hours_per_run: int = 240,
        open_day_refresh_interval: float = 900.0,
        raw_retention_days: int | None = None,
    ) -> None:
        if max_hours_per_run < 1:
            raise ValueError("max_hours_per_run must be at least 1")
        self.continuous_aggregates = rollup_mode(capabilities) == "continuous_aggregates"
        self.max_hours_per_run = max_hours_per_run
        # TimescaleDB re-materializes a whole daily bucket from raw rows on every refresh: the day still
        # being written is refreshed at most this often (seconds). Its invalidations stay in
        # TimescaleDB's log meanwhile, so the next refresh of that day (or the policy) includes them.
        self.open_day_refresh_interval = open_day_refresh_interval
        self._open_day_refreshed: dict[datetime, float] = {}
        # Late rows for a bucket whose raw rows retention already removed must not rebuild it: the
        # rebuild would see only the late rows and overwrite the complete numbers. Such hours are
        # consumed and left as they are (settings.retention.raw_days; None = no such guard).
        self.raw_retention_days = raw_retention_days

    def _split_expired(
        self, hours: list[datetime], days: list[datetime]
    ) -> tuple[list[datetime], list[datetime], list[datetime]]:
        """(hours to rebuild, days to rebuild, hours skipped) given the raw retention cutoff."""
        if self.raw_retention_days is None:
            return hours, days, []
        cutoff = datetime.now(UTC) - timedelta(days=self.raw_retention_days)
        kept = [h for h in hours if h >= cutoff]
        skipped = [h for h in hours if h < cutoff]
        if skipped:
            log.warning(
                "late data for %d hour(s) older than the raw retention (%d days, oldest %s) is not rolled up",
                len(skipped),
                self.raw_retention_days,
                skipped[0].isoformat(),
            )
        return kept, [d for d in days if d >= cutoff], skipped

    async def run_once(self, conn: asyncpg.Connection) -> RollupResult:
        """Roll up at most ``max_hours_per_run`` pending hours (oldest first) and their days."""
        if self.continuous_aggregates:
            return await self._refresh_caggs(conn)
        return await self._rebuild_tables(conn)

    async def run_until_idle(self, conn: asyncpg.Connection) -> RollupResult:
        """Repeat ``run_once`` until nothing is pending (a large backfill takes several passes).

        Buckets that failed at an earlier pass are marked pending once first, so they are retried
        (a failure clears once its rows are fixed) without making this loop spin on them.
        """
        failed = await rollup_failures(conn)
        if failed:
            await mark_pending(conn, [datetime.fromisoformat(f["bucket"]) for f in failed])
        total = RollupResult()
        while True:
            result = await self.run_once(conn)
            total.failed.extend(result.failed)
            if not result.hours and not result.skipped:
                if total.hours:
                    log.info("rolled up %d hour(s), %d day(s)", len(total.hours), len(total.days))
                return total
            total.hours.extend(result.hours)
            total.skipped.extend(result.skipped)
            total.days.extend(d for d in result.days if d not in total.days)

    async def _rebuild_tables(self, conn: asyncpg.Connection) -> RollupResult:
        async with conn.transaction():
            # Two jobs replacing the same day at once would collide on its primary key.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", ROLLUP_LOCK_KEY)
            await conn.execute(_TUNE_SQL)
            # Pages written since the last pass are not yet summarized in the BRIN index, and an
            # unsummarized range matches every query: summarize them so the hour scans stay selective.
            await conn.execute(_SUMMARIZE_SQL)
            claimed = sorted(r["bucket"] for r in await conn.fetch(_CLAIM_SQL, self.max_hours_per_run))
            if not claimed:
                return RollupResult()
            hours, days, skipped = self._split_expired(claimed, sorted({day_floor(h) for h in claimed}))
            failed: list[dict[str, str]] = []
            try:
                async with conn.transaction():  # a savepoint: the fast path, every bucket at once
                    await conn.execute(_HOURLY_DELETE_SQL, hours)
                    await conn.execute(_HOURLY_INSERT_SQL, hours)
                    await conn.execute(_DAILY_DELETE_SQL, days)
                    await conn.execute(_DAILY_INSERT_SQL, days)
            except asyncpg.DataError:  # SQLSTATE class 22: some bucket's numbers cannot be computed
                failed = await self._rebuild_one_by_one(conn, hours, days)
            await self._record_failures(conn, hours, days, failed)
        log.debug("rebuilt %d hour bucket(s) and %d day bucket(s)", len(hours), len(days))
        return RollupResult(hours, days, skipped, failed)

    async def _rebuild_one_by_one(
        self, conn: asyncpg.Connection, hours: list[datetime], days: list[datetime]
    ) -> list[dict[str, str]]:
        """Each bucket on its own and, inside a bucket that fails, each series on its own; returns the
        (bucket, series) that fail. Runs inside the pass's transaction (savepoints)."""
        failed: list[dict[str, str]] = []
        for hour in hours:
            failed += await self._rebuild_bucket(
                conn,
                "hour",
                hour,
                _HOURLY_DELETE_SQL,
                _HOURLY_INSERT_SQL,
                _HOURLY_SERIES_SQL,
                _HOURLY_SERIES_INSERT_SQL,
            )
        # A day built without one of its hours would look complete: leave that series' day out and say why.
        incomplete = {
            (day_floor(datetime.fromisoformat(f["bucket"])), f["device_id"], f["metric_type"]) for f in failed
        }
        for day in days:
            failed += await self._rebuild_bucket(
                conn,
                "day",
                day,
                _DAILY_DELETE_SQL,
                _DAILY_INSERT_SQL,
                _DAILY_SERIES_SQL,
                _DAILY_SERIES_INSERT_SQL,
                skip={(d, m) for b, d, m in incomplete if b == day},
            )
        return failed

    async def _rebuild_bucket(
        self,
        conn: asyncpg.Connection,
        width: str,
        bucket: datetime,
        delete: str,
        insert: str,
        series_sql: str,
        series_insert: str,
        skip: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    ) -> list[dict[str, str]]:
        await conn.execute(delete, [bucket])
        if not skip:
            try:
                async with conn.transaction():
                    await conn.execute(insert, [bucket])
                return []
            except asyncpg.DataError:
                pass
        failed: list[dict[str, str]] = []
        for row in await conn.fetch(series_sql, bucket):
            device_id, metric_type = row["device_id"], row["metric_type"]
            if (device_id, metric_type) in skip:
                error = "an hour of this day could not be aggregated"
            else:
                try:
                    async with conn.transaction():
                        await conn.execute(series_insert, [bucket], device_id, metric_type)
                    continue
                except asyncpg.DataError as exc:
                    error = f"{type(exc).__name__}: {exc}"
            ROLLUP_FAILURES.labels(width).inc()
            log.error(
                "rollup of %s %s for %s/%s failed, skipped (other series go on): %s",
                width,
                bucket.isoformat(),
                device_id,
                metric_type,
                error,
            )
            failed.append(
                {
                    "width": width,
                    "bucket": bucket.isoformat(),
                    "device_id": device_id,
                    "metric_type": metric_type,
                    "error": error,
                }
            )
        return failed

    async def _record_failures(
        self,
        conn: asyncpg.Connection,
        hours: list[datetime],
        days: list[datetime],
        failed: list[dict[str, str]],
    ) -> None:
        """Replace what is recorded for the buckets just rebuilt by this pass's outcome."""
        recorded = await rollup_failures(conn)
        if not recorded and not failed:
            return
        rebuilt = {("hour", h.isoformat()) for h in hours} | {("day", d.isoformat()) for d in days}
        kept: list[dict[str, Any]] = [f for f in recorded if (f["width"], f["bucket"]) not in rebuilt]
        await conn.execute(_FAILURES_WRITE_SQL, FAILURES_KEY, orjson.dumps([*kept, *failed]).decode())

    async def _refresh_caggs(self, conn: asyncpg.Connection) -> RollupResult:
        if conn.is_in_transaction():
            raise DatabaseError("refresh_continuous_aggregate cannot run inside a transaction")
        rows = await conn.fetch(_PENDING_SQL, self.max_hours_per_run)
        if not rows:
            return RollupResult()
        pending = [r["bucket"] for r in rows]
        hours, days, skipped = self._split_expired(pending, sorted({day_floor(h) for h in pending}))
        days = self._due_days(days)
        failed: list[dict[str, str]] = []
        try:
            await refresh_ranges(conn, "metrics_hourly", ranges(hours, HOUR))
            await refresh_ranges(conn, "metrics_daily", ranges(days, DAY))
        except asyncpg.DataError:
            # TimescaleDB materializes a window whole: refresh bucket by bucket so only the buckets
            # that cannot be computed stay behind, and name their series.
            failed = await self._refresh_one_by_one(conn, hours, days)
        await conn.execute(_CONSUME_SQL, pending, [r["version"] for r in rows])
        async with conn.transaction():
            await self._record_failures(conn, hours, days, failed)
        return RollupResult(hours, days, skipped, failed)

    async def _refresh_one_by_one(
        self, conn: asyncpg.Connection, hours: list[datetime], days: list[datetime]
    ) -> list[dict[str, str]]:
        failed: list[dict[str, str]] = []
        for width, view, buckets, step in (
            ("hour", "metrics_hourly", hours, HOUR),
            ("day", "metrics_daily", days, DAY),
        ):
            for bucket in buckets:
                try:
                    await refresh_ranges(conn, view, [(bucket, bucket + step)])
                except asyncpg.DataError as exc:
                    failed += await self._failing_series(conn, width, bucket, step, exc)
        return failed

    async def _failing_series(
        self, conn: asyncpg.Connection, width: str, bucket: datetime, step: timedelta, error: BaseException
    ) -> list[dict[str, str]]:
        """The series of a bucket whose aggregates cannot be computed (each probed on its own); the
        whole bucket when none fails alone."""
        found: list[dict[str, str]] = []
        for row in await conn.fetch(_SERIES_IN_RANGE_SQL, bucket, bucket + step):
            try:
                await conn.fetchrow(
                    _SERIES_PROBE_SQL, bucket, bucket + step, row["device_id"], row["metric_type"]
                )
            except asyncpg.DataError as exc:
                found.append(_failure(width, bucket, row["device_id"], row["metric_type"], exc))
        if not found:
            found.append(_failure(width, bucket, "*", "*", error))
        for f in found:
            ROLLUP_FAILURES.labels(width).inc()
            log.error(
                "rollup of %s %s for %s/%s failed, skipped (other buckets go on): %s",
                width,
                f["bucket"],
                f["device_id"],
                f["metric_type"],
                f["error"],
            )
        return found

    def _due_days(self, days: list[datetime]) -> list[datetime]:
        now, clock = datetime.now(UTC), time.monotonic()
        self._open_day_refreshed = {d: t for d, t in self._open_day_refreshed.items() if d + DAY > now}
        due: list[datetime] = []
        for day in days:
            if day + DAY > now:  # still open
                last = self._open_day_refreshed.get(day)
                if last is not None and clock - last < self.open_day_refresh_interval:
                    continue
                self._open_day_refreshed[day] = clock
            due.append(day)
        return due


async def refresh_ranges(
    conn: asyncpg.Connection, view: str, windows: Sequence[tuple[datetime, datetime]]
) -> None:
    """``refresh_continuous_aggregate`` over each [start, end) (must run outside a transaction)."""
    if view not in ("metrics_hourly", "metrics_daily"):
        raise ValueError(f"not a continuous aggregate of AetherLens: {view}")
    for start, end in windows:
        await conn.execute(_REFRESH_SQL, view, start, end)
