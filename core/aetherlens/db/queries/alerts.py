"""Alert rules and their events: CRUD for rules, listing and acknowledging events.

The rule's ``condition``/``notify`` are stored as JSON objects as the API validated them; the alert
engine (later) reads the same rows. ``state`` is the engine's own bookkeeping and is not writable here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from aetherlens.db.queries import Queryable
from aetherlens.db.queries.devices import device_exists
from aetherlens.errors import NotFoundError, ValidationError

_ALERT_COLUMNS: Final = (
    "id, name, enabled, device_id, metric_type, condition::text, severity, notify::text, cooldown_seconds, "
    "created_at, updated_at"
)
_EVENT_COLUMNS: Final = (
    "id, alert_id, device_id, triggered_at, resolved_at, severity, value, message, details::text, "
    "acknowledged_at, acknowledged_by"
)
SEVERITIES: Final = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class AlertRule:
    id: int
    name: str
    enabled: bool
    device_id: str | None
    metric_type: str | None
    condition: dict[str, Any]
    severity: str
    notify: list[Any]
    cooldown_seconds: int
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "enabled": self.enabled,
            "device_id": self.device_id,
            "metric_type": self.metric_type,
            "condition": self.condition,
            "severity": self.severity,
            "notify": self.notify,
            "cooldown_seconds": self.cooldown_seconds,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class AlertEvent:
    id: int
    alert_id: int
    device_id: str | None
    triggered_at: datetime
    resolved_at: datetime | None
    severity: str
    value: float | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "alert_id": self.alert_id,
            "device_id": self.device_id,
            "triggered_at": self.triggered_at,
            "resolved_at": self.resolved_at,
            "severity": self.severity,
            "value": self.value,
            "message": self.message,
            "details": self.details,
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by,
        }


@dataclass(frozen=True, slots=True)
class AlertFields:
    """Everything a client sets on a rule (create and full replace)."""

    name: str
    condition: dict[str, Any]
    enabled: bool = True
    device_id: str | None = None
    metric_type: str | None = None
    severity: str = "warning"
    notify: list[Any] = field(default_factory=list)
    cooldown_seconds: int = 300


def _rule(row: Any) -> AlertRule:
    return AlertRule(
        id=row[0],
        name=row[1],
        enabled=row[2],
        device_id=row[3],
        metric_type=row[4],
        condition=orjson.loads(row[5]),
        severity=row[6],
        notify=orjson.loads(row[7]),
        cooldown_seconds=row[8],
        created_at=row[9],
        updated_at=row[10],
    )


def _event(row: Any) -> AlertEvent:
    return AlertEvent(
        id=row[0],
        alert_id=row[1],
        device_id=row[2],
        triggered_at=row[3],
        resolved_at=row[4],
        severity=row[5],
        value=row[6],
        message=row[7],
        details=orjson.loads(row[8]) if row[8] is not None else {},
        acknowledged_at=row[9],
        acknowledged_by=row[10],
    )


async def _check_refs(db: Queryable, fields: AlertFields) -> None:
    if not fields.name:
        raise ValidationError("alert name must not be empty", details={"field": "name"})
    if fields.severity not in SEVERITIES:
        raise ValidationError(
            f"severity {fields.severity!r} is not one of {', '.join(SEVERITIES)}",
            details={"field": "severity"},
        )
    if fields.cooldown_seconds < 0:
        raise ValidationError("cooldown_seconds must be >= 0", details={"field": "cooldown_seconds"})
    # A clear 400 instead of the foreign key's error text.
    if fields.device_id is not None and not await device_exists(db, fields.device_id):
        raise ValidationError(
            f"device {fields.device_id!r} does not exist",
            details={"field": "device_id", "value": fields.device_id},
        )


def _params(fields: AlertFields) -> tuple[Any, ...]:
    return (
        fields.name,
        fields.enabled,
        fields.device_id,
        fields.metric_type,
        orjson.dumps(fields.condition).decode(),
        fields.severity,
        orjson.dumps(fields.notify).decode(),
        fields.cooldown_seconds,
    )


async def list_alerts(db: Queryable) -> list[AlertRule]:
    return [_rule(r) for r in await db.fetch(f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY id")]


async def get_alert(db: Queryable, alert_id: int) -> AlertRule:
    row = await db.fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = $1", alert_id)
    if row is None:
        raise NotFoundError(f"alert {alert_id} not found", details={"alert_id": alert_id})
    return _rule(row)


async def create_alert(db: Queryable, fields: AlertFields) -> AlertRule:
    await _check_refs(db, fields)
    row = await db.fetchrow(
        f"""INSERT INTO alerts
                (name, enabled, device_id, metric_type, condition, severity, notify, cooldown_seconds)
            VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7::text::jsonb, $8)
            RETURNING {_ALERT_COLUMNS}""",
        *_params(fields),
    )
    return _rule(row)


async def replace_alert(db: Queryable, alert_id: int, fields: AlertFields) -> AlertRule:
    """PUT semantics: every client field is replaced; the engine's ``state`` restarts with the rule."""
    if not await db.fetchval("SELECT EXISTS (SELECT 1 FROM alerts WHERE id = $1)", alert_id):
        raise NotFoundError(f"alert {alert_id} not found", details={"alert_id": alert_id})
    await _check_refs(db, fields)
    row = await db.fetchrow(
        f"""UPDATE alerts SET name = $2, enabled = $3, device_id = $4, metric_type = $5,
                condition = $6::text::jsonb, severity = $7, notify = $8::text::jsonb, cooldown_seconds = $9,
                state = '{{}}'::jsonb, updated_at = now()
            WHERE id = $1
            RETURNING {_ALERT_COLUMNS}""",
        alert_id,
        *_params(fields),
    )
    if row is None:
        raise NotFoundError(f"alert {alert_id} not found", details={"alert_id": alert_id})
    return _rule(row)


