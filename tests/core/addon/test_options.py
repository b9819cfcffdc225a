"""The add-on's options → the core's configuration (``render_core_config``): every option lands on the
core key it feeds, and a bad value stops with a message that names the *option*."""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from aetherlens.commands._addon_options import (
    ADMIN_PASSWORD_FILE,
    DB_LISTEN_PORT,
    render_core_config,
)
from aetherlens.config import load_settings
from aetherlens.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
CONFIG_YAML = ROOT / "addon" / "config.yaml"
DEMO_TARIFF = ROOT / "core" / "aetherlens" / "costs" / "demo_tariff.yaml"
URDB = ROOT / "tests" / "core" / "costs" / "fixtures" / "urdb_tou.json"


def defaults() -> dict[str, Any]:
    """The options a fresh install has: config.yaml's `options`."""
    options: dict[str, Any] = yaml.safe_load(CONFIG_YAML.read_text())["options"]
    return copy.deepcopy(options)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    data, config = tmp_path / "data", tmp_path / "config"
    data.mkdir()
    config.mkdir()
    return data, config


def render(options: dict[str, Any], dirs: tuple[Path, Path], env: dict[str, str] | None = None) -> Any:
    data, config = dirs
    return render_core_config(options, data_dir=data, config_dir=config, env=env or {"TZ": "Europe/Berlin"})


def test_defaults_give_a_core_config_the_core_accepts(dirs: tuple[Path, Path]) -> None:
    result = render(defaults(), dirs)
    core = result.core
    assert core["data_dir"] == str(dirs[0])
    assert core["site"] == {"timezone": "Europe/Berlin", "currency": "USD"}  # TZ from the Supervisor
    assert core["retention"] == {"raw_days": 90, "hourly_days": 365, "daily_days": 1825}
    assert core["api"] == {"host": "0.0.0.0", "port": 8080}
    assert core["log"] == {"level": "info", "format": "text"}
    # homeassistant on by default with no url/token: the plugin uses the Supervisor proxy.
    assert core["plugins"]["homeassistant"] == {
        "enabled": True,
        "config": {"device_classes": ["power", "energy"], "backfill_days": 7},
    }
    assert core["plugins"]["mqtt"] == {"enabled": False, "config": {"broker": "mqtt://core-mosquitto:1883"}}
    assert "database" not in core  # no TCP listener unless database_access
    assert result.tariff is None and result.database_access is False
    settings = load_settings(None, env={}, **core)
    assert settings.api.host == "0.0.0.0" and settings.site.timezone == "Europe/Berlin"


def test_every_option_reaches_its_core_key(dirs: tuple[Path, Path]) -> None:
    options = defaults() | {
        "timezone": "America/New_York",
        "currency": "EUR",
        "country": "US-CA",
        "meter_device": "shelly-3em-mains",
        "retention_raw_days": 30,
        "retention_hourly_days": 400,
        "retention_daily_days": 3000,
        "database_access": True,
        "log_level": "debug",
        "homeassistant": {
            "enabled": False,
            "url": "http://homeassistant.local:8123/",
            "token": "ha-long-lived-token",
            "entities": ["sensor.*_power", " "],
            "device_classes": ["power"],
            "exclude": ["sensor.ups_*"],
            "backfill_days": 0,
        },
        "mqtt": {
            "enabled": True,
            "broker": "mqtts://broker.lan:8883",
            "username": "aether",
            "password": "mqtt-secret",
            "client_id": "aetherlens-1",
            "presets": ["shelly_gen2", "tasmota"],
        },
    }
    result = render(options, dirs)
    core = result.core
    assert core["site"] == {
        "timezone": "America/New_York",
        "currency": "EUR",
        "country": "US-CA",
        "meter_device": "shelly-3em-mains",
    }
    assert core["retention"] == {"raw_days": 30, "hourly_days": 400, "daily_days": 3000}
    assert core["log"]["level"] == "debug"
    assert core["database"] == {"listen_port": DB_LISTEN_PORT} and result.database_access
    assert core["plugins"]["homeassistant"] == {
        "enabled": False,
        "config": {
            "url": "http://homeassistant.local:8123",
            "token": "ha-long-lived-token",
            "entities": ["sensor.*_power"],
            "device_classes": ["power"],
            "exclude": ["sensor.ups_*"],
            "backfill_days": 0,
        },
    }
    assert core["plugins"]["mqtt"] == {
        "enabled": True,
        "config": {
            "broker": "mqtts://broker.lan:8883",
            "username": "aether",
            "password": "mqtt-secret",
            "client_id": "aetherlens-1",
            "presets": ["shelly_gen2", "tasmota"],
        },
    }


def test_time_zone_falls_back_to_utc_without_tz(dirs: tuple[Path, Path]) -> None:
    assert render(defaults(), dirs, env={"PATH": "/bin"}).core["site"]["timezone"] == "UTC"


def test_tariff_from_yaml_text(dirs: tuple[Path, Path]) -> None:
    result = render(defaults() | {"tariff_yaml": DEMO_TARIFF.read_text()}, dirs)
    assert result.tariff is not None and result.tariff.option == "tariff_yaml"
    assert result.tariff.path == dirs[0] / "addon" / "tariff.yaml"
    assert yaml.safe_load(result.tariff.path.read_text())["name"] == "Demo time-of-use"


