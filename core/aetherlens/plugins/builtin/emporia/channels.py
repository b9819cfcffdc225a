"""Emporia devices and channels as AetherLens devices, and minute usage as power readings.

One AetherLens device per metered channel: a Vue's mains (channel ``1,2,3``) is ``emporia_<gid>_mains``,
each branch circuit ``emporia_<gid>_<channelNum>`` (``Balance``, the part of the mains no circuit
measures, too), a smart plug or EV charger (one channel) ``emporia_<gid>``.

Power: ``getDeviceListUsages`` with scale ``1MIN`` and unit ``KilowattHours`` answers the energy of
each channel over the last minute. Its average power is ``kWh x 1000 (W per kW) x 60 (minutes per
hour)`` W, the conversion the Emporia Vue HA integration applies (``scale_usage``). The sign is kept as
reported: a Vue reports export on its mains (and bidirectional circuits) as negative usage, which is
AetherLens's sign for export too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

MAINS: Final = "1,2,3"
WATTS_PER_KWH_PER_MINUTE: Final = 1000.0 * 60.0
_UNSAFE = re.compile(r"[^a-z0-9_.:-]+")


@dataclass(frozen=True, slots=True)
class Channel:
    """One metered channel of the account, as an AetherLens device."""

    device_id: str
    name: str
    type: str  # CONTRACT device type
    gid: int
    channel_num: str
    model: str
    firmware: str


@dataclass(frozen=True, slots=True)
class Usage:
    """One channel's minute usage from a usage answer (kwh None: the cloud has no data for it)."""

    device_id: str
    gid: int
    channel_num: str
    name: str
    kwh: float | None
    time: datetime | None


def is_single(device: Any) -> bool:
    """A plug or an EV charger: one metered channel, the device itself."""
    return device.outlet is not None or device.ev_charger is not None


def device_id(gid: int, channel_num: str, single: bool) -> str:
    if single and channel_num == MAINS:
        return f"emporia_{gid}"
    if channel_num == MAINS:
        return f"emporia_{gid}_mains"
    # Channel numbers are digits or words (Balance, MainsFromGrid); merged circuits may hold commas.
    return f"emporia_{gid}_{_UNSAFE.sub('-', channel_num.lower()).strip('-') or 'channel'}"


def channels(devices: list[Any]) -> dict[str, Channel]:
    """The account's channels from ``get_devices()`` (pyemvue ``VueDevice`` objects), by device id."""
    out: dict[str, Channel] = {}
    for device in devices:
        single = is_single(device)
        for channel in device.channels:
            num = str(channel.channel_num)
            ident = device_id(device.device_gid, num, single)
            out[ident] = Channel(
                device_id=ident,
                name=_name(device, num, channel.name, single),
                type="plug" if single else "meter",
                gid=int(device.device_gid),
                channel_num=num,
                model=str(device.model or ""),
                firmware=str(device.firmware or ""),
            )
    return out


def _name(device: Any, num: str, channel_name: str | None, single: bool) -> str:
    place = device.device_name or device.display_name or f"Emporia {device.device_gid}"
    if channel_name:
        return str(channel_name)
    if single or num == MAINS:
        return str(place)
    return f"{place} channel {num}"


def usages(answer: dict[int, Any], singles: set[int]) -> list[Usage]:
    """Flatten a ``get_device_list_usage`` answer (``VueUsageDevice`` by gid; plugs nest under the Vue
    channel they hang on) into one ``Usage`` per channel. ``singles``: gids of plugs and chargers."""
    out: list[Usage] = []
    for gid, usage_device in answer.items():
        for num, channel in usage_device.channels.items():
            out.append(
                Usage(
                    device_id=device_id(int(gid), str(num), int(gid) in singles),
                    gid=int(gid),
                    channel_num=str(num),
                    name=str(channel.name or ""),
                    kwh=None if channel.usage is None else float(channel.usage),
                    time=usage_device.timestamp,
                )
            )
            if channel.nested_devices:
                out += usages(channel.nested_devices, singles)
    return out


def watts(kwh_last_minute: float) -> float:
    return kwh_last_minute * WATTS_PER_KWH_PER_MINUTE
