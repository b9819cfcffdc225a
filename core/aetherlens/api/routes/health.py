"""Health: GET /health (every check), /health/live (the process answers), /health/ready (can serve).

Each check is ``ok``, ``degraded`` (working, but look: data is being spooled, a plugin is down, the disk
is filling) or ``failing``. The overall status is the worst; ``failing`` answers 503 so orchestrators
and the add-on watchdog act on it, ``degraded`` still answers 200.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from aetherlens.api.context import ApiContext
from aetherlens.api.routing import Call, route
from aetherlens.db.jobs_health import timescaledb_job_health
from aetherlens.db.rollups import rollup_failures

Status = Literal["ok", "degraded", "failing"]
_ORDER = {"ok": 0, "degraded": 1, "failing": 2}
_STARTED = time.time()
DISK_DEGRADED_BYTES = 1 << 30  # 1 GiB
DISK_FAILING_BYTES = 100 << 20  # 100 MiB


class Check(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Status
    message: str | None = None


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    version: str
    uptime_seconds: float
    checks: dict[str, Check]


class Live(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]


# Supervisor states of an enabled plugin that need attention (crash-looping, given up, refused).
_UNHEALTHY_STATES = frozenset({"failed", "backoff", "refused", "crashed"})


def _worst(statuses: list[str]) -> Status:
    worst: Status = "ok"
    for status in statuses:
        if _ORDER[status] > _ORDER[worst]:
            worst = status  # type: ignore[assignment]
    return worst


async def check_database(ctx: ApiContext) -> dict[str, Any]:
    try:
        async with asyncio.timeout(3):
            async with ctx.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
    except Exception as exc:
        # With a writer the core keeps accepting ingest into the spool: degraded, not down.
        status = "degraded" if ctx.writer is not None else "failing"
        return {"status": status, "message": f"database not reachable ({type(exc).__name__})"}
    return {"status": "ok"}


async def check_timescaledb_jobs(ctx: ApiContext) -> dict[str, Any] | None:
    if not ctx.capabilities.as_dict().get("timescaledb"):
        return None
    try:
        async with asyncio.timeout(3):
            async with ctx.pool.acquire() as conn:
                failed = await timescaledb_job_health(conn)
    except Exception as exc:
        return {"status": "degraded", "message": f"cannot read job status ({type(exc).__name__})"}
    return {"status": "degraded" if failed else "ok", "failed_jobs": failed}


async def check_rollups(ctx: ApiContext) -> dict[str, Any]:
    """Series whose metric rollups could not be computed at the job's latest pass over them."""
    try:
        async with asyncio.timeout(3):
            async with ctx.pool.acquire() as conn:
                failed = await rollup_failures(conn)
    except Exception as exc:
        return {"status": "degraded", "message": f"cannot read rollup status ({type(exc).__name__})"}
    if not failed:
        return {"status": "ok", "failed": []}
    series = sorted({f"{f['device_id']}/{f['metric_type']}" for f in failed})
    shown = ", ".join(series[:10]) + (f" and {len(series) - 10} more" if len(series) > 10 else "")
    return {
        "status": "degraded",
        "message": f"rollups fail for {len(series)} series ({shown}); other series are rolled up",
        "failed": failed[:100],
    }


def check_plugins(ctx: ApiContext) -> dict[str, Any] | None:
    if ctx.supervisor is None:
        return None
    plugins = [dict(p) for p in ctx.supervisor.status()]
    unhealthy = [
        str(p.get("id"))
        for p in plugins
        if p.get("enabled", True) and (p.get("healthy") is False or p.get("state") in _UNHEALTHY_STATES)
    ]
    return {
        "status": "degraded" if unhealthy else "ok",
        "total": len(plugins),
        "unhealthy": unhealthy,
    }


def check_costs(ctx: ApiContext) -> dict[str, Any] | None:
    """The cost job: a first derivation's progress, and devices whose readings it had to leave out."""
    if ctx.cost_job is None:
        return None
    state = dict(ctx.cost_job.status())
    failed = state.get("failed_series") or []
    message = None
    if failed:
        names = ", ".join(str(f.get("device_id")) for f in failed)
        message = f"costs leave out {names}: their readings cannot be computed"
    return {**state, "status": "degraded" if failed else "ok", "message": message}


