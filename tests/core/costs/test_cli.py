"""CLI round trip: aetherlens import-tariff → aetherlens bill --json, against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from .data import counter, write
from .helpers import D, cents, utc

FIXTURE = Path(__file__).parent / "fixtures" / "urdb_tou.json"
TARIFF_YAML = """
name: CLI flat
currency: USD
timezone: UTC
effective_from: 2026-01-01
periods:
  flat: {price: 0.25}
fixed: {per_month: 10}
"""


def _cli(args: list[str], dsn: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AETHERLENS_DATABASE_URL": dsn,
        "AETHERLENS_DATA_DIR": str(tmp_path / "data"),
        "AETHERLENS_SITE__TIMEZONE": "UTC",
        "AETHERLENS_LOG__LEVEL": "warning",
    }
    env.pop("AETHERLENS_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "aetherlens.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_import_tariff_then_bill_json(cost_dsn: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(cost_dsn)
    try:
        await write(conn, counter("house", utc(2026, 3, 1), 744, 1.0))  # 744 kWh in March
    finally:
        await conn.close()
    tariff_file = tmp_path / "flat.yaml"
    tariff_file.write_text(TARIFF_YAML)
    imported = _cli(["import-tariff", str(tariff_file)], cost_dsn, tmp_path)
    assert imported.returncode == 0, imported.stderr
    tariff_id = imported.stdout.strip()
    assert tariff_id and "\n" not in tariff_id
    billed = _cli(
        ["bill", "--tariff", tariff_id, "--from", "2026-03-01", "--to", "2026-04-01", "--json"],
        cost_dsn,
        tmp_path,
    )
    assert billed.returncode == 0, billed.stderr
    (b,) = json.loads(billed.stdout)
    assert cents(b["total"]) == D("196.00")  # 744 x 0.25 + 10
    assert b["start"] == "2026-03-01T00:00:00+00:00"
    # The same numbers from a tariff file, and as a table.
    from_file = _cli(
        ["bill", "--tariff", str(tariff_file), "--from", "2026-03-01", "--to", "2026-04-01", "--json"],
        cost_dsn,
        tmp_path,
    )
    assert json.loads(from_file.stdout) == [b]
    table = _cli(
        ["bill", "--tariff", tariff_id, "--from", "2026-03-01", "--to", "2026-04-01"], cost_dsn, tmp_path
    )
    assert table.returncode == 0 and "196.00" in table.stdout
    # URDB JSON with --label, --timezone and --holidays.
    urdb = _cli(
        [
            "import-tariff",
            str(FIXTURE),
            "--label",
            "5e1676e95457a3f87673e3b1",
            "--timezone",
            "America/Los_Angeles",
            "--holidays",
            "US-CA",
            "--name",
            "PG&E E-1",
        ],
        cost_dsn,
        tmp_path,
    )
    assert urdb.returncode == 0, urdb.stderr
    conn = await asyncpg.connect(cost_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT name, timezone, source, definition::text AS d FROM rate_schedules WHERE id = $1",
            urdb.stdout.strip(),
        )
    finally:
        await conn.close()
    assert (row["name"], row["timezone"], row["source"]) == ("PG&E E-1", "America/Los_Angeles", "urdb")
    assert json.loads(row["d"])["holidays"] == "US-CA"


async def test_bad_tariff_fails_naming_the_field(cost_dsn: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TARIFF_YAML.replace("USD", "USX"))
    result = _cli(["import-tariff", str(bad)], cost_dsn, tmp_path)
    assert result.returncode == 1
    assert "currency" in result.stderr and "USX" in result.stderr
    assert result.stdout == ""
    several = _cli(["import-tariff", str(FIXTURE)], cost_dsn, tmp_path)
    assert several.returncode == 1 and "--label" in several.stderr


async def test_bill_range_errors_are_messages_not_tracebacks(cost_dsn: str, tmp_path: Path) -> None:
    tariff = tmp_path / "flat.yaml"
    tariff.write_text(TARIFF_YAML)
    for start, end, expected in (
        ("9999-12-01", "9999-12-31", "between the years 2 and 9998"),  # cycles would pass year 9999
        ("2026-04-01", "2026-03-01", "to must be after from"),
        ("soon", "2026-03-01", "'soon' is not an ISO date"),
    ):
        result = _cli(["bill", "--tariff", str(tariff), "--from", start, "--to", end], cost_dsn, tmp_path)
        assert result.returncode == 1, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""
