"""Cloud cost rows (written by the aws_cost / azure_cost plugins), filtered by provider and day range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from aetherlens.db.queries import Queryable
from aetherlens.errors import ValidationError

# NULL parameters switch a filter off, so one fixed statement serves every combination.
_LIST_SQL: Final = """
SELECT day, provider, account, service, resource_group, region, amount, currency, kind
FROM cloud_costs
WHERE ($1::text IS NULL OR provider = $1)
  AND ($2::date IS NULL OR day >= $2)
  AND ($3::date IS NULL OR day < $3)
ORDER BY day, provider, account, service, resource_group, region, kind
LIMIT $4
"""

MAX_ROWS: Final = 100_000


@dataclass(frozen=True, slots=True)
class CloudCost:
    day: date
    provider: str
    account: str | None
    service: str | None
    resource_group: str | None
    region: str | None
    amount: float
    currency: str
    kind: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "provider": self.provider,
            "account": self.account,
            "service": self.service,
            "resource_group": self.resource_group,
            "region": self.region,
            "amount": self.amount,
            "currency": self.currency,
            "kind": self.kind,
        }


async def list_cloud_costs(
    db: Queryable,
    *,
    provider: str | None = None,
    start: date | None = None,
    end: date | None = None,
    limit: int = MAX_ROWS,
) -> list[CloudCost]:
    """Rows with ``start <= day < end`` (either end open when ``None``), oldest first."""
    if start is not None and end is not None and start >= end:
        raise ValidationError(
            "'from' must be earlier than 'to'", details={"from": start.isoformat(), "to": end.isoformat()}
        )
    rows = await db.fetch(_LIST_SQL, provider, start, end, limit)
    return [
        CloudCost(
            day=r[0],
            provider=r[1],
            account=r[2],
            service=r[3],
            resource_group=r[4],
            region=r[5],
            amount=float(r[6]),
            currency=r[7],
            kind=r[8],
        )
        for r in rows
    ]
