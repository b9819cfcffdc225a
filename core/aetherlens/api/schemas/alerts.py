"""Alert rule and event shapes of the HTTP API.

The rule body is the alert engine's :class:`~aetherlens.alerts.rules.RuleSpec` (the YAML configuration's
``alerts.rules`` items use the same model); conditions are listed in docs/ALERTS.md and CONTRACT.md
"Alert conditions". Event items carry the stream's transition keys (``event_id``, ``name``, ``state``,
``time``) next to the stored columns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from aetherlens.alerts.rules import (
    AnomalyCondition,
    BudgetCondition,
    CloudBudgetCondition,
    Condition,
    CostCondition,
    EnergyCondition,
    LogTarget,
    NoDataCondition,
    NotifyTarget,
    PluginUnhealthyCondition,
    RuleSpec,
    ThresholdCondition,
    WebhookTarget,
)
from aetherlens.api.routing import ApiModel
from aetherlens.api.schemas.common import QueryTime

__all__ = [
    "AlertIn",
    "AlertList",
    "AlertOut",
    "AnomalyCondition",
    "BudgetCondition",
    "CloudBudgetCondition",
    "Condition",
    "CostCondition",
    "EnergyCondition",
    "EventList",
    "EventOut",
    "EventQuery",
    "LogTarget",
    "NoDataCondition",
    "NotifyTarget",
    "PluginUnhealthyCondition",
    "ThresholdCondition",
    "WebhookTarget",
]

AlertIn = RuleSpec


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
    source: str = Field(description="api, or config for rules declared in the configuration file")


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
    event_id: int
    alert_id: int
    name: str
    device_id: str | None
    severity: str
    state: str = Field(description="firing, acknowledged (open and acknowledged) or resolved")
    value: float | None = Field(description="the value that made it fire")
    message: str
    time: datetime = Field(description="time of the latest transition")
    triggered_at: datetime
    resolved_at: datetime | None
    resolved_value: float | None
    resolved_message: str | None
    details: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None


class EventList(BaseModel):
    items: list[EventOut]