def test_tariff_from_urdb_file_in_the_config_folder(dirs: tuple[Path, Path]) -> None:
    (dirs[1] / "rate.json").write_text(URDB.read_text())
    # The fixture holds two rates: without a label the option is refused, naming the labels.
    with pytest.raises(ConfigError, match=r"option 'tariff_file'.*2 rates.*5e1676e95457a3f87673e3b1"):
        render(defaults() | {"tariff_file": "rate.json"}, dirs)
    result = render(
        defaults() | {"tariff_file": "rate.json", "tariff_label": "5e1676e95457a3f87673e3b1"}, dirs
    )
    assert result.tariff is not None and result.tariff.path == dirs[1] / "rate.json"
    assert result.tariff.option == "tariff_file" and result.tariff.label == "5e1676e95457a3f87673e3b1"


def test_admin_password_is_made_once_and_shown_in_the_config_folder(dirs: tuple[Path, Path]) -> None:
    first = render(defaults(), dirs).core["auth"]["admin_password"]
    second = render(defaults(), dirs).core["auth"]["admin_password"]
    assert first == second and len(first) >= 12
    visible = dirs[1] / ADMIN_PASSWORD_FILE
    assert first in visible.read_text()
    assert stat.S_IMODE(visible.stat().st_mode) == 0o600


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"currency": "eur"}, "currency", "three capital letters"),
    ({"currency": ""}, "currency", "three capital letters"),
    ({"timezone": "Mars/Olympus"}, "timezone", "IANA time zone"),
    ({"country": "Germany"}, "country", "country code"),
    ({"meter_device": 5}, "meter_device", "must be text"),
    ({"retention_raw_days": 0}, "retention_raw_days", "at least 1"),
    ({"retention_hourly_days": "long"}, "retention_hourly_days", "whole number"),
    ({"retention_daily_days": True}, "retention_daily_days", "whole number"),
    ({"retention_raw_days": 500}, "retention_raw_days", "longer than 'retention_hourly_days'"),
    ({"log_level": "verbose"}, "log_level", "one of debug, info, warning, error"),
    ({"database_access": "yes"}, "database_access", "true or false"),
    ({"tariff_yaml": "name: [unclosed"}, "tariff_yaml", "not valid YAML"),
    ({"tariff_yaml": "just text"}, "tariff_yaml", "a mapping"),
    ({"tariff_yaml": "name: x\ncurrency: USD\n"}, "tariff_yaml", "the tariff is not valid"),
    ({"tariff_file": "missing.json"}, "tariff_file", "no such file"),
    ({"tariff_file": "../../etc/passwd"}, "tariff_file", "inside the add-on's config folder"),
    ({"tariff_label": "Only with a file"}, "tariff_label", "needs 'tariff_file'"),
    ({"homeassistant": "on"}, "homeassistant", "group of options"),
    ({"homeassistant": {"enabled": "true"}}, "homeassistant.enabled", "true or false"),
    ({"homeassistant": {"enabled": True, "url": "ftp://ha"}}, "homeassistant.url", "http:// or https://"),
    (
        {"homeassistant": {"enabled": True, "url": "http://ha:8123"}},
        "homeassistant.url",
        "needs 'homeassistant.token'",
    ),
    (
        {"homeassistant": {"enabled": True, "token": "t0k3n"}},
        "homeassistant.token",
        "needs 'homeassistant.url'",
    ),
    ({"homeassistant": {"enabled": True, "entities": "sensor.*"}}, "homeassistant.entities", "list of text"),
    (
        {"homeassistant": {"enabled": True, "device_classes": [1]}},
        "homeassistant.device_classes",
        "list of text",
    ),
    ({"homeassistant": {"enabled": True, "exclude": {}}}, "homeassistant.exclude", "list of text"),
    (
        {"homeassistant": {"enabled": True, "backfill_days": 400}},
        "homeassistant.backfill_days",
        "between 0 and 365",
    ),
    ({"mqtt": {"enabled": True}}, "mqtt.broker", "required when 'mqtt.enabled'"),
    ({"mqtt": {"enabled": False, "broker": "tcp://x:1883"}}, "mqtt.broker", "mqtt://host"),
    ({"mqtt": {"enabled": False, "presets": ["zigbee"]}}, "mqtt.presets", "unknown preset(s) zigbee"),
    ({"mqtt": {"enabled": 1}}, "mqtt.enabled", "true or false"),
    ({"mqtt": {"enabled": False, "username": ["a"]}}, "mqtt.username", "must be text"),
]


@pytest.mark.parametrize(("change", "option", "why"), BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_a_bad_option_is_named(
    dirs: tuple[Path, Path], change: dict[str, Any], option: str, why: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        render(defaults() | change, dirs)
    assert f"option '{option}'" in caught.value.message
    assert why in caught.value.message


def test_tariff_text_and_file_together_are_refused(dirs: tuple[Path, Path]) -> None:
    (dirs[1] / "rate.yaml").write_text(DEMO_TARIFF.read_text())
    with pytest.raises(ConfigError, match="set either 'tariff_yaml' or 'tariff_file'"):
        render(defaults() | {"tariff_yaml": DEMO_TARIFF.read_text(), "tariff_file": "rate.yaml"}, dirs)


def test_secrets_are_not_repeated_in_messages(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        render(defaults() | {"homeassistant": {"enabled": True, "token": "very-secret-token"}}, dirs)
    assert "very-secret-token" not in caught.value.message and "<hidden>" in caught.value.message


def test_not_a_mapping(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        render_core_config(json.loads("[1]"), data_dir=dirs[0], config_dir=dirs[1], env={})
