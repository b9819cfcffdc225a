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


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        # The database's arithmetic: avg() of 1e200 overflows, products of 5e-324 underflow.
        ({"value": 1e200}, "is outside -1e+09..1e+09 W"),
        ({"metric_type": "temperature", "value": 1e16, "unit": "°C"}, "is outside -273.15..2000"),
        ({"value": 5e-324}, "too close to 0 for the database's arithmetic"),
        ({"value": -1e-20}, "too close to 0"),
        ({"metric_type": "energy", "value": 1e-300, "unit": "kWh"}, "too close to 0"),
        # Physical ranges, checked in the canonical unit.
        ({"metric_type": "power_factor", "value": 1.2}, "power_factor value 1.2 ratio is outside 0..1"),
        ({"metric_type": "power_factor", "value": 120, "unit": "%"}, "outside 0..1 ratio"),
        ({"metric_type": "power_factor", "value": -0.5}, "outside 0..1"),
        ({"metric_type": "energy", "value": -3.0}, "energy value -3 kWh is a counter, it cannot be negative"),
        ({"metric_type": "energy_exported", "value": -1, "unit": "Wh"}, "a counter, it cannot be negative"),
        ({"metric_type": "voltage", "value": 2e6}, "voltage value 2e+06 V is outside -1e+06..1e+06 V"),
        ({"metric_type": "current", "value": 2e8, "unit": "mA"}, "outside -100000..100000 A"),
        ({"metric_type": "frequency", "value": -50}, "outside 0..1000 Hz"),
        ({"metric_type": "temperature", "value": -300}, "outside -273.15..2000 °C"),
        ({"value": 2, "unit": "GW"}, "unit 'GW' is not accepted"),
        ({"value": 2000, "unit": "MW"}, "power value 2e+09 W is outside -1e+09..1e+09 W"),
    ],
)
def test_values_out_of_range_are_rejected_with_the_bound(overrides: dict[str, object], reason: str) -> None:
    checked = validator().check([good(**overrides), good()], now=NOW)
    assert len(checked.rows) == 1, "the good neighbour is kept"
    assert checked.categories == ["range"] if "unit 'GW'" not in reason else ["unit"]
    assert reason in checked.rejected[0].reason


@pytest.mark.parametrize(
    ("metric_type", "value", "unit"),
    [
        ("power", -5000.0, "W"),  # export
        ("power", 0.0, "W"),
        ("power", 1e-15, "W"),
        ("energy", 0.0, "kWh"),
        ("energy", 123456789.0, "kWh"),
        ("power_factor", 1.0, "ratio"),
        ("power_factor", 100.0, "%"),
        ("temperature", -40.0, "°F"),
        ("frequency", 50.0, "Hz"),
        ("current", -80.0, "A"),
    ],
)
def test_values_inside_the_ranges_are_kept(metric_type: str, value: float, unit: str) -> None:
    checked = validator().check([good(metric_type=metric_type, value=value, unit=unit)], now=NOW)
    assert checked.rejected == [] and len(checked.rows) == 1


def test_a_plugin_declared_type_has_its_manifest_range_and_the_magnitude_bound() -> None:
    from aetherlens.plugins.manifest import MetricDeclaration

    humidity = MetricDeclaration(type="humidity", unit="%", minimum=0, maximum=100).as_metric_type()
    co2 = MetricDeclaration(type="grid_co2", unit="g/kWh").as_metric_type()
    pulses = MetricDeclaration(type="pulses", unit="count", counter=True).as_metric_type()
    checked = validator(humidity, co2, pulses).check(
        [
            good(metric_type="humidity", value=55, unit="%"),
            good(metric_type="humidity", value=101, unit="%"),
            good(metric_type="grid_co2", value=-12.5, unit="g/kWh"),
            good(metric_type="grid_co2", value=1e200, unit="g/kWh"),
            good(metric_type="pulses", value=-1, unit="count"),
        ],
        now=NOW,
    )
    assert [row[3] for row in checked.rows] == [55.0, -12.5]
    reasons = [r.reason for r in checked.rejected]
    assert "humidity value 101 % is outside 0..100 %" in reasons[0]
    assert "beyond ±1e+15, the largest magnitude the database's arithmetic can carry" in reasons[1]
    assert "a counter, it cannot be negative" in reasons[2]


def test_a_manifest_range_must_be_ordered_and_within_the_magnitude_bound() -> None:
    import pydantic

    from aetherlens.plugins.manifest import MetricDeclaration

    with pytest.raises(pydantic.ValidationError, match="minimum 5 is above maximum 1"):
        MetricDeclaration(type="x", unit="u", minimum=5, maximum=1)
    with pytest.raises(pydantic.ValidationError, match="less than or equal to 1000000000000000"):
        MetricDeclaration(type="x", unit="u", maximum=1e300)
