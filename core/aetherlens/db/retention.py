"""Retention of raw metrics and rollups: 90 days raw, 1 year hourly, 5 years daily by default.

With TimescaleDB (+TSL) retention is a policy per relation; ``apply_retention_settings`` makes the
policies match ``settings.retention`` at every start (remove + add only where the configured age
differs), and ``RetentionJob`` runs a retention or compression policy itself (``CALL run_job``) when
it has not succeeded within its schedule interval. On plain PostgreSQL ``RetentionJob`` deletes rows
older than the configured age in bounded batches (one short statement per batch, each its own
transaction), so neither ingest nor readers wait on a long delete. ``cost_calculations`` is billing
history and is never expired.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import asyncpg

from aetherlens.db.migrations import CapabilitiesLike, rollup_mode, storage_mode

log = logging.getLogger(__name__)


class RetentionLike(Protocol):
    """``aetherlens.config.RetentionSettings``."""

    @property
    def raw_days(self) -> int: ...

    @property
    def hourly_days(self) -> int: ...

    @property
    def daily_days(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Target:
    relation: str
    time_column: str
    setting: str  # attribute of RetentionSettings

    def days(self, retention: RetentionLike) -> int:
        value: int = getattr(retention, self.setting)
        return value


# The only relation names ever placed into SQL text here.
TARGETS: Final = (
    Target("metrics", "time", "raw_days"),
    Target("metrics_hourly", "bucket", "hourly_days"),
    Target("metrics_daily", "bucket", "daily_days"),
)
# Tables the cost engine keeps on every storage path (cost_daily's local days are no continuous
# aggregate): always the batched delete, TimescaleDB or not.
COST_TARGETS: Final = (
    Target("cost_hourly", "bucket", "hourly_days"),
    Target("cost_daily", "bucket", "daily_days"),
)
# Batch ids only guard a spool replay against applying a batch twice; a spool is replayed as soon as the
# database answers, so ids as old as the raw retention are far past any replay (on both storage paths).
INGEST_BATCHES: Final = Target("ingest_batches", "committed_at", "raw_days")

# The retention job of a hypertable or continuous aggregate (TimescaleDB's jobs view names the view).
_POLICY_SQL: Final = """
SELECT j.job_id, (j.config->>'drop_after')::interval = make_interval(days => $2) AS matches
FROM timescaledb_information.jobs AS j
WHERE j.proc_name = 'policy_retention'
  AND j.hypertable_schema = current_schema() AND j.hypertable_name = $1::name
"""


async def apply_retention_settings(
    conn: asyncpg.Connection, capabilities: CapabilitiesLike, retention: RetentionLike
) -> list[str]:
    """Make the TimescaleDB retention policies match ``retention``; returns the relations changed.

    A no-op on plain PostgreSQL (and TimescaleDB without TSL), where ``RetentionJob`` reads the
    settings on every run.
    """
    if rollup_mode(capabilities) != "continuous_aggregates":
        return []
    changed: list[str] = []
    for target in TARGETS:
        days = target.days(retention)
        row = await conn.fetchrow(_POLICY_SQL, target.relation, days)
        if row is not None and row["matches"]:
            continue
        async with conn.transaction():
            await conn.execute(
                "SELECT remove_retention_policy($1::text::regclass, if_exists => true)", target.relation
            )
            await conn.execute(
                "SELECT add_retention_policy($1::text::regclass, drop_after => make_interval(days => $2))",
                target.relation,
                days,
            )
        changed.append(target.relation)
        log.info("retention policy of %s set to %d days", target.relation, days)
    return changed


# Retention and compression policies of our relations that have not succeeded within their schedule
# interval: the scheduler is not getting them done (TimescaleDB 2.22 on PostgreSQL 15.20 fails every
# scheduled job while CALL run_job works, issue 2), so the job runs them itself. A foreground run_job
# does not update job_stats, so the job also remembers its own runs.
_OVERDUE_POLICIES_SQL: Final = """
SELECT j.job_id, j.proc_name, j.hypertable_name, j.schedule_interval
FROM timescaledb_information.jobs AS j
LEFT JOIN timescaledb_information.job_stats AS s USING (job_id)
WHERE j.proc_name IN ('policy_retention', 'policy_compression')
  AND j.hypertable_schema = current_schema() AND j.hypertable_name = ANY($1::text[])
  AND coalesce(s.last_successful_finish, '-infinity') < now() - j.schedule_interval
