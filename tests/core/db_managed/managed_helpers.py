"""Helpers shared by the db_managed tests (imported by name; conftest holds the fixtures)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest

from aetherlens.config import Settings, load_settings
from aetherlens.db.managed import find_bindir, timescaledb_installed

TIMESCALEDB_INSTALLED = timescaledb_installed(find_bindir())
requires_timescaledb = pytest.mark.skipif(
    not TIMESCALEDB_INSTALLED,
    reason="the timescaledb extension is not installed for this machine's PostgreSQL binaries",
)


def make_cluster_dir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="aetherlens-cluster-", dir="/tmp"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    return root


def settings_for(root: Path, **database: Any) -> Settings:
    return load_settings(
        env={},
        data_dir=str(root / "data"),
        database={"managed_dir": str(root / "pg"), **database},
        log={"level": "info", "format": "text"},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def table_fingerprints(dsn: str) -> dict[str, tuple[int, str | None]]:
    """Row count and an order-independent digest of every table and view in ``public``."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        names = [
            r["relname"]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1"
            )
        ]
        result: dict[str, tuple[int, str | None]] = {}
        for name in names:
            quoted = await conn.fetchval("SELECT quote_ident($1)", name)
            row = await conn.fetchrow(
                "SELECT count(*) AS n, md5(string_agg(t::text, '|' ORDER BY t::text)) AS digest "
                f"FROM {quoted} t"
            )
            result[name] = (row["n"], row["digest"])
        return result
    finally:
        await conn.close()
