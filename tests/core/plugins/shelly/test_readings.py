"""The mapping of recorded Shelly answers to readings: channels, canonical units (the unit traps),
power factor as a ratio, skipped invalid values, malformed answers named by their field."""

from __future__ import annotations

from typing import Any

import pytest

from aetherlens.plugins.builtin.shelly import readings as rd

from .loopback import fixture


def by_channel(items: list[rd.Reading]) -> dict[str | None, dict[str, float]]:
    out: dict[str | None, dict[str, float]] = {}
    for r in items:
        assert (r.metric_type, r.unit) in {(m, u) for m, u in rd.UNITS.items()} | {("relay_state", "state")}
        assert r.metric_type not in out.setdefault(r.channel, {}), f"{r.channel} {r.metric_type} twice"
        out[r.channel][r.metric_type] = r.value
    return out


def test_gen1_plug_s_energy_is_watt_minutes() -> None:
    data = fixture("gen1_plug_s.json")
    layout = rd.gen1_layout(data["settings"], data["status"])
    assert [(c.key, c.switchable) for c in layout.channels] == [("0", True)] and not layout.has_total
    assert layout.device_id("plug", "0") == "plug"  # one channel: the device itself
    got = by_channel(rd.gen1_readings(data["status"]))
    meter = data["status"]["meters"][0]
    assert meter["total"] == 2632  # recorded: watt-minutes
    assert got == {
        "0": {
            "power": meter["power"],
            "energy": pytest.approx(2632 / 60 / 1000, rel=1e-12),
            "relay_state": 0.0,
            "temperature": 24.14,
        }
    }


def test_gen1_em_wh_counters_and_signed_pf() -> None:
    status = fixture("gen1_em.json")["status"]
    layout = rd.gen1_layout({}, status)
    assert [(c.key, c.switchable) for c in layout.channels] == [("0", False), ("1", False)]
    assert not layout.has_total and layout.device_id("em", "1") == "em_1"
    got = by_channel(rd.gen1_readings(status))
    assert got["0"] == {
        "power": -620.34,  # exporting
        "voltage": 235.68,
        "power_factor": 0.66,  # recorded -0.66: the sign is the direction, the ratio is 0..1
        "energy": pytest.approx(401.4729, rel=1e-12),  # recorded 401472.9 Wh
        "energy_exported": pytest.approx(653.6737, rel=1e-12),
    }
    assert got["1"]["energy"] == pytest.approx(173.4113) and got["1"]["energy_exported"] == pytest.approx(
        0.2942
    )
    assert set(got) == {"0", "1"}  # the contactor relay is not a channel


def test_gen1_3em_phases_and_total_power() -> None:
    status = fixture("gen1_3em.json")["status"]
    layout = rd.gen1_layout({}, status)
    assert [c.key for c in layout.channels] == ["0", "1", "2"] and layout.has_total
    got = by_channel(rd.gen1_readings(status))
    for i, meter in enumerate(status["emeters"]):
        assert got[str(i)] == {
            "power": meter["power"],
            "voltage": meter["voltage"],
            "current": meter["current"],
            "power_factor": meter["pf"],
            "energy": pytest.approx(meter["total"] / 1000, rel=1e-12),
            "energy_exported": pytest.approx(meter["total_returned"] / 1000, rel=1e-12),
        }
    assert got[None] == {"power": 212.85}
    assert got["0"]["energy"] == pytest.approx(1686.2972)


def test_gen1_invalid_meter_is_skipped() -> None:
    status = fixture("gen1_3em.json")["status"]
    status["emeters"][1]["is_valid"] = False
    assert "1" not in by_channel(rd.gen1_readings(status))


def test_gen2_plus_plug_s() -> None:
    data = fixture("gen2_plus_plug_s.json")
    layout = rd.gen2_layout(data["config"], data["status"])
    assert [(c.key, c.switchable) for c in layout.channels] == [("0", True)]
    got = by_channel(rd.gen2_readings(data["status"]))
    assert got == {
        "0": {
            "power": 2.7,
            "voltage": 227.9,
            "current": 0.121,
            "energy": pytest.approx(7.258589, rel=1e-12),  # aenergy.total 7258.589 Wh
            "temperature": 32.1,
            "relay_state": 1.0,
        }
    }


