"""Health of TimescaleDB's background jobs (policies): a job whose last run failed makes the core degraded.

Reads ``timescaledb_information.job_stats`` and the newest matching ``job_errors`` row. Returns an empty
list on plain PostgreSQL or when every job's last run succeeded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import asyncpg

_FAILING_SQL: Final = """
SELECT s.job_id, j.application_name, j.proc_name,
       s.hypertable_name::text AS relation,
       s.last_run_status, s.last_run_started_at, s.last_successful_finish,
       s.total_runs, s.total_failures, e.err_message, e.finish_time AS error_at
FROM timescaledb_information.job_stats AS s
JOIN timescaledb_information.jobs AS j USING (job_id)
LEFT JOIN LATERAL (
    SELECT je.err_message, je.finish_time FROM timescaledb_information.job_errors AS je
    WHERE je.job_id = s.job_id ORDER BY je.finish_time DESC NULLS LAST LIMIT 1
) AS e ON true
WHERE s.last_run_status = 'Failed'
ORDER BY s.job_id
"""


def _iso(value: datetime | None) -> str | None:
    # job_stats reports "never" as the year-1 sentinel.
    return value.isoformat() if value is not None and value.year > 1 else None


async def timescaledb_job_health(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """One entry per background job whose last run failed, each with ``status: degraded``."""
    if not await conn.fetchval("SELECT to_regclass('timescaledb_information.job_stats') IS NOT NULL"):
        return []
    rows = await conn.fetch(_FAILING_SQL)
    return [
        {
            "job_id": r["job_id"],
            "application_name": r["application_name"],
            "proc_name": r["proc_name"],
            "relation": r["relation"],
            "status": "degraded",
            "last_run_status": r["last_run_status"],
            "last_run_started_at": _iso(r["last_run_started_at"]),
            "last_successful_finish": _iso(r["last_successful_finish"]),
            "total_runs": r["total_runs"],
            "total_failures": r["total_failures"],
            "last_error": r["err_message"],
            "last_error_at": _iso(r["error_at"]),
        }
        for r in rows
    ]
