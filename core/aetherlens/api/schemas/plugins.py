"""Plugin shapes: the supervisor's status (never config values that are secrets) and config updates."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aetherlens.api.routing import ApiModel


class PluginOut(BaseModel):
    """The supervisor's status report; further health fields pass through as they are."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="plugin instance id (plugins.<instance>)")
    plugin: str | None = Field(default=None, description="id of the plugin (manifest) this instance runs")
    name: str | None = None
    version: str | None = None
    enabled: bool | None = None
    state: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    last_error: str | None = None


class PluginDetail(PluginOut):
    config: dict[str, Any] = Field(
        default_factory=dict, description="stored config; secret values are shown as ********"
    )
    secrets: list[str] = Field(default_factory=list, description="names of the stored (encrypted) secrets")


class PluginList(BaseModel):
    items: list[PluginOut]


class PluginConfigIn(ApiModel):
    config: dict[str, Any] = Field(
        description=(
            "the plugin's whole config (validated against its manifest's schema); a secret given as "
            "******** keeps the stored value"
        )
    )
    enabled: bool | None = Field(default=None, description="default: unchanged")