def test_gen2_2pm_per_channel() -> None:
    data = fixture("gen2_plus_2pm.json")
    layout = rd.gen2_layout(data["config"], data["status"])
    assert [(c.key, c.switchable) for c in layout.channels] == [("0", True), ("1", True)]
    assert layout.device_id("pm", "0") == "pm_0"
    got = by_channel(rd.gen2_readings(data["status"]))
    assert got["0"]["energy"] == pytest.approx(62.758285) and got["1"]["energy"] == pytest.approx(61.917211)
    assert (got["0"]["voltage"], got["1"]["voltage"]) == (237.0, 237.1)
    assert got["0"]["frequency"] == 50.0 and got["0"]["power_factor"] == 0.0
    only_one = by_channel(rd.gen2_readings(data["status"], {"switch:1"}))
    assert set(only_one) == {"1"}


def test_gen2_ret_aenergy_is_energy_exported() -> None:
    status: dict[str, Any] = fixture("gen2_plus_2pm.json")["status"]
    status["switch:0"]["ret_aenergy"] = {"total": 1234.5, "by_minute": [0, 0, 0], "minute_ts": 0}
    assert by_channel(rd.gen2_readings(status))["0"]["energy_exported"] == pytest.approx(1.2345)


def test_gen2_pro_3em() -> None:
    status = fixture("gen2_pro_3em.json")["status"]
    layout = rd.gen2_layout({}, status)
    assert [(c.key, c.switchable) for c in layout.channels] == [("a", False), ("b", False), ("c", False)]
    assert layout.has_total and layout.device_id("m", None) == "m" and layout.device_id("m", "a") == "m_a"
    got = by_channel(rd.gen2_readings(status))
    em, data = status["em:0"], status["emdata:0"]
    for p in "abc":
        assert got[p] == {
            "power": em[f"{p}_act_power"],
            "voltage": em[f"{p}_voltage"],
            "current": em[f"{p}_current"],
            "power_factor": em[f"{p}_pf"],
            "frequency": em[f"{p}_freq"],
            "energy": pytest.approx(data[f"{p}_total_act_energy"] / 1000, rel=1e-12),
            "energy_exported": pytest.approx(data[f"{p}_total_act_ret_energy"] / 1000, rel=1e-12),
        }
    assert got[None] == {
        "power": 558.965,
        "current": 3.856,
        "energy": pytest.approx(2589.77339, rel=1e-12),
        "energy_exported": pytest.approx(1.02661, rel=1e-12),
        "temperature": status["temperature:0"]["tC"],
    }


def test_gen2_pro_em_channels_leave_out_the_contactor() -> None:
    status = fixture("gen2_pro_em_status.json")["status"]
    layout = rd.gen2_layout({}, status)
    assert [(c.key, c.switchable) for c in layout.channels] == [("0", False), ("1", False)]
    got = by_channel(rd.gen2_readings(status))
    assert got["1"] == {
        "power": 5080.3,
        "voltage": 224.6,
        "current": 22.78,
        "power_factor": 0.99,
        "frequency": 50.0,
        "energy": pytest.approx(6.6449),
        "energy_exported": pytest.approx(2.59526),
    }
    assert set(got) == {"0", "1"}


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"switch:0": {"apower": "n/a"}}, "switch:0.apower is 'n/a', not a number"),
        ({"switch:0": {"output": "yes"}}, "switch:0.output is 'yes'"),
        ({"switch:0": [1]}, "switch:0 is list, not an object"),
        ({"emdata:0": {"total_act": True}}, "emdata:0.total_act is True"),
    ],
)
def test_gen2_malformed_names_the_field(status: dict[str, Any], message: str) -> None:
    with pytest.raises(rd.Malformed, match=message.replace("(", r"\(")):
        rd.gen2_readings(status)


def test_gen1_malformed_names_the_field() -> None:
    with pytest.raises(rd.Malformed, match=r"meters\[0\].power is 'x'"):
        rd.gen1_readings({"meters": [{"power": "x"}], "relays": []})
    with pytest.raises(rd.Malformed, match=r"status\.emeters is dict"):
        rd.gen1_readings({"emeters": {}})
