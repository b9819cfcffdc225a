"""Alert routes: GET/POST /alerts, GET/PUT/DELETE /alerts/{id}, GET /alerts/events,
POST /alerts/events/{id}/ack.

Rules and events are stored and served now; the engine that evaluates rules reads the same rows.
"""

from __future__ import annotations

from typing import Any

from aetherlens.api.routing import Call, route
from aetherlens.api.schemas.alerts import AlertIn, AlertList, AlertOut, EventList, EventOut, EventQuery
from aetherlens.db.queries import alerts as q
from aetherlens.errors import NotFoundError

# Ids are bigints: a non-numeric id is an unknown route (404); one beyond bigint is simply not found.
_ID = "{id:[0-9]+}"
_MAX_ID = 2**63 - 1


def _id(call: Call[Any, Any], what: str = "alert") -> int:
    value = int(call.path["id"])
    if value > _MAX_ID:
        raise NotFoundError(f"{what} {call.path['id']} not found")
    return value


def _fields(body: AlertIn) -> q.AlertFields:
    return q.AlertFields(
        name=body.name,
        enabled=body.enabled,
        device_id=body.device_id,
        metric_type=body.metric_type,
        condition=body.condition.model_dump(),
        severity=body.severity,
        notify=[target.model_dump() for target in body.notify],
        cooldown_seconds=body.cooldown_seconds,
    )


@route("GET", "/api/v1/alerts", scope="read", response=AlertList, summary="List alert rules")
async def list_alerts(call: Call[None, None]) -> dict[str, Any]:
    return {"items": [a.as_dict() for a in await q.list_alerts(call.ctx.pool)]}


@route(
    "POST",
    "/api/v1/alerts",
    scope="write",
    body=AlertIn,
    response=AlertOut,
    status=201,
    summary="Create an alert rule",
)
async def create_alert(call: Call[None, AlertIn]) -> dict[str, Any]:
    return (await q.create_alert(call.ctx.pool, _fields(call.body))).as_dict()


# Declared before /alerts/{id}: the literal path wins (the id pattern is numeric anyway).
@route(
    "GET",
    "/api/v1/alerts/events",
    scope="read",
    query=EventQuery,
    response=EventList,
    summary="Alert events, newest first",
)
async def list_alert_events(call: Call[EventQuery, None]) -> dict[str, Any]:
    query = call.query
    events = await q.list_events(
        call.ctx.pool,
        alert_id=query.alert_id,
        device_id=query.device_id,
        start=query.from_,
        end=query.to,
        unacknowledged=query.unacknowledged,
        limit=query.limit,
    )
    return {"items": [e.as_dict() for e in events]}


@route(
    "POST",
    f"/api/v1/alerts/events/{_ID}/ack",
    scope="control",
    response=EventOut,
    errors=(404,),
    summary="Acknowledge an alert event",
    description="Idempotent: a second acknowledgement keeps the first one's time and name.",
)
async def acknowledge_alert_event(call: Call[None, None]) -> dict[str, Any]:
    event = await q.acknowledge_event(call.ctx.pool, _id(call, "alert event"), call.user.name)
    return event.as_dict()


@route(
    "GET", f"/api/v1/alerts/{_ID}", scope="read", response=AlertOut, errors=(404,), summary="One alert rule"
)
async def get_alert(call: Call[None, None]) -> dict[str, Any]:
    return (await q.get_alert(call.ctx.pool, _id(call))).as_dict()


@route(
    "PUT",
    f"/api/v1/alerts/{_ID}",
    scope="write",
    body=AlertIn,
    response=AlertOut,
    errors=(404,),
    summary="Replace an alert rule",
)
async def replace_alert(call: Call[None, AlertIn]) -> dict[str, Any]:
    return (await q.replace_alert(call.ctx.pool, _id(call), _fields(call.body))).as_dict()


@route(
    "DELETE",
    f"/api/v1/alerts/{_ID}",
    scope="write",
    status=204,
    errors=(404,),
    summary="Delete an alert rule",
)
async def delete_alert(call: Call[None, None]) -> None:
    await q.delete_alert(call.ctx.pool, _id(call))
