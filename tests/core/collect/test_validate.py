"""Validation and normalisation without a database: each rejection reason, each unit conversion."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aetherlens.collect.normalize import UnitTable
from aetherlens.collect.validate import Validator
from aetherlens.models import Metric, MetricType

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def validator(*extra: MetricType) -> Validator:
    return Validator(UnitTable(extra), max_future_seconds=300, raw_days=90)


def good(**overrides: object) -> dict[str, object]:
    item: dict[str, object] = {
        "time": "2026-11-25T11:59:00+00:00",
        "device_id": "plug.kitchen-1",
        "metric_type": "power",
        "value": 42.5,
    }
    item.update(overrides)
    return item


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"value": math.nan}, "value must be a finite number, got nan"),
        ({"value": math.inf}, "value must be a finite number, got inf"),
        ({"value": -math.inf}, "value must be a finite number"),
        ({"value": "12"}, "value must be a finite number, got str"),
        ({"value": True}, "value must be a finite number, got bool"),
        ({"value": None}, "value must be a finite number"),
        ({"value": 10**400}, "too large"),
        ({"metric_type": "humidity"}, "unknown metric_type 'humidity'"),
        ({"metric_type": 7}, "metric_type must be a string"),
        ({"unit": "kV", "metric_type": "voltage"}, "unit 'kV' is not accepted for voltage (accepted: V, mV)"),
        ({"unit": "W", "metric_type": "energy"}, "unit 'W' is not accepted for energy"),
        ({"unit": ["W"]}, "unit must be a string"),
        ({"time": "2026-11-25T11:59:00"}, "has no UTC offset"),
        ({"time": "yesterday"}, "is not ISO 8601"),
        ({"time": math.nan}, "not a usable epoch timestamp"),
        ({"time": 1e300}, "not a usable epoch timestamp"),
        ({"time": [1]}, "time must be ISO 8601 text or epoch seconds"),
        ({"time": "2026-11-25T12:10:00Z"}, "in the future (collector.max_future_seconds)"),
        ({"time": "2026-08-01T00:00:00Z"}, "older than the raw retention of 90 days"),
        ({"device_id": "has space"}, "device_id 'has space' is invalid"),
        ({"device_id": "-leading"}, "is invalid"),
        ({"device_id": "x" * 129}, "is invalid"),
        ({"device_id": "ok\n"}, "is invalid"),
        ({"device_id": 12}, "device_id 12 is invalid"),
        ({"tags": {"room": 1}}, "tag 'room' must map a string to a string"),
        ({"tags": ["a"]}, "tags must be an object of string to string, got list"),
        ({"tags": {"a": "b\x00"}}, "NUL"),
        ({"tags": {f"k{i}": "v" for i in range(65)}}, "too many tags"),
    ],
)
def test_each_bad_metric_gets_its_reason(overrides: dict[str, object], reason: str) -> None:
    checked = validator().check([good(), good(**overrides), good(value=1)], now=NOW)
    assert [r.index for r in checked.rejected] == [1]
    assert reason in checked.rejected[0].reason
    # The good neighbours on both sides are kept.
    assert [row[3] for row in checked.rows] == [42.5, 1.0]
    assert checked.indexes == [0, 2]


def test_missing_fields_and_non_objects_are_named() -> None:
    checked = validator().check([{"device_id": "a", "value": 1}, "power=5", good()], now=NOW)
    reasons = {r.index: r.reason for r in checked.rejected}
    assert reasons[0] == "missing field(s): time, metric_type"
    assert reasons[1] == "a metric must be an object, got str"
    assert len(checked.rows) == 1


@pytest.mark.parametrize(
    ("metric_type", "unit", "value", "canonical", "expected"),
    [
        ("power", "kW", 1.5, "W", 1500.0),
        ("power", "MW", 0.002, "W", 2000.0),
        ("power", "W", -300.0, "W", -300.0),
        ("power", None, 7.0, "W", 7.0),
        ("energy", "Wh", 1500.0, "kWh", 1.5),
        ("energy", "MWh", 0.25, "kWh", 250.0),
        ("energy_exported", "Wh", 500.0, "kWh", 0.5),
        ("voltage", "mV", 230500.0, "V", 230.5),
        ("current", "mA", 250.0, "A", 0.25),
        ("power_factor", "%", 95.0, "ratio", 0.95),
        ("power_factor", "ratio", 0.9, "ratio", 0.9),
        ("frequency", "Hz", 50.0, "Hz", 50.0),
        ("temperature", "°F", 212.0, "°C", 100.0),
        ("temperature", "°F", 32.0, "°C", 0.0),
        ("temperature", "°C", 21.5, "°C", 21.5),
    ],
)
def test_units_are_converted_to_canonical(
    metric_type: str, unit: str | None, value: float, canonical: str, expected: float
) -> None:
    item = good(metric_type=metric_type, value=value)
    if unit is not None:
        item["unit"] = unit
    checked = validator().check([item], now=NOW)
    assert checked.rejected == []
    (row,) = checked.rows
    assert row[4] == canonical
    assert row[3] == pytest.approx(expected)
    assert type(row[3]) is float


def test_times_in_every_accepted_form() -> None:
    epoch = NOW.timestamp() - 60
    items = [
        good(time="2026-11-25T11:59:00Z"),
        good(time="2026-11-25T12:59:00+01:00"),
        good(time=int(epoch)),
        good(time=epoch + 0.25),
        Metric(NOW - timedelta(minutes=1), "m1", "power", 3, "kW"),
        Metric(datetime(2026, 11, 25, 6, 59, tzinfo=timezone(timedelta(hours=-5))), "m2", "power", 1.0, "W"),
    ]
    checked = validator().check(items, now=NOW)
    assert checked.rejected == []
    expected = NOW - timedelta(minutes=1)
    assert [row[0] for row in checked.rows] == [
        expected,
        expected,
        expected,
        expected + timedelta(seconds=0.25),
        expected,
        expected,
    ]
    assert checked.rows[4][3] == 3000.0


def test_naive_datetime_in_a_metric_is_rejected() -> None:
    checked = validator().check([Metric(datetime(2026, 11, 25, 11, 59), "a", "power", 1.0, "W")], now=NOW)
    assert checked.rejected[0].reason.startswith("time has no UTC offset")


def test_tags_become_json_text_and_empty_tags_none() -> None:
    checked = validator().check([good(tags={"phase": "L1"}), good(tags={})], now=NOW)
    assert [row[5] for row in checked.rows] == ['{"phase":"L1"}', None]


def test_plugin_declared_types_are_accepted_with_their_units() -> None:
    humidity = MetricType("humidity", "ratio", {"ratio": (1.0, 0.0), "%": (0.01, 0.0)})
    checked = validator(humidity).check(
        [good(metric_type="humidity", value=55, unit="%"), good(metric_type="pressure")], now=NOW
    )
    assert checked.rows[0][2:5] == ("humidity", 0.55, "ratio")
    assert "unknown metric_type 'pressure'" in checked.rejected[0].reason


def test_a_plugin_cannot_redefine_a_builtin_type() -> None:
    fake = MetricType("power", "kW", {"kW": (1.0, 0.0)})
    checked = validator(fake).check([good(unit="kW", value=2)], now=NOW)
    assert checked.rows[0][3:5] == (2000.0, "W")


def test_a_whole_batch_of_garbage_never_raises() -> None:
    junk: list[object] = [
        None,
        1,
        [],
        {"time": {}},
        {"value": object()},
        good(value=float("nan")),
        {"time": None, "device_id": None, "metric_type": None, "value": None},
    ]
    checked = validator().check(junk, now=NOW)
    assert checked.rows == []
    assert sorted(r.index for r in checked.rejected) == list(range(len(junk)))