ORDER BY j.proc_name DESC, j.job_id
"""


class RetentionJob:
    """Deletes expired rows on plain PostgreSQL; with TimescaleDB policies do the work (and this job
    runs a policy itself when the scheduler has not managed to within its interval)."""

    def __init__(
        self, capabilities: CapabilitiesLike, retention: RetentionLike, *, batch_size: int = 10_000
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.capabilities = capabilities
        self.retention = retention
        self.batch_size = batch_size
        self._policy_runs: dict[int, float] = {}  # job id -> time.monotonic() of our last run_job

    async def run_once(self, conn: asyncpg.Connection, now: datetime | None = None) -> dict[str, int]:
        """One pass over every relation.

        Returns rows (plain) or chunks (hypertable without TSL) removed per relation; with policies, the
        overdue policy jobs run per relation.
        """
        moment = now or datetime.now(UTC)
        batch_ids = await self._delete_batches(
            conn, INGEST_BATCHES, moment - timedelta(days=INGEST_BATCHES.days(self.retention))
        )
        removed: dict[str, int] = {INGEST_BATCHES.relation: batch_ids}
        for target in COST_TARGETS:
            cutoff = moment - timedelta(days=target.days(self.retention))
            removed[target.relation] = await self._delete_batches(conn, target, cutoff)
        if rollup_mode(self.capabilities) == "continuous_aggregates":
            return {**await self._run_overdue_policies(conn), **removed}
        for target in TARGETS:
            cutoff = moment - timedelta(days=target.days(self.retention))
            if target.relation == "metrics" and storage_mode(self.capabilities) == "timescaledb":
                # A hypertable without TSL policies: drop whole chunks (ctid is not unique across chunks).
                chunks = await conn.fetch(
                    "SELECT drop_chunks('metrics', older_than => $1::timestamptz)", cutoff
                )
                removed[target.relation] = len(chunks)
            else:
                removed[target.relation] = await self._delete_batches(conn, target, cutoff)
        if any(removed.values()):
            log.info("retention removed %s", ", ".join(f"{n} from {r}" for r, n in removed.items() if n))
        return removed

    async def _run_overdue_policies(self, conn: asyncpg.Connection) -> dict[str, int]:
        ran: dict[str, int] = {}
        for row in await conn.fetch(_OVERDUE_POLICIES_SQL, [t.relation for t in TARGETS]):
            last = self._policy_runs.get(row["job_id"])
            if last is not None and time.monotonic() - last < row["schedule_interval"].total_seconds():
                continue
            try:
                # CALL run_job commits inside; it must not run in a transaction block.
                await conn.execute("CALL run_job($1)", row["job_id"])
            except asyncpg.PostgresError as exc:
                log.warning(
                    "%s of %s (job %d) failed: %s",
                    row["proc_name"],
                    row["hypertable_name"],
                    row["job_id"],
                    exc,
                )
                continue
            self._policy_runs[row["job_id"]] = time.monotonic()
            ran[row["hypertable_name"]] = ran.get(row["hypertable_name"], 0) + 1
        if ran:
            log.info("ran overdue TimescaleDB policies: %s", ", ".join(f"{r} ({n})" for r, n in ran.items()))
        return ran

    async def _delete_batches(self, conn: asyncpg.Connection, target: Target, cutoff: datetime) -> int:
        statement = (
            f"DELETE FROM {target.relation} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {target.relation} WHERE {target.time_column} < $1 LIMIT $2))"
        )
        total = 0
        while True:
            status = await conn.execute(statement, cutoff, self.batch_size)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < self.batch_size:
                return total
