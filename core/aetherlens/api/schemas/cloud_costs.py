"""Cloud cost shapes: rows of ``cloud_costs`` filtered by provider and day range."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from aetherlens.api.routing import ApiModel


class CloudCostQuery(ApiModel):
    provider: str | None = Field(default=None, min_length=1, description="e.g. aws, azure")
    from_: date | None = Field(default=None, alias="from", description="first day (inclusive)")
    to: date | None = Field(default=None, description="last day (exclusive)")


class CloudCostOut(BaseModel):
    day: date
    provider: str
    account: str | None
    service: str | None
    resource_group: str | None
    region: str | None
    amount: float
    currency: str
    kind: str | None
    estimated: bool = Field(
        default=False, description="an actual the provider has not finalised (today so far)"
    )


class CloudCostList(BaseModel):
    items: list[CloudCostOut]
