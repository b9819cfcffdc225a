"""Cost and tariff shapes (CONTRACT.md: costs/*, tariffs, bills); the numbers come from
aetherlens.costs.service.

Range ends are ISO dates or datetimes; one without an offset is read in the tariff's zone (a date is local
midnight), as the CLI's ``bill`` does, so the same arguments give the same numbers in both places.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aetherlens.api.routing import ApiModel

TIME_HELP = "ISO date or datetime; without an offset it is the tariff's local time (a date = local midnight)"


# Parsed and range-checked by the cost service (one check for the CLI and the API); its message names
# the parameter.
RangeEnd = str


class CostRange(ApiModel):
    from_: RangeEnd = Field(alias="from", description=TIME_HELP, min_length=1, max_length=64)
    to: RangeEnd = Field(description=TIME_HELP + "; exclusive", min_length=1, max_length=64)


class CostHistoryQuery(CostRange):
    device_id: str | None = Field(default=None, min_length=1, description="one device; default: all summed")
    resolution: Literal["hour", "day"] = "hour"


class BillQuery(CostRange):
    tariff_id: str | None = Field(default=None, min_length=1, description="default: the active tariff")
    device_id: str | None = Field(default=None, min_length=1, description="default: the site")


class ComparisonQuery(ApiModel):
    from_: RangeEnd | None = Field(default=None, alias="from", description=TIME_HELP, max_length=64)
    to: RangeEnd | None = Field(
        default=None, description=TIME_HELP + "; default: the last complete cycle", max_length=64
    )


class CostSummary(BaseModel):
    currency: str
    today: float | None
    month_to_date: float | None
    projected_month: float | None
    current_price: float | None
    current_period: str | None
    carbon_today_kg: float | None
    tariff_id: str | None = Field(description="the active tariff; null = costs unknown")
    day_start: str | None = Field(description="start of the current local day of the tariff's zone (ISO)")
    cycle_start: str | None = Field(description="start of the current billing cycle (ISO, with offset)")
    cycle_end: str | None = Field(description="end of the current billing cycle (ISO, exclusive)")
    previous_cycle_start: str | None = Field(
        description="start of the last full cycle, which is [previous_cycle_start, cycle_start)"
    )


class ChangesQuery(ApiModel):
    since: int = Field(
        ge=0, le=2**63 - 1, description="the revision a client saw last (0 = everything, a full backfill)"
    )


class SeriesChange(BaseModel):
    # "from" is a keyword: the field is from_ in Python, "from" on the wire both ways.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    device_id: str | None = Field(description="a device, or null for the site")
    from_: str = Field(alias="from", description="earliest changed UTC hour (ISO)")


class CostChanges(BaseModel):
    revision: int = Field(description="high-water mark: pass it as since next time")
    changes: list[SeriesChange]


class DeviceCost(BaseModel):
    device_id: str
    kwh: float | None
    cost: float | None
    carbon_kg: float | None
    estimated: bool


class DeviceCostList(BaseModel):
    items: list[DeviceCost]


class CostPoint(BaseModel):
    time: str
    kwh: float | None
    cost: float | None
    carbon_kg: float | None


class CostHistory(BaseModel):
    points: list[CostPoint]


class BillBreakdown(BaseModel):
    energy_by_period: dict[str, dict[str, float]] = Field(description="period -> {kwh, cost}")
    energy_by_tier: dict[str, dict[str, float]]
    demand_by_period: dict[str, dict[str, float]]


class Bill(BaseModel):
    start: str
    end: str
    currency: str
    kwh: float
    peak_kw: float | None
    energy: float
    fixed: float
    demand: float
    minimum: float
    export_credit: float
    total: float
    breakdown: BillBreakdown
    gaps: list[dict[str, Any]] = Field(default_factory=list, description="spans without readings")


class ComparisonRow(BaseModel):
    tariff_id: str
    name: str
    total: float
    currency: str | None = None


class TariffOut(BaseModel):
    id: str
    name: str
    effective_from: str
    currency: str
    timezone: str
    source: str | None
    active: bool
    definition: dict[str, Any]
    created_at: str
    updated_at: str


class TariffList(BaseModel):
    items: list[TariffOut]


class TariffId(BaseModel):
    id: str


class ImportQuery(ApiModel):
    timezone: str | None = Field(default=None, description="IANA zone; default: site.timezone")
    holidays: str | None = Field(default=None, description="country[-subdivision], e.g. US-CA; default: none")
    label: str | None = Field(default=None, description="URDB label when the payload holds several rates")
    name: str | None = Field(default=None, min_length=1, max_length=200)
