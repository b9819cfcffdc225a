"""GET /api/v1/info: what this instance is and which storage capabilities are in use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aetherlens.api.routing import Call, route

# Bumped only on a breaking change of the API (a client refuses a version it does not know).
API_VERSION = 1


class Info(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_id: str
    version: str
    api_version: int = Field(description="bumped only on a breaking change of the API")
    currency: str = Field(description="ISO 4217 code from site.currency")
    timezone: str = Field(description="IANA zone from site.timezone")
    capabilities: dict[str, Any] = Field(
        description="storage capabilities in use, e.g. timescaledb, timescaledb_tsl (booleans)"
    )


@route("GET", "/api/v1/info", scope="read", response=Info, summary="Instance, version and capabilities")
async def get_info(call: Call[None, None]) -> Info:
    ctx = call.ctx
    return Info(
        instance_id=ctx.instance_id,
        version=ctx.version,
        api_version=API_VERSION,
        currency=ctx.settings.site.currency,
        timezone=ctx.settings.site.timezone,
        capabilities=ctx.capabilities.as_dict(),
    )
