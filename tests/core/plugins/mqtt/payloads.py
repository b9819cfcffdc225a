"""Recorded MQTT payloads, each with where its shape and values come from.

Shelly: the ``GetStatus`` results of the components, as Shelly's Gen2 API docs document them (fields
and units per component page; values from the docs' examples); a Gen2+ device publishes exactly this
object to ``<prefix>/status/<component>:<id>``. Tasmota: a ``tele/<topic>/SENSOR`` message of a
metering plug as in Tasmota's docs. HA: discovery configs as HA's MQTT discovery docs describe them,
one with abbreviated keys and ``~``.
"""

from __future__ import annotations

from typing import Any, Final

SHELLY_DOCS: Final = "https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/"
TASMOTA_DOCS: Final = "https://tasmota.github.io/docs/JSON-Status-Responses/#energy"
HA_DOCS: Final = "https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery"

# (component, source, payload)
SHELLY: Final[list[tuple[str, str, dict[str, Any]]]] = [
    (
        "switch:0",
        SHELLY_DOCS + "Switch#status",
        {
            "id": 0,
            "source": "timer",
            "output": True,
            "timer_started_at": 1626935739.79,
            "timer_duration": 60,
            "apower": 8.9,
            "voltage": 237.5,
            "freq": 50,
            "current": 0.068,
            "pf": 0.56,
            "aenergy": {"total": 6.532, "by_minute": [45.199, 47.141, 88.397], "minute_ts": 1626935779},
            "ret_aenergy": {"total": 0.0, "by_minute": [0, 0, 0], "minute_ts": 1626935779},
            "temperature": {"tC": 23.5, "tF": 74.4},
        },
    ),
    (
        "em:0",
        SHELLY_DOCS + "EM#status",
        {
            "id": 0,
            "a_current": 4.029,
            "a_voltage": 236.1,
            "a_act_power": 951.2,
            "a_aprt_power": 951.9,
            "a_pf": 1,
            "a_freq": 50,
            "b_current": 4.027,
            "b_voltage": 236.201,
            "b_act_power": -951.1,
            "b_aprt_power": 951.8,
            "b_pf": 1,
            "b_freq": 50,
            "c_current": 3.03,
            "c_voltage": 236.402,
            "c_act_power": 715.4,
            "c_aprt_power": 716.2,
            "c_pf": 1,
            "c_freq": 50,
            "n_current": None,
            "total_current": 11.086,
            "total_act_power": 715.5,
            "total_aprt_power": 2619.9,
            "user_calibrated_phase": [],
        },
    ),
    (
        "emdata:0",
        SHELLY_DOCS + "EMData#status",
        {
            "id": 0,
            "a_total_act_energy": 542.67,
            "a_total_act_ret_energy": 0,
            "b_total_act_energy": 0.26,
            "b_total_act_ret_energy": 536.5,
            "c_total_act_energy": 350.04,
            "c_total_act_ret_energy": 0,
            "total_act": 892.97,
            "total_act_ret": 536.5,
        },
    ),
    (
        "em1:1",
        SHELLY_DOCS + "EM1#status",
        {
            "id": 1,
            "current": 2.598,
            "voltage": 234.9,
            "act_power": 501.8,
            "aprt_power": 612.4,
            "pf": 0.84,
            "freq": 50,
            "calibration": "factory",
        },
    ),
    (
        "em1data:1",
        SHELLY_DOCS + "EM1Data#status",
        {"id": 1, "total_act_energy": 2776.53, "total_act_ret_energy": 0},
    ),
]

# A Sonoff POW-class plug running Tasmota; Time is the device's local time (no offset).
TASMOTA_SENSOR: Final = {
    "source": TASMOTA_DOCS,
    "payload": {
        "Time": "2021-03-19T18:19:10",
        "ENERGY": {
            "TotalStartTime": "2021-03-06T14:06:42",
            "Total": 12.102,
            "Yesterday": 0.507,
            "Today": 0.204,
            "Period": 0,
            "Power": 45,
            "ApparentPower": 50,
            "ReactivePower": 22,
            "Factor": 0.9,
            "Voltage": 230,
            "Current": 0.217,
        },
    },
}
# A two-channel device reports Power (and the other per-relay values) as a list.
TASMOTA_TWO_CHANNEL: Final = {
    "source": TASMOTA_DOCS,
    "payload": {"Time": "2021-03-19T18:19:10", "ENERGY": {"Total": 3.5, "Power": [10, 20], "Voltage": 231}},
}


def ha_configs(prefix: str, base: str) -> dict[str, dict[str, Any]]:
    """Discovery config topics -> payloads (HA_DOCS): two sensors read, two ignored with a reason."""
    device = {"identifiers": [f"{base}-plug"], "name": "Garage plug"}
    return {
        f"{prefix}/sensor/{base}/power/config": {
            "name": "Garage plug power",
            "state_topic": f"{base}/plug/state",
            "unit_of_measurement": "kW",
            "device_class": "power",
            "state_class": "measurement",
            "value_template": "{{ value_json.power }}",
            "unique_id": f"{base}-plug-power",
            "device": device,
        },
        # abbreviated keys and '~', as many firmwares send them
        f"{prefix}/sensor/{base}/energy/config": {
            "~": f"{base}/plug",
            "name": "Garage plug energy",
            "stat_t": "~/energy",
            "unit_of_meas": "Wh",
            "dev_cla": "energy",
            "stat_cla": "total_increasing",
            "uniq_id": f"{base}-plug-energy",
            "dev": {"ids": [f"{base}-plug"], "name": "Garage plug"},
        },
        f"{prefix}/sensor/{base}/humidity/config": {
            "name": "Garage humidity",
            "state_topic": f"{base}/plug/humidity",
            "unit_of_measurement": "%",
            "device_class": "humidity",
        },
        f"{prefix}/sensor/{base}/fancy/config": {
            "name": "Templated power",
            "state_topic": f"{base}/plug/state",
            "device_class": "power",
            "value_template": "{{ (value_json.a + value_json.b) | round(1) }}",
        },
    }
