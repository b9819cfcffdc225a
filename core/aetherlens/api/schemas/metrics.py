"""Metric shapes: ingest envelope, series query and current values (CONTRACT.md, HTTP table)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, Self

from pydantic import BaseModel, Field, model_validator

from aetherlens.api.routing import ApiModel
from aetherlens.api.schemas.common import QueryTime

MAX_INGEST_METRICS = 100_000


class IngestMetric(BaseModel):
    """One metric as sent; the collector validates each one and reports rejects by index."""

    time: str | float | int = Field(description="ISO 8601 with an offset, or epoch seconds")
    device_id: str
    metric_type: str
    value: float
    unit: str | None = None
    tags: dict[str, str] | None = None


class IngestBody(BaseModel):
    metrics: list[IngestMetric] = Field(max_length=MAX_INGEST_METRICS)


class IngestRejection(BaseModel):
    index: int
    reason: str


class IngestResult(BaseModel):
    accepted: int
    rejected: list[IngestRejection]


class MetricsQuery(ApiModel):
    device_id: str = Field(min_length=1)
    metric_type: str = Field(min_length=1)
    from_: QueryTime | None = Field(default=None, alias="from", description="default: `to` minus 24 h")
    to: QueryTime | None = Field(default=None, description="exclusive; default: now")
    resolution: Literal["auto", "raw", "hour", "day"] = Field(
        default="auto", description="auto: raw up to 2 days, hourly up to 60 days, daily beyond"
    )
    agg: Literal["avg", "min", "max", "sum", "last"] = Field(
        default="avg", description="aggregate of each hourly/daily bucket (raw points are returned as stored)"
    )

    @model_validator(mode="after")
    def _defaults(self) -> Self:
        if self.to is None:
            self.to = datetime.now().astimezone()
        if self.from_ is None:
            try:
                self.from_ = self.to - timedelta(hours=24)
            except OverflowError:
                raise ValueError("'to' is too early to look back 24 h from; give 'from' as well") from None
        return self


class Point(BaseModel):
    time: datetime
    value: float


class SeriesOut(BaseModel):
    device_id: str
    metric_type: str
    unit: str | None
    resolution: Literal["raw", "hour", "day"]
    points: list[Point]


class CurrentValueOut(BaseModel):
    value: float
    unit: str
    time: datetime


class DeviceCurrent(BaseModel):
    device_id: str
    metrics: dict[str, CurrentValueOut]


class CurrentOut(BaseModel):
    devices: list[DeviceCurrent]
