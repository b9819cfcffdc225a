"""Settings: YAML + environment + ${VAR} substitution, and errors that name key, value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from aetherlens.config import load_settings
from aetherlens.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aetherlens.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_env() -> None:
    settings = load_settings(env={})
    assert settings.database.url is None
    assert settings.uses_managed_database
    assert settings.api.host == "127.0.0.1"
    assert settings.api.port == 8080
    assert settings.api.max_body_bytes == 10 * 1024 * 1024
    assert (settings.retention.raw_days, settings.retention.hourly_days, settings.retention.daily_days) == (
        90,
        365,
        1825,
    )
    assert settings.collector.auto_register_devices is True
    assert settings.site.currency == "USD"
    assert settings.log.level == "info" and settings.log.format == "json"
    assert settings.managed_dir == settings.data_dir / "postgres"


def test_yaml_file_named_by_env_and_var_substitution(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
data_dir: ${DATA}
database:
  url: postgresql://postgres@127.0.0.1:${PGPORT:-5432}/aetherlens
site:
  timezone: Europe/Berlin
  currency: EUR
plugins:
  simulator:
    enabled: true
    poll_interval: 5
    config:
      households: ${HOUSEHOLDS}
  allow_unsigned: [my_plugin]
""",
    )
    settings = load_settings(env={"AETHERLENS_CONFIG": str(path), "DATA": str(tmp_path), "HOUSEHOLDS": "3"})
    assert settings.data_dir == tmp_path
    assert settings.database.url == "postgresql://postgres@127.0.0.1:5432/aetherlens"
    assert settings.site.timezone == "Europe/Berlin"
    assert settings.plugins["simulator"].enabled is True
    assert settings.plugins["simulator"].poll_interval == 5
    assert settings.plugins["simulator"].config == {"households": "3"}
    assert settings.plugin_options.allow_unsigned == ["my_plugin"]


def test_environment_beats_yaml_and_nests_with_double_underscore(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  port: 9000\n  host: 0.0.0.0\n")
    settings = load_settings(
        path,
        env={
            "AETHERLENS_API__PORT": "9100",
            "AETHERLENS_DATA_DIR": str(tmp_path / "d"),
            "AETHERLENS_DATABASE_URL": "postgresql://db.example/aether",
            "AETHERLENS_RETENTION__RAW_DAYS": "30",
        },
    )
    assert settings.api.port == 9100  # environment wins
    assert settings.api.host == "0.0.0.0"  # YAML kept where the environment is silent
    assert settings.data_dir == tmp_path / "d"
    assert settings.database.url == "postgresql://db.example/aether"
    assert settings.retention.raw_days == 30


def test_admin_password_variable() -> None:
    settings = load_settings(env={"AETHERLENS_ADMIN_PASSWORD": "correct horse battery"})
    assert settings.auth.admin_password == "correct horse battery"


def test_unknown_yaml_key_stops_and_names_it(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  prot: 8080\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'api\.prot'"):
        load_settings(path, env={})


def test_bad_value_names_key_value_and_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "site:\n  timezone: Mars/Olympus\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = info.value.message
    assert "site.timezone" in message and "'Mars/Olympus'" in message and "IANA time zone" in message


def test_bad_port_from_environment() -> None:
    with pytest.raises(ConfigError, match=r"api\.port.*'99999'.*less than or equal to 65535"):
        load_settings(env={"AETHERLENS_API__PORT": "99999"})


def test_database_url_must_be_postgres() -> None:
    with pytest.raises(ConfigError, match=r"database\.url.*postgresql:// URL"):
        load_settings(env={"AETHERLENS_DATABASE_URL": "mysql://x"})


def test_secrets_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"AETHERLENS_ADMIN_PASSWORD": "short"})
    assert "short" not in info.value.message
    assert "auth.admin_password" in info.value.message and "<hidden>" in info.value.message


def test_missing_variable_in_yaml_names_key_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "database:\n  url: ${NOPE}\n")
    with pytest.raises(ConfigError, match=r"'database\.url'.*\$\{NOPE\}"):
        load_settings(path, env={})


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml", env={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "api: [unclosed\n"), env={})
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"), env={})


def test_unknown_environment_variable_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(env={"AETHERLENS_NOT_A_KEY": "1"})
    assert settings.api.port == 8080
    assert "AETHERLENS_NOT_A_KEY" in caplog.text


class _WatchedEnviron(dict[str, str]):
    """Stands in for os.environ and records every write, so a rewrite during the build is seen."""

    def __init__(self, initial: dict[str, str]) -> None:
        super().__init__(initial)
        self.writes: list[str] = []

    def __setitem__(self, key: str, value: str) -> None:
        self.writes.append(f"set {key}")
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append(f"del {key}")
        super().__delitem__(key)

    def clear(self) -> None:
        self.writes.append("clear")
        super().clear()

    def update(self, *args: object, **kwargs: object) -> None:
        self.writes.append("update")
        super().update(*args, **kwargs)  # type: ignore[arg-type]


def test_given_env_is_read_without_rewriting_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Another thread reading os.environ while settings are built must never see the caller's mapping
    # (nor an empty environment between a clear and an update).
    import os

    watched = _WatchedEnviron({**os.environ, "AETHERLENS_API__PORT": "9100"})
    monkeypatch.setattr(os, "environ", watched)
    settings = load_settings(env={"AETHERLENS_API__PORT": "9000"})
    assert settings.api.port == 9000
    assert watched.writes == []
    assert watched["AETHERLENS_API__PORT"] == "9100"
    # Without a given mapping the process environment is what counts.
    assert load_settings().api.port == 9100
