"""A throwaway database per bench run on the machine's PostgreSQL (every bench script uses this).

The server is ``AETHERLENS_BENCH_ADMIN_DSN`` (or ``AETHERLENS_TEST_ADMIN_DSN``, the tests' variable),
default ``postgresql://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import os
import uuid

import asyncpg

ADMIN_DSN = os.environ.get(
    "AETHERLENS_BENCH_ADMIN_DSN",
    os.environ.get("AETHERLENS_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
)


async def create_scratch_database(label: str) -> tuple[str, str]:
    """(name, dsn) of a new empty database ``aetherlens_bench_<label>_<random>``."""
    name = f"aetherlens_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, f"{ADMIN_DSN.rpartition('/')[0]}/{name}"


async def drop_scratch_database(name: str) -> None:
    """Drop it again, whatever still holds connections to it."""
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
