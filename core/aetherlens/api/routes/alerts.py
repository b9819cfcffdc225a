"""Alert routes: GET/POST /alerts, GET/PUT/DELETE /alerts/{id}, GET /alerts/events,
POST /alerts/events/{id}/ack.

A rule's shape is checked by its model (400 naming the field); what the shape cannot tell — an unknown
device, an unknown metric type, a threshold the metric can never cross — by ``alerts.rules.check_rule``
(422 ``invalid_rule`` naming the field). A change is handed to the running engine at once. An
acknowledgement is a transition like firing and resolved: stored, streamed on ``alerts`` and webhooked.
"""

from __future__ import annotations

from typing import Any

from aetherlens.alerts.config_rules import fields_of
from aetherlens.alerts.rules import check_rule
from aetherlens.api.context import ApiContext
from aetherlens.api.routing import Call, route
from aetherlens.api.schemas.alerts import AlertIn, AlertList, AlertOut, EventList, EventOut, EventQuery
from aetherlens.db.queries import alerts as q
from aetherlens.db.queries.devices import device_exists
from aetherlens.db.queries.metrics import current_values
from aetherlens.errors import NotFoundError
from aetherlens.models import METRIC_TYPES

# Ids are bigints: a non-numeric id is an unknown route (404); one beyond bigint is simply not found.
_ID = "{id:[0-9]+}"
_MAX_ID = 2**63 - 1


def _id(call: Call[Any, Any], what: str = "alert") -> int:
    value = int(call.path["id"])
    if value > _MAX_ID:
        raise NotFoundError(f"{what} {call.path['id']} not found")
    return value


async def _known_metric_types(ctx: ApiContext) -> set[str]:
    """The vocabulary, the types enabled plugins declared (the collector's table) and stored series."""
    known = set(METRIC_TYPES)
    units = getattr(ctx.collector, "units", None)
    known.update(getattr(units, "types", {}))
    for series in (await current_values(ctx.pool)).values():
        known.update(c.metric_type for c in series)
    return known


async def _fields(call: Call[None, AlertIn]) -> q.AlertFields:
    async def exists(device: str) -> bool:
        return await device_exists(call.ctx.pool, device)

    await check_rule(call.body, known_metric_types=await _known_metric_types(call.ctx), device_exists=exists)
    return fields_of(call.body)


def _changed(ctx: ApiContext) -> None:
    if ctx.alert_engine is not None:
        ctx.alert_engine.rules_changed()


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
    errors=(422,),
    summary="Create an alert rule",
)
async def create_alert(call: Call[None, AlertIn]) -> dict[str, Any]:
    rule = await q.create_alert(call.ctx.pool, await _fields(call))
    _changed(call.ctx)
    return rule.as_dict()


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
    description="Idempotent: a second acknowledgement keeps the first one's time and name. The first one "
    "is a transition (state acknowledged) on the stream's alerts topic and to the rule's webhooks.",
)
async def acknowledge_alert_event(call: Call[None, None]) -> dict[str, Any]:
    async with call.ctx.pool.acquire() as conn:
        event, data = await q.acknowledge_event(conn, _id(call, "alert event"), call.user.name)
    if data is not None:
        call.ctx.stream.publish("alerts", data)
        if call.ctx.alert_engine is not None:
            call.ctx.alert_engine.transition_recorded()
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
    errors=(404, 422),
    summary="Replace an alert rule",
)
async def replace_alert(call: Call[None, AlertIn]) -> dict[str, Any]:
    rule = await q.replace_alert(call.ctx.pool, _id(call), await _fields(call))
    _changed(call.ctx)
    return rule.as_dict()


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
    _changed(call.ctx)
