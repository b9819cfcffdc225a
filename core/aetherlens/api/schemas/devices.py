"""Device shapes (CONTRACT.md: ``{"id","name","type","room","source","tags"}``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from aetherlens.api.routing import ApiModel
from aetherlens.models import DEVICE_ID_PATTERN

DeviceType = Literal[
    "plug", "meter", "inverter", "battery", "hvac", "appliance", "server", "network", "cloud", "other"
]
Name = Field(min_length=1, max_length=200)


class DeviceCreate(ApiModel):
    id: str = Field(pattern=DEVICE_ID_PATTERN.pattern, description="chosen by the source")
    name: str = Name
    type: DeviceType = "other"
    room: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=200)
    tags: dict[str, str] = Field(default_factory=dict)


class DevicePatch(ApiModel):
    """Only the fields present are changed; ``null`` clears ``room``/``source``."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    type: DeviceType | None = None
    room: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=200)
    tags: dict[str, str] | None = None


class DeviceOut(BaseModel):
    id: str
    name: str
    type: str
    room: str | None
    source: str | None
    tags: dict[str, str]


class DeviceList(BaseModel):
    items: list[DeviceOut]


class ControlRequest(ApiModel):
    action: Literal["on", "off", "toggle"]


class ControlResult(BaseModel):
    state: str
