"""The tariff model: what a utility charges, in our YAML/JSON format (docs/TARIFFS.md).

Money and rates are ``Decimal`` so a bill pinned to the cent stays pinned. Validation refuses a tariff
that cannot be billed unambiguously (overlapping or missing schedule hours, tiers out of order, an
unknown currency ...) with a ``TariffError`` whose message names the field.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aetherlens.costs.currencies import ISO_4217
from aetherlens.errors import TariffError, describe_validation_error, validation_message

DayType = Literal["weekday", "weekend", "holiday", "all"]
ALL_SEASONS = "all"


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans: only true/false (any case) are booleans.

    YAML 1.1 also reads on/off/yes/no/y/n as booleans, which turns a period named ``off`` (common in
    time-of-use tariffs: peak / off) into the key ``False`` and fails validation with a puzzling message.
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse a tariff document (YAML 1.2 booleans, see ``_Yaml12Loader``); raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hours(spec: str) -> frozenset[int]:
    """``"16-21"`` → {16..20}; ``"21-7"`` wraps midnight; ``"0-24"`` is the whole day; commas join ranges."""
    hours: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        start_s, sep, end_s = part.partition("-")
        if not sep or not start_s.strip().isdigit() or not end_s.strip().isdigit():
            raise ValueError(f"'{part}' is not an hour range like '16-21'")
        start, end = int(start_s), int(end_s)
        if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
            raise ValueError(f"'{part}': hours must be 0..24 and the range must not be empty")
        hours.update(range(start, end) if start < end else [*range(start, 24), *range(end)])
    return frozenset(hours)


class Tier(_Model):
    up_to: Decimal | None = Field(default=None, gt=0, description="cumulative kWh (or kW) where it ends")
    price: Decimal


class Season(_Model):
    months: list[int] | None = None
    start: str | None = Field(default=None, alias="from", pattern=r"^\d\d-\d\d$")
    end: str | None = Field(default=None, alias="to", pattern=r"^\d\d-\d\d$")

    @model_validator(mode="after")
    def _one_form(self) -> Season:
        if (self.months is None) == (self.start is None and self.end is None):
            raise ValueError("give either months or from/to (MM-DD)")
        if self.months is None and (self.start is None or self.end is None):
            raise ValueError("a date-range season needs both from and to")
        if self.months is not None and any(not 1 <= m <= 12 for m in self.months):
            raise ValueError("months must be 1..12")
        return self

    def contains(self, day: dt.date) -> bool:
        if self.months is not None:
            return day.month in self.months
        assert self.start is not None and self.end is not None
        key = day.strftime("%m-%d")
        if self.start <= self.end:
            return self.start <= key <= self.end
        return key >= self.start or key <= self.end


def _tiers(price: Decimal | None, tiers: list[Tier] | None, what: str) -> list[Tier]:
    if (price is None) == (tiers is None):
        raise ValueError(f"give either price or tiers for {what}")
    if tiers is None:
        assert price is not None
        return [Tier(price=price)]
    if not tiers:
        raise ValueError("tiers must not be empty")
    last = Decimal(0)
    for i, tier in enumerate(tiers):
        if tier.up_to is None and i != len(tiers) - 1:
            raise ValueError(f"tiers[{i}]: only the last tier may be open-ended (no up_to)")
        if tier.up_to is not None and tier.up_to <= last:
            raise ValueError(f"tiers[{i}].up_to: tiers out of order ({tier.up_to} after {last})")
        if tier.up_to is not None:
            last = tier.up_to
    return tiers


class Period(_Model):
    price: Decimal | None = None
    tiers: list[Tier] | None = None
    export_price: Decimal | None = None
    carbon_kg_per_kwh: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check_tiers(self) -> Period:
        _tiers(self.price, self.tiers, "the period")
        return self

    @property
    def tier_list(self) -> list[Tier]:
        return _tiers(self.price, self.tiers, "the period")


class Rule(_Model):
    """When a period (or a demand charge) applies: hours x day types x seasons/months, local time."""

    period: str | None = None
    hours: str = "0-24"
    days: list[DayType] = Field(default_factory=lambda: list[DayType](["all"]))
    seasons: list[str] | None = None
    months: list[int] | None = None

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("months")
    @classmethod
    def _months(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 1 <= m <= 12 for m in value):
            raise ValueError("months must be 1..12")
        return value

    @cached_property
    def hour_set(self) -> frozenset[int]:
        return parse_hours(self.hours)

    def matches(self, season: str, month: int, day_type: str, hour: int) -> bool:
        if hour not in self.hour_set:
            return False
        if "all" not in self.days and day_type not in self.days:
            return False
        if self.seasons is not None and season not in self.seasons:
            return False
        return self.months is None or month in self.months


class Charges(_Model):
    per_day: Decimal = Decimal(0)
    per_month: Decimal = Decimal(0)


class DemandCharge(_Model):
    name: str
    price: Decimal | None = None
    tiers: list[Tier] | None = None
    months: list[int] | None = Field(default=None, description="months (of the cycle start) it applies in")
    schedule: list[Rule] | None = Field(default=None, description="TOU demand; absent = flat (whole cycle)")

    @model_validator(mode="after")
    def _check(self) -> DemandCharge:
        _tiers(self.price, self.tiers, f"demand charge '{self.name}'")
        return self

    @property
    def tier_list(self) -> list[Tier]:
        return _tiers(self.price, self.tiers, "the demand charge")


class Demand(_Model):
    window_minutes: int = Field(default=15, ge=1, le=60)
    charges: list[DemandCharge] = Field(default_factory=list)

    @field_validator("window_minutes")
    @classmethod
    def _divides_hour(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (5, 10, 15, 30, 60 ...)")
        return value


class CarbonMetric(_Model):
    device_id: str
    metric_type: str = "carbon_intensity"


class Tariff(_Model):
    name: str = Field(min_length=1)
    currency: str = "USD"
    timezone: str = "UTC"
    effective_from: dt.datetime | dt.date | None = None
    billing_cycle_day: int = Field(default=1, ge=1, le=28)
    holidays: str | None = Field(default=None, description="country code, optionally -subdivision: US-CA")
    seasons: dict[str, Season] = Field(default_factory=dict)
    periods: dict[str, Period]
    schedule: list[Rule] = Field(default_factory=list)
    fixed: Charges = Field(default_factory=Charges)
    minimum: Charges = Field(default_factory=Charges)
    demand: Demand = Field(default_factory=Demand)
    export_price: Decimal = Decimal(0)
    export_netting_minutes: int = Field(default=60, ge=1, le=60)
    carbon_kg_per_kwh: Decimal | None = Field(default=None, ge=0)
    carbon_metric: CarbonMetric | None = None
    source: dict[str, Any] | None = Field(default=None, description="provenance, e.g. the URDB label")

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if value not in ISO_4217:
            raise ValueError(f"unknown currency '{value}' (an ISO 4217 code such as USD or EUR)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (an IANA zone such as Europe/Berlin)") from None
        return value

    @field_validator("holidays")
    @classmethod
    def _holidays(cls, value: str | None) -> str | None:
        if value:
            country, _, subdiv = value.partition("-")
            try:
                holidays_lib.country_holidays(country, subdiv=subdiv or None, years=2000)
            except NotImplementedError:
                raise ValueError(
                    f"unknown holiday calendar '{value}' (country code, e.g. US or US-CA)"
                ) from None
        return value or None

    @field_validator("export_netting_minutes")
    @classmethod
    def _netting(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (15, 30, 60 ...)")
        return value

    @field_validator("periods")
    @classmethod
    def _some_period(cls, value: dict[str, Period]) -> dict[str, Period]:
        if not value:
            raise ValueError("a tariff needs at least one period")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Tariff:
        self._check_seasons()
        self._check_schedule()
        for i, charge in enumerate(self.demand.charges):
            for j, rule in enumerate(charge.schedule or []):
                self._check_rule_refs(rule, f"demand.charges[{i}].schedule[{j}]")
        return self

    # --- validation helpers -------------------------------------------------------------------------
    def _check_seasons(self) -> None:
        if not self.seasons:
            return
        day = dt.date(2024, 1, 1)  # a leap year, so 29 February is covered too
        while day.year == 2024:
            owners = [name for name, season in self.seasons.items() if season.contains(day)]
            if len(owners) != 1:
                what = "overlap" if owners else "do not cover"
                raise ValueError(f"seasons: seasons {what} {day:%m-%d} ({', '.join(owners) or 'none'})")
            day += dt.timedelta(days=1)

    def _check_rule_refs(self, rule: Rule, where: str) -> None:
        for season in rule.seasons or []:
            if season not in self.seasons:
                raise ValueError(f"{where}.seasons: unknown season '{season}'")

    def _check_schedule(self) -> None:
        if not self.schedule:
            if len(self.periods) > 1:
                raise ValueError("schedule: several periods need a schedule saying when each applies")
            return
        for i, rule in enumerate(self.schedule):
            where = f"schedule[{i}]"
            if rule.period is None:
                raise ValueError(f"{where}.period: missing")
            if rule.period not in self.periods:
                raise ValueError(f"{where}.period: unknown period '{rule.period}'")
            self._check_rule_refs(rule, where)
        day_types = ["weekday", "weekend"] + (["holiday"] if self.has_holiday_rules else [])
        for season, month in self.season_months:
            for day_type in day_types:
                for hour in range(24):
                    hits = [
                        i for i, r in enumerate(self.schedule) if r.matches(season, month, day_type, hour)
                    ]
                    when = f"{season} month {month} {day_type} {hour:02d}:00"
                    if not hits:
                        raise ValueError(f"schedule: schedule hours not covered ({when})")
                    if len(hits) > 1:
                        raise ValueError(
                            f"schedule: overlapping periods at {when} (schedule[{hits[0]}] and "
                            f"schedule[{hits[1]}])"
                        )

    # --- resolution ---------------------------------------------------------------------------------
    @cached_property
    def season_months(self) -> list[tuple[str, int]]:
        if not self.seasons:
            return [(ALL_SEASONS, m) for m in range(1, 13)]
        pairs: set[tuple[str, int]] = set()
        day = dt.date(2024, 1, 1)
        while day.year == 2024:
            pairs.add((self.season_of(day), day.month))
            day += dt.timedelta(days=1)
        return sorted(pairs, key=lambda p: (p[1], p[0]))

    @cached_property
    def has_holiday_rules(self) -> bool:
        return any("holiday" in r.days for r in self.schedule) or any(
            "holiday" in r.days for c in self.demand.charges for r in c.schedule or []
        )

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def _holiday_calendar(self) -> holidays_lib.HolidayBase | None:
        if not self.holidays:
            return None
        country, _, subdiv = self.holidays.partition("-")
        return holidays_lib.country_holidays(country, subdiv=subdiv or None)

    def season_of(self, day: dt.date) -> str:
        for name, season in self.seasons.items():
            if season.contains(day):
                return name
        return ALL_SEASONS

    def is_holiday(self, day: dt.date) -> bool:
        calendar = self._holiday_calendar
        return calendar is not None and day in calendar

    def day_type(self, day: dt.date) -> str:
        if self.is_holiday(day):
            # Without rules of their own, holidays are billed like weekends (the utility convention).
            return "holiday" if self.has_holiday_rules else "weekend"
        return "weekend" if day.weekday() >= 5 else "weekday"

    def period_at(self, local: dt.datetime) -> str:
        """The energy period in force at a local wall-clock time."""
        if not self.schedule:
            return next(iter(self.periods))
        season, month = self.season_of(local.date()), local.month
        day_type = self.day_type(local.date())
        for rule in self.schedule:
            if rule.matches(season, month, day_type, local.hour):
                assert rule.period is not None
                return rule.period
        raise TariffError(f"schedule: no period at {local.isoformat()}")  # validation makes this unreachable

    def demand_applies(self, charge: DemandCharge, local: dt.datetime, cycle_month: int) -> bool:
        if charge.months is not None and cycle_month not in charge.months:
            return False
        if charge.schedule is None:
            return True
        season, day_type = self.season_of(local.date()), self.day_type(local.date())
        return any(r.matches(season, local.month, day_type, local.hour) for r in charge.schedule)

    def export_price_of(self, period: str) -> Decimal:
        own = self.periods[period].export_price
        return self.export_price if own is None else own

    def carbon_of(self, period: str) -> Decimal | None:
        own = self.periods[period].carbon_kg_per_kwh
        return self.carbon_kg_per_kwh if own is None else own

    @property
    def effective_from_utc(self) -> dt.datetime | None:
        value = self.effective_from
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            value = dt.datetime.combine(value, dt.time(), tzinfo=self.zone)
        elif value.tzinfo is None:
            value = value.replace(tzinfo=self.zone)
        return value.astimezone(dt.UTC)

    def to_json(self) -> dict[str, Any]:
        """The definition as stored in ``rate_schedules.definition`` (round-trips through ``parse``)."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data


def parse_tariff(data: Any) -> Tariff:
    """Validate a parsed tariff document; raise TariffError naming the field."""
    if not isinstance(data, dict):
        raise TariffError("a tariff must be a mapping of fields (name, currency, periods, ...)")
    try:
        return Tariff.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = validation_message(describe_validation_error(exc))
        raise TariffError(f"invalid tariff: {problems}", details={"errors": problems}) from None


def load_tariff_yaml(text: str) -> Tariff:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise TariffError(f"tariff is not valid YAML: {exc}") from None
    return parse_tariff(data)
