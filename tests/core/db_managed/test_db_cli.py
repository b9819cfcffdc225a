"""The `db`, `backup` and `restore` commands through the real CLI entry point."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from managed_helpers import table_fingerprints

from aetherlens.cli import main
from aetherlens.config import Settings
from aetherlens.db.managed import ManagedPostgres

DatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() points the root logger at the (captured) stderr of the test; undo that afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def managed_env(stopped_after: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("AETHERLENS_DATABASE_URL", raising=False)
    monkeypatch.delenv("AETHERLENS_CONFIG", raising=False)
    monkeypatch.setenv("AETHERLENS_DATA_DIR", str(stopped_after.data_dir))
    monkeypatch.setenv("AETHERLENS_DATABASE__MANAGED_DIR", str(stopped_after.managed_dir))
    monkeypatch.setenv("AETHERLENS_LOG__FORMAT", "text")
    return stopped_after


def test_db_start_status_stop(managed_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "stopped"

    assert main(["db", "start"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("postgresql://postgres@/aetherlens?host=")
    # Left running in the background after the command returned.
    status = ManagedPostgres(managed_env).status()
    assert status.state == "running" and status.detached

    assert main(["db", "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "running" and data["pid"] == status.pid
    assert data["version"].startswith("15.") and data["socket_dir"].endswith("/run")

    assert main(["db", "status"]) == 0
    text = capsys.readouterr().out
    assert "running" in text and str(status.pid) in text and ".s.PGSQL.5432" in text

    assert main(["db", "stop"]) == 0
    assert capsys.readouterr().out.strip() == "stopped"
    assert ManagedPostgres(managed_env).status().state == "stopped"


def test_db_command_refuses_with_external_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AETHERLENS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    assert main(["db", "start"]) == 1
    assert "database.url is set" in capsys.readouterr().err


def test_backup_with_managed_db_starts_and_stops_it(
    managed_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "b"
    assert main(["backup", "--output", str(out_dir), "--keep", "1"]) == 0
    first = Path(capsys.readouterr().out.strip())
    assert first.parent == out_dir and first.is_file()
    # It started the cluster only for the backup and stopped it again.
    assert ManagedPostgres(managed_env).status().state == "stopped"
    assert main(["backup", "--output", str(out_dir), "--keep", "1"]) == 0
    second = Path(capsys.readouterr().out.strip())
    assert second != first and not first.exists() and second.exists()

    with pytest.raises(SystemExit) as usage:  # argparse: bad usage exits 2
        main(["backup", "--keep", "0"])
    assert usage.value.code == 2
    assert "at least 1" in capsys.readouterr().err


@pytest.fixture
async def cli_databases(fresh_database: DatabaseFactory) -> tuple[str, str]:
    source, target = await fresh_database(), await fresh_database()
    conn = await asyncpg.connect(source)
    await conn.execute(
        "CREATE TABLE readings (id int PRIMARY KEY, doc jsonb);"
        "INSERT INTO readings SELECT n, jsonb_build_object('n', n) FROM generate_series(1, 50) n"
    )
    await conn.close()
    conn = await asyncpg.connect(target)
    await conn.execute("CREATE TABLE other (v int)")
    await conn.close()
    return source, target


def test_backup_and_restore_commands(
    cli_databases: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import asyncio

    source, target = cli_databases
    monkeypatch.setenv("AETHERLENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AETHERLENS_LOG__FORMAT", "text")
    monkeypatch.setenv("AETHERLENS_DATABASE_URL", source)
    assert main(["backup", "--output", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    dump = Path(captured.out.strip())
    assert dump.is_file() and captured.out.count("\n") == 1  # stdout: only the path
    assert "backing up" in captured.err  # progress on stderr

    monkeypatch.setenv("AETHERLENS_DATABASE_URL", target)
    assert main(["restore", str(dump)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["restore", str(dump), "--force"]) == 0
    assert capsys.readouterr().out == ""
    restored = asyncio.run(table_fingerprints(target))
    assert restored == asyncio.run(table_fingerprints(source))
    assert restored["readings"][0] == 50
