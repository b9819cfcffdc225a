"""Alert rule and event queries against the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from aetherlens.db.queries import alerts as q
from aetherlens.db.queries.devices import create_device
from aetherlens.errors import NotFoundError, ValidationError

T0 = datetime(2026, 3, 1, tzinfo=UTC)
RULE = q.AlertFields(
    name="kettle left on",
    condition={"type": "threshold", "op": ">", "value": 1500.0, "for_seconds": 600},
    device_id="kettle",
    metric_type="power",
    severity="critical",
    notify=[{"type": "log"}],
    cooldown_seconds=60,
)


async def _event(pool: asyncpg.Pool, alert_id: int, minutes: int, device: str = "kettle") -> int:
    # Resolved a minute later: only one event of a rule and series may be open at a time.
    event_id: int = await pool.fetchval(
        """INSERT INTO alert_events
               (alert_id, device_id, triggered_at, resolved_at, severity, value, message, details)
           VALUES ($1, $2, $3::timestamptz, $3::timestamptz + interval '1 minute', 'critical', 2000,
                   'too high', '{"threshold": 1500}')
           RETURNING id""",
        alert_id,
        device,
        T0 + timedelta(minutes=minutes),
    )
    return event_id


async def test_rule_crud_round_trip(pool: asyncpg.Pool) -> None:
    await create_device(pool, device_id="kettle", name="Kettle", type="appliance")
    rule = await q.create_alert(pool, RULE)
    assert rule.as_dict() | {"created_at": None, "updated_at": None} == {
        "id": rule.id,
        "name": "kettle left on",
        "enabled": True,
        "device_id": "kettle",
        "metric_type": "power",
        "condition": {"type": "threshold", "op": ">", "value": 1500.0, "for_seconds": 600},
        "severity": "critical",
        "notify": [{"type": "log"}],
        "cooldown_seconds": 60,
        "created_at": None,
        "updated_at": None,
        "source": "api",
    }
    assert await q.get_alert(pool, rule.id) == rule
    assert [r.id for r in await q.list_alerts(pool)] == [rule.id]

    replaced = await q.replace_alert(
        pool, rule.id, q.AlertFields(name="any power", condition={"type": "no_data", "for_seconds": 60})
    )
    assert (replaced.name, replaced.device_id, replaced.severity, replaced.enabled) == (
        "any power",
        None,
        "warning",
        True,
    )
    assert replaced.updated_at >= rule.updated_at

    await q.delete_alert(pool, rule.id)
    with pytest.raises(NotFoundError):
        await q.get_alert(pool, rule.id)


async def test_unknown_device_is_a_clear_validation_error(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValidationError, match="device 'kettle' does not exist"):
        await q.create_alert(pool, RULE)
    assert await q.list_alerts(pool) == []


async def test_missing_rule_is_not_found(pool: asyncpg.Pool) -> None:
    with pytest.raises(NotFoundError):
        await q.replace_alert(pool, 999, RULE)
    with pytest.raises(NotFoundError):
        await q.delete_alert(pool, 999)


async def test_events_filtered_newest_first_and_ack_is_idempotent(pool: asyncpg.Pool) -> None:
    await create_device(pool, device_id="kettle", name="Kettle")
    rule = await q.create_alert(pool, RULE)
    other = await q.create_alert(
        pool, q.AlertFields(name="other", condition={"type": "no_data", "for_seconds": 5})
    )
    first = await _event(pool, rule.id, 0)
    second = await _event(pool, rule.id, 10)
    third = await _event(pool, other.id, 20, device="meter")

    assert [e.id for e in await q.list_events(pool)] == [third, second, first]
    assert [e.id for e in await q.list_events(pool, alert_id=rule.id)] == [second, first]
    assert [e.id for e in await q.list_events(pool, device_id="meter")] == [third]
    window = await q.list_events(pool, start=T0 + timedelta(minutes=5), end=T0 + timedelta(minutes=20))
    assert [e.id for e in window] == [second]
    assert [e.id for e in await q.list_events(pool, limit=1)] == [third]

    acked, data = await q.acknowledge_event(pool, second, "alice")
    assert acked.acknowledged_by == "alice" and acked.acknowledged_at is not None
    assert acked.details == {"threshold": 1500}
    assert data is not None and (data["state"], data["event_id"], data["name"]) == (
        "acknowledged",
        second,
        "kettle left on",
    )
    again, repeat = await q.acknowledge_event(pool, second, "bob")
    assert (again.acknowledged_by, again.acknowledged_at, repeat) == ("alice", acked.acknowledged_at, None)
    assert [t["state"] for t in await q.transitions(pool, second)] == ["acknowledged"]
    assert [e.id for e in await q.list_events(pool, unacknowledged=True)] == [third, first]

    with pytest.raises(NotFoundError):
        await q.acknowledge_event(pool, 10_000, "alice")
    with pytest.raises(ValidationError, match="earlier"):
        await q.list_events(pool, start=T0, end=T0)


async def test_deleting_a_rule_deletes_its_events(pool: asyncpg.Pool) -> None:
    rule = await q.create_alert(
        pool, q.AlertFields(name="r", condition={"type": "no_data", "for_seconds": 5})
    )
    await _event(pool, rule.id, 0)
    await q.delete_alert(pool, rule.id)
    assert await q.list_events(pool) == []