async def delete_alert(db: Queryable, alert_id: int) -> None:
    """Deletes the rule and (by the foreign key's cascade) its events."""
    if await db.execute("DELETE FROM alerts WHERE id = $1", alert_id) == "DELETE 0":
        raise NotFoundError(f"alert {alert_id} not found", details={"alert_id": alert_id})


_EVENTS_SQL: Final = f"""
SELECT {_EVENT_COLUMNS} FROM alert_events
WHERE ($1::bigint IS NULL OR alert_id = $1)
  AND ($2::text IS NULL OR device_id = $2)
  AND ($3::timestamptz IS NULL OR triggered_at >= $3)
  AND ($4::timestamptz IS NULL OR triggered_at < $4)
  AND (NOT $5::boolean OR acknowledged_at IS NULL)
ORDER BY triggered_at DESC, id DESC
LIMIT $6
"""


async def list_events(
    db: Queryable,
    *,
    alert_id: int | None = None,
    device_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    unacknowledged: bool = False,
    limit: int = 100,
) -> list[AlertEvent]:
    """Newest first."""
    for name, value in (("from", start), ("to", end)):
        try:
            if value is not None:
                value.astimezone(UTC)
        except OverflowError:
            raise ValidationError(f"'{name}' is outside the supported range of times") from None
    if start is not None and end is not None and start >= end:
        raise ValidationError(
            "'from' must be earlier than 'to'", details={"from": start.isoformat(), "to": end.isoformat()}
        )
    rows = await db.fetch(_EVENTS_SQL, alert_id, device_id, start, end, unacknowledged, limit)
    return [_event(r) for r in rows]


async def acknowledge_event(db: Queryable, event_id: int, by: str) -> AlertEvent:
    """Marks the event acknowledged; acknowledging twice keeps the first acknowledgement (idempotent)."""
    row = await db.fetchrow(
        f"""UPDATE alert_events
            SET acknowledged_at = coalesce(acknowledged_at, now()),
                acknowledged_by = CASE WHEN acknowledged_at IS NULL THEN $2 ELSE acknowledged_by END
            WHERE id = $1
            RETURNING {_EVENT_COLUMNS}""",
        event_id,
        by,
    )
    if row is None:
        raise NotFoundError(f"alert event {event_id} not found", details={"event_id": event_id})
    return _event(row)
