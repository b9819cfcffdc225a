"""The alert tables' SQL, all of it: ``alerts`` (rules), ``alert_events`` (one per firing episode),
``alert_transitions`` (every firing / resolved / acknowledged, as published) and ``alert_deliveries``
(the webhook outbox).

The rule's ``condition``/``notify`` are stored as JSON objects as the API (or the YAML configuration)
validated them; ``state`` is the engine's own bookkeeping, written only with a transition or by
``save_states``. A transition, its event change, its outbox rows and the rule's new state are written
in one transaction, so after a crash either all of them exist or none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from aetherlens.db.connection import PoolOrConnection, connection
from aetherlens.db.queries import Queryable
from aetherlens.db.queries.devices import device_exists
from aetherlens.errors import NotFoundError, ValidationError

_ALERT_COLUMNS: Final = (
    "id, name, enabled, device_id, metric_type, condition::text, severity, notify::text, cooldown_seconds, "
    "created_at, updated_at, source"
)
_EVENT_COLUMNS: Final = (
    "e.id, e.alert_id, e.device_id, e.triggered_at, e.resolved_at, e.severity, e.value, e.message, "
    "e.details::text, e.acknowledged_at, e.acknowledged_by, a.name, e.resolved_value, e.resolved_message"
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
    source: str = "api"

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
            "source": self.source,
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
    name: str = ""
    resolved_value: float | None = None
    resolved_message: str | None = None

    @property
    def state(self) -> str:
        """firing until resolved; an acknowledged open event is "acknowledged" (IFACE.md)."""
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_at is not None else "firing"

    @property
    def time(self) -> datetime:
        """The time of the event's latest transition."""
        return max(t for t in (self.triggered_at, self.resolved_at, self.acknowledged_at) if t is not None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.id,
            "name": self.name,
            "state": self.state,
            "time": self.time,
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
            "resolved_value": self.resolved_value,
            "resolved_message": self.resolved_message,
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
        source=row[11],
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
        name=row[11],
        resolved_value=row[12],
        resolved_message=row[13],
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
SELECT {_EVENT_COLUMNS} FROM alert_events e JOIN alerts a ON a.id = e.alert_id
WHERE ($1::bigint IS NULL OR e.alert_id = $1)
  AND ($2::text IS NULL OR e.device_id = $2)
  AND ($3::timestamptz IS NULL OR e.triggered_at >= $3)
  AND ($4::timestamptz IS NULL OR e.triggered_at < $4)
  AND (NOT $5::boolean OR e.acknowledged_at IS NULL)
ORDER BY e.triggered_at DESC, e.id DESC
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


async def get_event(db: Queryable, event_id: int) -> AlertEvent:
    row = await db.fetchrow(
        f"SELECT {_EVENT_COLUMNS} FROM alert_events e JOIN alerts a ON a.id = e.alert_id WHERE e.id = $1",
        event_id,
    )
    if row is None:
        raise NotFoundError(f"alert event {event_id} not found", details={"event_id": event_id})
    return _event(row)


# --- the engine's side ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EngineRule:
    """A rule as the engine evaluates it: the definition plus its stored per-series state."""

    rule: AlertRule
    state: dict[str, Any]


async def engine_rules(db: Queryable) -> list[EngineRule]:
    rows = await db.fetch(f"SELECT {_ALERT_COLUMNS}, state::text FROM alerts WHERE enabled ORDER BY id")
    return [EngineRule(rule=_rule(r), state=orjson.loads(r[12])) for r in rows]


async def rules_version(db: Queryable) -> tuple[int, datetime | None]:
    """Changes when a rule is created, changed or deleted (count + latest update)."""
    row = await db.fetchrow("SELECT count(*), max(updated_at) FROM alerts")
    return int(row[0]), row[1]


async def open_events(db: Queryable) -> list[tuple[int, str | None, int, datetime]]:
    """(alert_id, device_id, event_id, triggered_at) of every unresolved event."""
    rows = await db.fetch(
        "SELECT alert_id, device_id, id, triggered_at FROM alert_events WHERE resolved_at IS NULL"
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def save_states(db: Queryable, states: dict[int, dict[str, Any]]) -> None:
    """Store the engine's per-rule state (pending timers, cool-downs) between transitions."""
    if not states:
        return
    ids = list(states)
    await db.execute(
        """UPDATE alerts a SET state = s.state::jsonb
           FROM unnest($1::bigint[], $2::text[]) AS s(id, state) WHERE a.id = s.id""",
        ids,
        [orjson.dumps(states[i]).decode() for i in ids],
    )


_TRANSITION_SQL: Final = """
WITH t AS (
    INSERT INTO alert_transitions (event_id, alert_id, state, time, data)
    VALUES ($1, $2, $3, $4, $5::text::jsonb) RETURNING id
)
INSERT INTO alert_deliveries (transition_id, url, next_attempt_at)
SELECT t.id, u, $7 FROM t, unnest($6::text[]) AS u
ON CONFLICT DO NOTHING
"""


def webhook_urls(notify: list[Any]) -> list[str]:
    return sorted(
        {str(t["url"]) for t in notify if isinstance(t, dict) and t.get("type") == "webhook" and t.get("url")}
    )


@dataclass(frozen=True, slots=True)
class TransitionIn:
    """One transition the engine decided; ``data`` is filled in here (it needs the event id)."""

    rule: AlertRule
    device_id: str | None
    state: str  # firing | resolved
    time: datetime
    value: float | None
    message: str
    details: dict[str, Any]
    rule_state: dict[str, Any]  # the rule's whole state after this transition
    state_key: str  # which series of the rule (its key in ``rule_state``)
    due: datetime  # when its webhooks are first attempted (the engine's clock; ``time`` is the reading's)
    event_id: int | None = None  # resolved: the event it closes


def transition_data(
    rule: AlertRule,
    event_id: int,
    device_id: str | None,
    state: str,
    value: float | None,
    message: str,
    t: datetime,
) -> dict[str, Any]:
    """The one shape of a transition (IFACE.md): the stream's ``alerts`` data and the webhook body's."""
    return {
        "alert_id": rule.id,
        "event_id": event_id,
        "name": rule.name,
        "device_id": device_id,
        "severity": rule.severity,
        "state": state,
        "value": value,
        "message": message,
        "time": t.astimezone(UTC).isoformat(),
    }


async def record_transition(conn: Any, tr: TransitionIn) -> tuple[int | None, dict[str, Any] | None]:
    """Store ``tr`` (event row, transition, outbox rows, the rule's state) in one transaction.

    Returns (event id, published data). A "firing" for a series that already has an open event (written
    before a crash) adopts that event and publishes nothing: (its id, None). (None, None) when the rule is
    gone or the event to resolve is already resolved."""
    async with conn.transaction():
        data: dict[str, Any] | None = None
        if tr.state == "firing":
            event_id = await conn.fetchval(
                """INSERT INTO alert_events
                       (alert_id, device_id, triggered_at, severity, value, message, details)
                   SELECT $1, $2, $3, $4, $5, $6, $7::text::jsonb
                   WHERE EXISTS (SELECT 1 FROM alerts WHERE id = $1)
                   ON CONFLICT (alert_id, coalesce(device_id, '')) WHERE resolved_at IS NULL DO NOTHING
                   RETURNING id""",
                tr.rule.id,
                tr.device_id,
                tr.time,
                tr.rule.severity,
                tr.value,
                tr.message,
                orjson.dumps(tr.details).decode(),
            )
            fresh = event_id is not None
            if not fresh:
                event_id = await conn.fetchval(
                    """SELECT id FROM alert_events WHERE alert_id = $1
                       AND coalesce(device_id, '') = coalesce($2, '') AND resolved_at IS NULL""",
                    tr.rule.id,
                    tr.device_id,
                )
        else:
            event_id = await conn.fetchval(
                """UPDATE alert_events SET resolved_at = $2, resolved_value = $3, resolved_message = $4
                   WHERE id = $1 AND resolved_at IS NULL RETURNING id""",
                tr.event_id,
                tr.time,
                tr.value,
                tr.message,
            )
            fresh = event_id is not None
        if fresh:
            data = transition_data(tr.rule, event_id, tr.device_id, tr.state, tr.value, tr.message, tr.time)
            await conn.execute(
                _TRANSITION_SQL,
                event_id,
                tr.rule.id,
                tr.state,
                tr.time,
                orjson.dumps(data).decode(),
                webhook_urls(tr.rule.notify),
                tr.due,
            )
        rule_state = dict(tr.rule_state)
        if tr.state == "firing" and event_id is not None:  # the firing state learns its event id here
            rule_state[tr.state_key] = {**rule_state.get(tr.state_key, {}), "event_id": event_id}
        await conn.execute(
            "UPDATE alerts SET state = $2::text::jsonb WHERE id = $1",
            tr.rule.id,
            orjson.dumps(rule_state).decode(),
        )
    return event_id, data


async def acknowledge_event(
    db: PoolOrConnection, event_id: int, by: str, now: datetime | None = None
) -> tuple[AlertEvent, dict[str, Any] | None]:
    """Mark the event acknowledged and record an "acknowledged" transition (with its outbox rows).
    Idempotent: a second acknowledgement keeps the first one's time and name and records nothing."""
    now = now or datetime.now(UTC)
    async with connection(db) as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE alert_events SET acknowledged_at = $3, acknowledged_by = $2
               WHERE id = $1 AND acknowledged_at IS NULL RETURNING id""",
            event_id,
            by,
            now,
        )
        event = await get_event(conn, event_id)
        if row is None:
            return event, None
        rule = await get_alert(conn, event.alert_id)
        data = transition_data(
            rule, event.id, event.device_id, "acknowledged", event.value, event.message, now
        )
        await conn.execute(
            _TRANSITION_SQL,
            event.id,
            rule.id,
            "acknowledged",
            now,
            orjson.dumps(data).decode(),
            webhook_urls(rule.notify),
            now,
        )
    return event, data


async def transitions(db: Queryable, event_id: int | None = None) -> list[dict[str, Any]]:
    """Stored transitions (oldest first), as published."""
    rows = await db.fetch(
        "SELECT data::text FROM alert_transitions WHERE ($1::bigint IS NULL OR event_id = $1) ORDER BY id",
        event_id,
    )
    return [orjson.loads(r[0]) for r in rows]


# --- the webhook outbox ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    url: str
    attempts: int
    data: dict[str, Any]


async def claim_due_deliveries(
    db: Queryable, now: datetime, lease_until: datetime, limit: int
) -> list[Delivery]:
    """Rows due at ``now``, leased until ``lease_until`` (their next attempt time moves there), so two
    senders never attempt the same row at once; a sender that dies mid-attempt leaves it due again later."""
    rows = await db.fetch(
        """WITH due AS (
               SELECT id FROM alert_deliveries
               WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
               ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
           ), leased AS (
               UPDATE alert_deliveries d SET next_attempt_at = $2 FROM due WHERE d.id = due.id
               RETURNING d.id, d.url, d.attempts, d.transition_id
           )
           SELECT l.id, l.url, l.attempts, t.data::text
           FROM leased l JOIN alert_transitions t ON t.id = l.transition_id ORDER BY l.id""",
        now,
        lease_until,
        limit,
    )
    return [Delivery(r[0], r[1], r[2], orjson.loads(r[3])) for r in rows]


async def next_delivery_at(db: Queryable) -> datetime | None:
    value: datetime | None = await db.fetchval(
        "SELECT min(next_attempt_at) FROM alert_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL"
    )
    return value


async def mark_delivered(db: Queryable, delivery_id: int, now: datetime) -> None:
    await db.execute(
        "UPDATE alert_deliveries SET delivered_at = $2, attempts = attempts + 1, last_error = NULL"
        " WHERE id = $1",
        delivery_id,
        now,
    )


async def mark_attempt_failed(
    db: Queryable, delivery_id: int, error: str, next_at: datetime | None, now: datetime
) -> None:
    """Count a failed attempt: retry at ``next_at``, or give up (``failed_at``) when it is None."""
    await db.execute(
        """UPDATE alert_deliveries SET attempts = attempts + 1, last_error = $2,
               next_attempt_at = coalesce($3, next_attempt_at),
               failed_at = CASE WHEN $3::timestamptz IS NULL THEN $4::timestamptz END
           WHERE id = $1""",
        delivery_id,
        error[:500],
        next_at,
        now,
    )


async def delivery_backlog(db: Queryable, failed_since: datetime) -> dict[str, int]:
    """Outbox rows waiting (``pending``; ``retrying``: after a failed attempt) and given up since
    ``failed_since`` (``failed``)."""
    row = await db.fetchrow(
        """SELECT count(*) FILTER (WHERE delivered_at IS NULL AND failed_at IS NULL),
                  count(*) FILTER (WHERE delivered_at IS NULL AND failed_at IS NULL AND attempts > 0),
                  count(*) FILTER (WHERE failed_at > $1)
           FROM alert_deliveries""",
        failed_since,
    )
    return {"pending": int(row[0]), "retrying": int(row[1]), "failed": int(row[2])}


# --- rules declared in the configuration ------------------------------------------------------------------
async def sync_config_rules(conn: Any, rules: list[AlertFields]) -> list[AlertRule]:
    """Make the ``source = 'config'`` rules exactly ``rules`` (keyed by name): new ones are created,
    changed ones replaced (their state restarts), unchanged ones untouched, vanished ones deleted."""
    out: list[AlertRule] = []
    async with conn.transaction():
        names = [r.name for r in rules]
        await conn.execute(
            "DELETE FROM alerts WHERE source = 'config' AND NOT (config_key = ANY($1::text[]))", names
        )
        for fields in rules:
            await _check_refs(conn, fields)
            row = await conn.fetchrow(
                f"""INSERT INTO alerts (name, enabled, device_id, metric_type, condition, severity, notify,
                                        cooldown_seconds, source, config_key)
                    VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7::text::jsonb, $8, 'config', $1)
                    ON CONFLICT (config_key) DO UPDATE SET
                        enabled = excluded.enabled, device_id = excluded.device_id,
                        metric_type = excluded.metric_type, condition = excluded.condition,
                        severity = excluded.severity, notify = excluded.notify,
                        cooldown_seconds = excluded.cooldown_seconds, state = '{{}}'::jsonb,
                        updated_at = now()
                    WHERE (alerts.enabled, alerts.device_id, alerts.metric_type, alerts.condition,
                           alerts.severity, alerts.notify, alerts.cooldown_seconds)
                          IS DISTINCT FROM
                          (excluded.enabled, excluded.device_id, excluded.metric_type, excluded.condition,
                           excluded.severity, excluded.notify, excluded.cooldown_seconds)
                    RETURNING {_ALERT_COLUMNS}""",
                *_params(fields),
            )
            if row is None:
                row = await conn.fetchrow(
                    f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE config_key = $1", fields.name
                )
            out.append(_rule(row))
    return out
