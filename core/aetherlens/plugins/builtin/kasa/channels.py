"""A python-kasa device as AetherLens devices: one per plug, one per outlet of a strip.

A plug (HS110, KP115, KP125) is one AetherLens device, ``kasa_<MAC>`` or the config's ``id``. A strip
(HS300, KP303) is one AetherLens device per outlet, ``<base>_<n>`` with ``n`` the outlet's position
(0 = the first, as the firmware numbers its child ids 00, 01, ...); the strip itself gives none: the
only total python-kasa offers for it is its own sum of the outlets, which would count every watt twice
wherever AetherLens adds devices up.

Readings come from python-kasa's Energy module, which already turns either firmware style
(``power_mw``/``voltage_mv``/``current_ma``/``total_wh`` or ``power``/``voltage``/``current``/``total``)
into W, V, A and kWh, the canonical units. A device without metering (KP303) has channels without
readings: it is still switched.
"""

from __future__ import annotations

from dataclasses import dataclass

from kasa import Device, Module

# (metric type, Energy module attribute, unit) in the canonical units python-kasa reports
READINGS = (
    ("power", "current_consumption", "W"),
    ("energy", "consumption_total", "kWh"),
    ("voltage", "voltage", "V"),
    ("current", "current", "A"),
)


@dataclass(frozen=True)
class Channel:
    device_id: str
    name: str
    socket: Device  # the plug itself, or the strip's child for an outlet


def base_id(device: Device, configured: str | None) -> str:
    if configured:
        return configured
    mac = (device.mac or "").replace(":", "").replace("-", "").lower()
    if not mac:
        raise ValueError(f"device at {device.host} reports no MAC address: give it an 'id' in the config")
    return f"kasa_{mac}"


def channels(device: Device, base: str, name: str | None) -> list[Channel]:
    title = name or device.alias or device.model
    if not device.children:
        return [Channel(base, title, device)]
    return [
        Channel(f"{base}_{index}", child.alias or f"{title} outlet {index + 1}", child)
        for index, child in enumerate(device.children)
    ]


def readings(channel: Channel) -> list[tuple[str, float, str]]:
    """(metric type, value, unit) of what the channel's meter reported; empty without a meter."""
    energy = channel.socket.modules.get(Module.Energy)
    if energy is None:
        return []
    found = []
    for metric_type, attribute, unit in READINGS:
        value = getattr(energy, attribute, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            found.append((metric_type, float(value), unit))
    return found
