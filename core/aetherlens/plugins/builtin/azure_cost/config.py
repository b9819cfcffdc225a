"""The plugin's settings as typed values (the manifest's JSON Schema already checked their shapes)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

DEFAULT_ENDPOINT: Final = "https://management.azure.com"
SECRET_KEYS: Final = ("tenant_id", "client_id", "client_secret")
# Both dimensions describe what was bought; they land in the record's one ``service`` field.
SERVICE_DIMENSIONS: Final = frozenset({"ServiceName", "MeterCategory"})


@dataclass(frozen=True)
class Subscription:
    id: str
    name: str
    budget: Decimal | None


@dataclass(frozen=True)
class AzureCostConfig:
    subscriptions: tuple[Subscription, ...]
    tenant_id: str | None
    client_id: str | None
    client_secret: str | None
    credential: Literal["default", "managed_identity"]
    managed_identity_client_id: str | None
    group_by: tuple[str, ...]
    cost_type: str
    cost_column: str
    settle_days: int
    forecast: bool
    max_retry_wait: float
    retry_total: int
    subscription_timeout: float
    endpoint: str
    authority: str | None
    ca_file: str | None

    @property
    def service_principal(self) -> bool:
        return self.client_secret is not None


def problems(config: dict[str, Any]) -> list[str]:
    """What the schema cannot say: the three service-principal keys go together, and so on."""
    found: list[str] = []
    given = [k for k in SECRET_KEYS if config.get(k)]
    if given and len(given) != len(SECRET_KEYS):
        missing = ", ".join(k for k in SECRET_KEYS if k not in given)
        found.append(
            f"{', '.join(given)} given without {missing}: a service principal needs tenant_id, client_id "
            "and client_secret; omit all three for managed identity or the default credential chain"
        )
    if given and (config.get("credential") == "managed_identity" or config.get("managed_identity_client_id")):
        found.append("credential/managed_identity_client_id cannot be combined with a service principal")
    group_by = list(config.get("group_by", []))
    if len(SERVICE_DIMENSIONS.intersection(group_by)) > 1:
        found.append("group_by: ServiceName and MeterCategory both fill 'service'; pick one")
    ids = [str(s.get("id", "")).lower() for s in config.get("subscriptions", [])]
    if len(set(ids)) != len(ids):
        found.append("subscriptions: the same subscription id is listed twice")
    return found


def _budget(value: Any) -> Decimal | None:
    # Decimal(str(...)): the user's 50.1 stays 50.1, not its binary float expansion.
    return None if value is None else Decimal(str(value))


def parse(config: dict[str, Any]) -> AzureCostConfig:
    default_budget = config.get("budget")
    subscriptions = tuple(
        Subscription(
            id=str(s["id"]).lower(),
            name=str(s.get("name") or s["id"]),
            budget=_budget(s.get("budget", default_budget)),
        )
        for s in config["subscriptions"]
    )
    return AzureCostConfig(
        subscriptions=subscriptions,
        tenant_id=config.get("tenant_id"),
        client_id=config.get("client_id"),
        client_secret=config.get("client_secret"),
        credential="managed_identity" if config.get("credential") == "managed_identity" else "default",
        managed_identity_client_id=config.get("managed_identity_client_id"),
        group_by=tuple(config.get("group_by") or ("ResourceGroup", "ServiceName")),
        cost_type=str(config.get("cost_type", "ActualCost")),
        cost_column=str(config.get("cost_column", "Cost")),
        settle_days=int(config.get("settle_days", 3)),
        forecast=bool(config.get("forecast", True)),
        max_retry_wait=float(config.get("max_retry_wait", 120)),
        retry_total=int(config.get("retry_total", 5)),
        subscription_timeout=float(config.get("subscription_timeout", 300)),
        endpoint=str(config.get("endpoint") or DEFAULT_ENDPOINT).rstrip("/"),
        authority=config.get("authority"),
        ca_file=config.get("ca_file"),
    )
