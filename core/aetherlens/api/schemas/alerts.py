"""Alert rule and event shapes.

A rule watches one series (``device_id`` + ``metric_type``; both optional = every device / type) with a
``condition``; the alert engine evaluates it and writes ``alert_events``. Conditions:

* ``{"type": "threshold", "op": ">", "value": 1500, "for_seconds": 600}`` — the value stays past the
  threshold for ``for_seconds``;
* ``{"type": "no_data", "for_seconds": 900}`` — no reading for that long.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from aetherlens.api.routing import ApiModel
from aetherlens.api.schemas.common import QueryTime


class ThresholdCondition(ApiModel):
    type: Literal["threshold"]
    op: Literal[">", ">=", "<", "<="]
    value: float
    for_seconds: int = Field(default=0, ge=0, le=7 * 86400)


class NoDataCondition(ApiModel):
    type: Literal["no_data"]
    for_seconds: int = Field(gt=0, le=30 * 86400)


Condition = Annotated[ThresholdCondition | NoDataCondition, Field(discriminator="type")]


class LogTarget(ApiModel):
    type: Literal["log"]


class WebhookTarget(ApiModel):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", max_length=2000)


NotifyTarget = Annotated[LogTarget | WebhookTarget, Field(discriminator="type")]


class AlertIn(ApiModel):
    name: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    device_id: str | None = Field(default=None, min_length=1, description="default: every device")
    metric_type: str | None = Field(default=None, min_length=1)
    condition: Condition
    severity: Literal["info", "warning", "critical"] = "warning"
    notify: list[NotifyTarget] = Field(default_factory=list, max_length=20)
    cooldown_seconds: int = Field(default=300, ge=0, le=7 * 86400)


class AlertOut(BaseModel):
    id: int
    name: str
    enabled: bool
    device_id: str | None
    metric_type: str | None
    condition: dict[str, Any]
    severity: str
    notify: list[dict[str, Any]]
    cooldown_seconds: int
    created_at: datetime
    updated_at: datetime


class AlertList(BaseModel):
    items: list[AlertOut]


class EventQuery(ApiModel):
    alert_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    device_id: str | None = Field(default=None, min_length=1)
    from_: QueryTime | None = Field(default=None, alias="from")
    to: QueryTime | None = None
    unacknowledged: bool = False
    limit: int = Field(default=100, ge=1, le=1000)


class EventOut(BaseModel):
    id: int
    alert_id: int
    device_id: str | None
    triggered_at: datetime
    resolved_at: datetime | None
    severity: str
    value: float | None
    message: str
    details: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None


class EventList(BaseModel):
    items: list[EventOut]
