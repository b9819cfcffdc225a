"""Cloud cost shapes: rows of ``cloud_costs`` (filtered by provider, account and day range) and the
per-account month summary."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from aetherlens.api.routing import ApiModel


class CloudCostQuery(ApiModel):
    provider: str | None = Field(default=None, min_length=1, description="e.g. aws, azure")
    account: str | None = Field(
        default=None, min_length=1, description="AWS account id, Azure subscription id"
    )
    from_: date | None = Field(default=None, alias="from", description="first day (inclusive)")
    to: date | None = Field(default=None, description="last day (exclusive)")


class CloudCostOut(BaseModel):
    day: date = Field(description="a UTC calendar day, as the provider bills it")
    provider: str
    account: str | None
    service: str | None
    resource_group: str | None
    region: str | None
    amount: float = Field(description="in `currency`, as the provider reported it")
    currency: str
    kind: str | None = Field(description="actual | forecast")
    estimated: bool = Field(
        default=False, description="an actual the provider has not finalised (today so far)"
    )


class CloudCostList(BaseModel):
    items: list[CloudCostOut]


class CloudSummaryQuery(ApiModel):
    provider: str | None = Field(default=None, min_length=1, description="e.g. aws, azure")
    account: str | None = Field(default=None, min_length=1)


class CloudSummaryOut(BaseModel):
    provider: str
    account: str | None
    currency: str | None = Field(description="the currency of the account's records (null: budget only)")
    month_to_date: float | None = Field(
        description="actual cost of the current calendar month of UTC days, today so far included"
    )
    forecast_month: float | None = Field(
        description="month to date + the provider's forecast for the rest of the month (null without one)"
    )
    budget: float | None = Field(description="the monthly budget configured in the plugin (null: none)")
    estimated_today: float | None = Field(description="today's cost so far (an estimate; null: none yet)")


class CloudSummaryList(BaseModel):
    items: list[CloudSummaryOut]
