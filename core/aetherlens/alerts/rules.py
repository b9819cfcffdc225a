"""Alert rule shapes (CONTRACT.md "Alert conditions") and the checks that need more than a shape.

The API's request body and the YAML configuration's ``alerts.rules`` both validate with these models, so
a rule is refused the same way wherever it is declared. Shape errors (an unknown ``op``, a missing key)
are pydantic's; :func:`check_rule` adds what a shape cannot know — an unknown device, a metric type no
one reports, a threshold the metric can never cross — as :class:`RuleError` (HTTP 422) naming the field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from aetherlens.errors import ValidationError
from aetherlens.models import METRIC_TYPES

Op = Literal[">", ">=", "<", "<="]
Window = Literal["hour", "day", "cycle"]
MAX_SECONDS: Final = 30 * 86400


class RuleError(ValidationError):
    """A well-formed rule that cannot work: ``details["field"]`` names the field."""

    code = "invalid_rule"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", details={"field": field})
        self.field = field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


_HYSTERESIS = Field(
    default=None,
    ge=0,
    description="how far back past the threshold the value must go to resolve; default 5 % of |value|",
)


class ThresholdCondition(_Model):
    type: Literal["threshold"]
    op: Op
    value: float
    for_seconds: int = Field(default=0, ge=0, le=7 * 86400)
    hysteresis: float | None = _HYSTERESIS


class NoDataCondition(_Model):
    type: Literal["no_data"]
    for_seconds: int = Field(gt=0, le=MAX_SECONDS)


class EnergyCondition(_Model):
    type: Literal["energy"]
    window: Window
    op: Op
    value: float = Field(description="kWh")
    hysteresis: float | None = _HYSTERESIS


class CostCondition(_Model):
    type: Literal["cost"]
    window: Window
    op: Op
    value: float = Field(description="in the tariff's currency")
    hysteresis: float | None = _HYSTERESIS


class BudgetCondition(_Model):
    type: Literal["budget"]
    scope: Literal["site", "device"]
    period: Literal["day", "cycle"]
    amount: float = Field(gt=0)
    projected: bool = False
    percent: float | None = Field(default=None, gt=0, le=1000)


class PluginUnhealthyCondition(_Model):
    type: Literal["plugin_unhealthy"]
    plugin_id: str = Field(min_length=1, max_length=200)


class CloudBudgetCondition(_Model):
    type: Literal["cloud_budget"]
    provider: str = Field(min_length=1, max_length=100)
    account: str | None = Field(default=None, min_length=1)
    # None: the budget configured for the account in its cost plugin (cloud_budgets), all of the
    # provider's accounts' budgets summed when no account is named.
    amount: float | None = Field(default=None, gt=0)
    projected: bool = False


class AnomalyCondition(_Model):
    type: Literal["anomaly"]
    sensitivity: int = Field(default=5, ge=1, le=10)
    min_history_days: int = Field(default=14, ge=7, le=365)


type AnyCondition = (
    ThresholdCondition
    | NoDataCondition
    | EnergyCondition
    | CostCondition
    | BudgetCondition
    | PluginUnhealthyCondition
    | CloudBudgetCondition
    | AnomalyCondition
)
Condition = Annotated[
    ThresholdCondition
    | NoDataCondition
    | EnergyCondition
    | CostCondition
    | BudgetCondition
    | PluginUnhealthyCondition
    | CloudBudgetCondition
    | AnomalyCondition,
    Field(discriminator="type"),
]

# Evaluated on every committed write batch (the writer's listener); the rest on the engine's schedule.
SERIES_KINDS: Final = frozenset({"threshold"})
SCHEDULED_KINDS: Final = frozenset(
    {"no_data", "energy", "cost", "budget", "plugin_unhealthy", "cloud_budget", "anomaly"}
)


class LogTarget(_Model):
    type: Literal["log"]


class WebhookTarget(_Model):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", max_length=2000)


NotifyTarget = Annotated[LogTarget | WebhookTarget, Field(discriminator="type")]


class RuleSpec(_Model):
    """Everything a user declares for one rule (API body, one YAML list item)."""

    name: str = Field(min_length=1, max_length=200)
    enabled: bool = True
    device_id: str | None = Field(default=None, min_length=1, description="default: every device / the site")
    metric_type: str | None = Field(default=None, min_length=1)
    condition: Condition
    severity: Literal["info", "warning", "critical"] = "warning"
    notify: list[NotifyTarget] = Field(default_factory=list, max_length=20)
    cooldown_seconds: int = Field(default=300, ge=0, le=7 * 86400)


def _never_true(op: str, value: float, low: float, high: float) -> bool:
    """Whether ``reading op value`` can never hold for a reading in [low, high]."""
    return {
        ">": value >= high,
        ">=": value > high,
        "<": value <= low,
        "<=": value < low,
    }[op]


async def check_rule(
    spec: RuleSpec,
    *,
    known_metric_types: Container[str],
    device_exists: Callable[[str], Awaitable[bool]],
    where: str = "body",
) -> None:
    """Raise :class:`RuleError` naming the first field (prefixed with ``where``) that makes ``spec``
    unworkable. ``known_metric_types``: the vocabulary plus what plugins declare or the database holds."""
    cond = spec.condition
    if spec.device_id is not None and not await device_exists(spec.device_id):
        raise RuleError(f"{where}.device_id", f"device {spec.device_id!r} does not exist")
    if spec.metric_type is not None and spec.metric_type not in known_metric_types:
        raise RuleError(
            f"{where}.metric_type",
            f"unknown metric type {spec.metric_type!r}; known: {', '.join(sorted(METRIC_TYPES))} "
            "and the types enabled plugins declare",
        )
    if isinstance(cond, ThresholdCondition | AnomalyCondition) and spec.metric_type is None:
        raise RuleError(f"{where}.metric_type", f"a {cond.type} rule needs the metric_type it watches")
    if isinstance(cond, AnomalyCondition) and spec.device_id is None:
        raise RuleError(f"{where}.device_id", "an anomaly rule learns one device's series: name the device")
    if isinstance(cond, ThresholdCondition) and spec.metric_type in METRIC_TYPES:
        kind = METRIC_TYPES[spec.metric_type]
        if _never_true(cond.op, cond.value, kind.minimum, kind.maximum):
            raise RuleError(
                f"{where}.condition.value",
                f"{spec.metric_type} {cond.op} {cond.value:g} can never hold: {spec.metric_type} readings "
                f"lie in [{kind.minimum:g}, {kind.maximum:g}] {kind.unit}",
            )
    if isinstance(cond, EnergyCondition | CostCondition) and _never_true(
        cond.op, cond.value, 0.0, float("inf")
    ):
        raise RuleError(f"{where}.condition.value", f"{cond.type} over a window is never below 0")
    if isinstance(cond, BudgetCondition):
        if cond.scope == "device" and spec.device_id is None:
            raise RuleError(f"{where}.device_id", "a device budget needs the device_id it watches")
        if cond.scope == "site" and spec.device_id is not None:
            raise RuleError(f"{where}.device_id", "a site budget watches the whole site: leave device_id out")


def condition_dict(spec: RuleSpec) -> dict[str, Any]:
    """The condition as stored (``alerts.condition``): unset optional keys left out."""
    return spec.condition.model_dump(exclude_none=True)
