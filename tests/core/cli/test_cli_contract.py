"""The CLI's outside contract: every command exists with --help, and exit codes are 0 / 1 / 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aetherlens.cli import build_parser, main

# CONTRACT.md, "CLI": command -> its sub-actions (if any).
CONTRACT_COMMANDS: dict[str, list[str]] = {
    "serve": [],
    "demo": [],
    "migrate": [],
    "db": ["start", "stop", "status"],
    "backup": [],
    "restore": [],
    "plugins": ["list", "status", "restart", "validate", "keygen", "sign"],
    "import-tariff": [],
    "bill": [],
    "api-keys": ["create", "list", "revoke"],
    "users": ["create", "set-password"],
}


def run(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aetherlens.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env_extra or {})},
    )


def test_every_contract_command_is_registered() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    registered = set(subparsers.choices)  # type: ignore[arg-type]
    assert set(CONTRACT_COMMANDS) <= registered, set(CONTRACT_COMMANDS) - registered


@pytest.mark.parametrize("command", sorted(CONTRACT_COMMANDS))
def test_help_of_each_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"aetherlens {command}" in text
    for action in CONTRACT_COMMANDS[command]:
        assert action in text, f"'{command} --help' does not mention '{action}'"


def test_bad_usage_exits_2() -> None:
    result = run("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert result.stdout == ""


def test_bad_configuration_exits_1_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "aetherlens.yaml"
    config.write_text("api:\n  port: 80000\n")
    result = run("migrate", "--status", env_extra={"AETHERLENS_CONFIG": str(config)})
    assert result.returncode == 1
    assert "api.port" in result.stderr and "80000" in result.stderr
    assert result.stdout == ""


def test_unreachable_database_exits_1_with_a_reason(tmp_path: Path) -> None:
    result = run(
        "migrate",
        env_extra={"AETHERLENS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
    )
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert result.stdout == ""


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("aetherlens ")