def check_spool(ctx: ApiContext) -> dict[str, Any] | None:
    if ctx.writer is None:
        return None
    state = dict(ctx.writer.status())
    spool = int(state.get("spool_bytes") or 0)
    spool_max = int(state.get("spool_max_bytes") or ctx.settings.writer.spool_max_bytes)
    depth = int(state.get("queue_depth") or 0)
    queue_max = int(state.get("queue_max") or ctx.settings.writer.queue_max)
    status: Status = "ok"
    message = None
    if state.get("spool_full") or spool >= spool_max * 0.9 or depth >= queue_max:
        status, message = "failing", "write queue or spool is full; ingest is refused"
    elif spool > 0:
        status, message = "degraded", "metrics are being spooled to disk (database write failing)"
    return {"status": status, "message": message, "spool_bytes": spool, "queue_depth": depth}


def check_quarantine(ctx: ApiContext) -> dict[str, Any] | None:
    """Write batches the database refused for their content wait in the dead-letter file."""
    if ctx.writer is None:
        return None
    state = dict(ctx.writer.status())
    batches = int(state.get("quarantined_batches") or 0)
    metrics = int(state.get("quarantined_metrics") or 0)
    if not batches:
        return {"status": "ok", "batches": 0, "metrics": 0}
    return {
        "status": "degraded",
        "message": f"{batches} write batch(es) ({metrics} metrics) refused by the database for their "
        f"content are quarantined in {state.get('dead_letter')}",
        "batches": batches,
        "metrics": metrics,
        "path": state.get("dead_letter"),
    }


async def check_alerts(ctx: ApiContext) -> dict[str, Any] | None:
    """The alert engine runs, every rule evaluates, and webhooks are not piling up or given up on."""
    if ctx.alert_engine is None:
        return None
    state = dict(ctx.alert_engine.status())
    try:
        async with asyncio.timeout(3):
            backlog = dict(await ctx.alert_engine.webhook_backlog())
    except Exception as exc:
        backlog = {}
        state["backlog_error"] = type(exc).__name__
    failing = dict(state.get("failing_rules") or {})
    problems = []
    status: Status = "ok"
    if not state.get("running"):
        status = "failing"
        problems.append("the alert evaluator is not running")
    if failing:
        problems.append(f"{len(failing)} rule(s) cannot be evaluated: {', '.join(sorted(failing))}")
    if backlog.get("retrying"):
        problems.append(f"{backlog['retrying']} webhook delivery(ies) are being retried")
    if backlog.get("failed"):
        problems.append(f"{backlog['failed']} webhook delivery(ies) were given up")
    if problems and status == "ok":
        status = "degraded"
    return {**state, "webhooks": backlog, "status": status, "message": "; ".join(problems) or None}


def check_disk(ctx: ApiContext) -> dict[str, Any]:
    path = ctx.settings.data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    status: Status = "ok"
    if usage.free < DISK_FAILING_BYTES:
        status = "failing"
    elif usage.free < DISK_DEGRADED_BYTES or usage.free < usage.total * 0.05:
        status = "degraded"
    return {"status": status, "free_bytes": usage.free, "total_bytes": usage.total, "path": str(path)}


async def _report(ctx: ApiContext, *, full: bool) -> web.Response:
    checks: dict[str, dict[str, Any]] = {"database": await check_database(ctx)}
    spool = check_spool(ctx)
    if spool is not None:
        checks["spool"] = spool
    if full:
        for name, result in (
            ("timescaledb_jobs", await check_timescaledb_jobs(ctx)),
            ("rollups", await check_rollups(ctx)),
            ("plugins", check_plugins(ctx)),
            ("costs", check_costs(ctx)),
            ("quarantine", check_quarantine(ctx)),
            ("alerts", await check_alerts(ctx)),
            ("disk", check_disk(ctx)),
        ):
            if result is not None:
                checks[name] = result
    status = _worst([c["status"] for c in checks.values()])
    body = Health(
        status=status,
        version=ctx.version,
        uptime_seconds=round(time.time() - _STARTED, 3),
        checks={k: Check(**v) for k, v in checks.items()},
    )
    return web.Response(
        status=503 if status == "failing" else 200,
        body=body.model_dump_json(exclude_none=True),
        content_type="application/json",
    )


@route(
    "GET",
    "/health",
    scope=None,
    response=Health,
    summary="Every health check",
    tags=["health"],
    errors=(503,),
)
async def health(call: Call[None, None]) -> web.StreamResponse:
    return await _report(call.ctx, full=True)


@route(
    "GET", "/health/live", scope=None, response=Live, summary="Liveness: the process answers", tags=["health"]
)
async def health_live(call: Call[None, None]) -> Live:
    return Live(status="ok")


@route(
    "GET",
    "/health/ready",
    scope=None,
    response=Health,
    summary="Readiness: database and write path",
    tags=["health"],
    errors=(503,),
)
async def health_ready(call: Call[None, None]) -> web.StreamResponse:
    return await _report(call.ctx, full=False)
