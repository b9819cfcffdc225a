"""How one configured (or discovered) Kasa device is reached: its address, transport and credentials.

python-kasa does the protocol; this module only turns the plugin's config into its ``DeviceConfig``.
The legacy transport (XOR over TCP 9999) needs nothing but the address. Newer firmware speaks KLAP
over HTTP and authenticates with the owner's TP-Link account; ``auto`` lets python-kasa try every
transport it knows (``Discover.try_connect_all``) and the one that answered is kept for reconnects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kasa import Credentials, Device, DeviceConfig, Discover
from kasa.deviceconfig import DeviceConnectionParameters, DeviceEncryptionType, DeviceFamily

LEGACY = DeviceConnectionParameters(DeviceFamily.IotSmartPlugSwitch, DeviceEncryptionType.Xor)
# Kasa plugs on KLAP firmware keep the IOT command set and announce KLAP without a login version
# (python-kasa's recorded HS100(UK) 4.1 discovery answer), i.e. KLAP v1.
KLAP = DeviceConnectionParameters(DeviceFamily.IotSmartPlugSwitch, DeviceEncryptionType.Klap)


class UnreachableError(ConnectionError):
    """No transport python-kasa knows got an answer from the device."""


@dataclass
class Target:
    """Where a device is and how to talk to it (``password`` is never shown: repr excludes it)."""

    host: str
    port: int | None = None
    device_id: str | None = None  # the config's id; None = kasa_<MAC>
    name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    transport: str = "legacy"
    discovered: bool = False

    @classmethod
    def from_config(cls, item: dict[str, Any], account: dict[str, Any]) -> Target:
        """``account`` is the plugin-wide ``username``/``password``, used where the item has none."""
        own = item.get("username") is not None
        username = item.get("username") if own else account.get("username")
        password = item.get("password") if own else account.get("password")
        # Credentials mean newer firmware may be out there: let python-kasa find the transport (it
        # tries each once; the one that answered is kept). Without them only legacy can work.
        transport = item.get("transport") or ("auto" if username else "legacy")
        return cls(
            host=str(item["host"]),
            port=item.get("port"),
            device_id=item.get("id"),
            name=item.get("name"),
            username=username,
            password=password,
            transport=transport,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    @property
    def credentials(self) -> Credentials | None:
        if self.username is None:
            return None
        return Credentials(self.username, self.password or "")


def _seconds(timeout: float) -> int:
    # python-kasa's DeviceConfig takes whole seconds; the plugin's own asyncio timeout is the exact one.
    return max(1, math.ceil(timeout))


async def connect(target: Target, timeout: float, known: DeviceConnectionParameters | None) -> Device:
    """A connected and updated python-kasa device (raises what python-kasa raises, or UnreachableError).

    ``known`` is the transport that answered before (kept by the caller), so ``auto`` searches once.
    """
    params = known or {"legacy": LEGACY, "klap": KLAP}.get(target.transport)
    if params is None:  # auto, first contact
        device = await Discover.try_connect_all(
            target.host, port=target.port, timeout=_seconds(timeout), credentials=target.credentials
        )
        if device is None:
            raise UnreachableError(f"no transport python-kasa knows got an answer from {target.address}")
        return device
    config = DeviceConfig(
        host=target.host,
        port_override=target.port,
        timeout=_seconds(timeout),
        credentials=target.credentials,
        connection_type=params,
    )
    return await Device.connect(config=config)
