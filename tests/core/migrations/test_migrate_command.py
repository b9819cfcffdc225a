"""``aetherlens migrate [--status] [--json]`` against a real database (configured by URL)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import asyncpg


def run(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERLENS_")}
    env["AETHERLENS_DATABASE_URL"] = dsn
    env["AETHERLENS_LOG__FORMAT"] = "text"
    return subprocess.run(
        [sys.executable, "-m", "aetherlens.cli", "migrate", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


async def test_migrate_applies_then_reports_status(fresh_database) -> None:
    dsn = await fresh_database()
    status = run(dsn, "--status", "--json")
    assert status.returncode == 0, status.stderr
    before = json.loads(status.stdout)
    assert before["storage_mode"] == "plain"
    pending = [m["name"] for m in before["migrations"] if m["state"] == "pending"]
    assert pending[0] == "001_core_state.sql" and "008_metrics_plain.sql" in pending

    applied = run(dsn)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.split() == pending  # stdout: only the names applied
    assert "applied" in applied.stderr  # progress goes to stderr
    # The first migrate creates user admin and shows its generated password once, on stderr.
    shown = [line for line in applied.stderr.splitlines() if "password (shown once)" in line]
    assert len(shown) == 1
    password = shown[0].rsplit(": ", 1)[1]
    conn = await asyncpg.connect(dsn)
    try:
        hashed = await conn.fetchval(
            "SELECT password_hash FROM users WHERE name = 'admin' AND role = 'admin'"
        )
    finally:
        await conn.close()
    assert hashed.startswith("$argon2") and password not in hashed

    again = run(dsn, "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == {"applied": []}
    assert "password" not in again.stderr

    table = run(dsn, "--status")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "NAME", "REQUIRES", "STATE", "APPLIED", "AT"]
    row = next(line for line in lines if "008_metrics_plain.sql" in line)
    assert row.split()[:4] == ["008", "008_metrics_plain.sql", "plain", "applied"]
    assert any("008_metrics_timescaledb.sql" in line and "not_applicable" in line for line in lines)


async def test_migrate_fails_with_a_message_when_the_server_is_unreachable() -> None:
    result = run("postgresql://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr and result.stdout == ""


async def test_two_migrate_processes_at_once_apply_everything_once(fresh_database) -> None:
    dsn = await fresh_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERLENS_")}
    env.update(AETHERLENS_DATABASE_URL=dsn, AETHERLENS_LOG__FORMAT="text")
    command = [sys.executable, "-m", "aetherlens.cli", "migrate", "--json"]
    procs = [
        await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout=120)
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    applied = [json.loads(out)["applied"] for out, _ in outputs]
    everything = max(applied, key=len)
    assert everything[0] == "001_core_state.sql"
    # Each migration was applied by exactly one of the two processes, and recorded once.
    assert sorted(applied[0] + applied[1]) == sorted(everything)
    status = json.loads(run(dsn, "--status", "--json").stdout)
    assert [m["name"] for m in status["migrations"] if m["state"] == "applied"] == everything
