"""Cloud cost listing against the real PostgreSQL."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

from aetherlens.db.queries.cloud_costs import list_cloud_costs
from aetherlens.errors import ValidationError


async def _seed(pool: asyncpg.Pool) -> None:
    rows = [
        (date(2026, 1, 1), "aws", "111", "EC2", None, "us-east-1", 1.5, "USD", "actual"),
        (date(2026, 1, 2), "aws", "111", "S3", None, "us-east-1", 0.25, "USD", "actual"),
        (date(2026, 1, 3), "azure", "sub-1", "VM", "rg1", "westeurope", 2.0, "EUR", "actual"),
        (date(2026, 1, 4), "aws", "111", "EC2", None, "us-east-1", 1.75, "USD", "actual"),
    ]
    await pool.executemany(
        """INSERT INTO cloud_costs
             (day, provider, account, service, resource_group, region, amount, currency, kind)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        rows,
    )


async def test_filters_by_provider_and_half_open_day_range(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    everything = await list_cloud_costs(pool)
    assert [r.day.day for r in everything] == [1, 2, 3, 4]
    aws = await list_cloud_costs(pool, provider="aws", start=date(2026, 1, 2), end=date(2026, 1, 4))
    assert [(r.day, r.service, r.amount) for r in aws] == [(date(2026, 1, 2), "S3", 0.25)]
    azure = await list_cloud_costs(pool, provider="azure")
    assert azure[0].as_dict() == {
        "day": "2026-01-03",
        "provider": "azure",
        "account": "sub-1",
        "service": "VM",
        "resource_group": "rg1",
        "region": "westeurope",
        "amount": 2.0,
        "currency": "EUR",
        "kind": "actual",
        "estimated": False,
    }
    assert await list_cloud_costs(pool, provider="gcp") == []


async def test_reversed_range_is_rejected(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValidationError, match="'from' must be earlier than 'to'"):
        await list_cloud_costs(pool, start=date(2026, 1, 2), end=date(2026, 1, 2))
