"""The Home Assistant add-on's options (``/data/options.json``) → the core's configuration.

One function, :func:`render_core_config`, owns the whole mapping so it is tested in one place. Every
option is checked here and a bad one raises :class:`ConfigError` naming the *add-on option* (what the
user sees in the add-on's Configuration tab), not the core key it feeds. The result is then built into
the core's :class:`Settings` as a second check, so a value the core would refuse also stops here.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from aetherlens.config import load_settings
from aetherlens.costs.files import read_document, tariff_from_document
from aetherlens.costs.urdb import is_urdb
from aetherlens.errors import ConfigError, TariffError
from aetherlens.keyfile import read_or_create_private_file, write_private_file

API_PORT = 8080
# The managed cluster listens on loopback only; the add-on's forwarder publishes it on DB_PORT.
DB_LISTEN_PORT = 5433
DB_PORT = 5432
LOG_LEVELS = ("debug", "info", "warning", "error")
MQTT_PRESETS = ("shelly_gen2", "tasmota", "ha_discovery")
ADMIN_PASSWORD_FILE = "admin_password.txt"  # noqa: S105 (a file name)
READONLY_PASSWORD_FILE = "grafana_readonly_password.txt"  # noqa: S105 (a file name)
_COUNTRY = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_MQTT_URL = re.compile(r"mqtts?://[^/\s:]+(:\d{1,5})?/?")
_HTTP_URL = re.compile(r"https?://[^/\s]+.*")


@dataclass(frozen=True, slots=True)
class TariffSource:
    """Where the tariff comes from: a file in the add-on's config folder or text from the options."""

    path: Path
    label: str | None
    option: str  # the option that named it, for messages


@dataclass(frozen=True, slots=True)
class RenderedConfig:
    core: dict[str, Any]  # the core's YAML configuration
    tariff: TariffSource | None
    database_access: bool


def render_core_config(
    options: Mapping[str, Any],
    *,
    data_dir: Path,
    config_dir: Path,
    env: Mapping[str, str],
) -> RenderedConfig:
    """Map the add-on's options onto the core's configuration; raise ConfigError naming the option.

    ``data_dir`` is the add-on's private ``/data``, ``config_dir`` its user-visible ``/config``
    (``addon_config``), ``env`` the container's environment (``TZ`` is set by the Supervisor).
    Side effects are limited to ``data_dir`` and ``config_dir``: the tariff text is written to a file
    the importer reads, and the admin password is generated once into the config folder (so it is
    never printed into the add-on log).
    """
    if not isinstance(options, Mapping):
        raise ConfigError("add-on options must be a mapping (the Supervisor's options.json)")
    opts = _Options(options)
    log_level = opts.choice("log_level", LOG_LEVELS, default="info")
    timezone = opts.text("timezone") or env.get("TZ") or "UTC"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        source = "option 'timezone'" if opts.text("timezone") else "the Home Assistant time zone (TZ)"
        raise ConfigError(
            f"add-on {source} = {timezone!r}: must be an IANA time zone such as Europe/Berlin",
            details={"option": "timezone"},
        ) from None
    site: dict[str, Any] = {
        "timezone": timezone,
        "currency": opts.matching("currency", _CURRENCY, "three capital letters (ISO 4217), e.g. EUR"),
    }
    country = opts.text("country")
    if country is not None:
        site["country"] = opts.matching("country", _COUNTRY, "a country code such as DE or US-CA")
    meter = opts.text("meter_device")
    if meter is not None:
        site["meter_device"] = meter

    retention = {
        "raw_days": opts.integer("retention_raw_days", minimum=1, default=90),
        "hourly_days": opts.integer("retention_hourly_days", minimum=1, default=365),
        "daily_days": opts.integer("retention_daily_days", minimum=1, default=1825),
    }
    for shorter, longer in (("raw_days", "hourly_days"), ("hourly_days", "daily_days")):
        if retention[shorter] > retention[longer]:
            raise ConfigError(
                f"add-on option 'retention_{shorter}' = {retention[shorter]} is longer than "
                f"'retention_{longer}' = {retention[longer]}: finer data cannot outlive coarser data",
                details={"option": f"retention_{shorter}"},
            )

    database_access = opts.boolean("database_access", default=False)
    core: dict[str, Any] = {
        "data_dir": str(data_dir),
        "site": site,
        "retention": retention,
        # 0.0.0.0: Home Assistant and the Supervisor's watchdog reach the API over the add-on network.
        "api": {"host": "0.0.0.0", "port": API_PORT},  # noqa: S104
        "auth": {"admin_password": _admin_password(data_dir, config_dir)},
        "log": {"level": log_level, "format": "text"},
        "plugins": {
            "homeassistant": _homeassistant(opts.section("homeassistant")),
            "mqtt": _mqtt(opts.section("mqtt")),
        },
    }
    if database_access:
        core["database"] = {"listen_port": DB_LISTEN_PORT}

    tariff = _tariff(opts, data_dir, config_dir)
    if tariff is not None:
        _check_tariff(tariff, site)
    _check_with_core(core, env)
    return RenderedConfig(core=core, tariff=tariff, database_access=database_access)


class _Options:
    """Typed reads of one level of options; every message names the option by its full path."""

    def __init__(self, values: Mapping[str, Any], prefix: str = "") -> None:
        self.values = values
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, value: Any, allowed: str) -> ConfigError:
        shown = "<hidden>" if _secret(key) else repr(value)
        return ConfigError(
            f"add-on option '{self.name(key)}' = {shown}: {allowed}", details={"option": self.name(key)}
        )

    def text(self, key: str) -> str | None:
        """A string, or None when absent or blank (the Supervisor keeps optional fields as '')."""
        value = self.values.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, value, "must be text")
        return value.strip() or None

    def matching(self, key: str, pattern: re.Pattern[str], allowed: str) -> str:
        value = self.text(key)
        if value is None or not pattern.fullmatch(value):
            raise self.fail(key, self.values.get(key), f"must be {allowed}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], *, default: str) -> str:
        value = self.text(key) or default
        if value not in allowed:
            raise self.fail(key, value, f"must be one of {', '.join(allowed)}")
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, value, "must be true or false")
        return value

    def integer(self, key: str, *, minimum: int, default: int, maximum: int | None = None) -> int:
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, value, "must be a whole number")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise self.fail(key, value, f"must be {bound}")
        return value

    def strings(self, key: str, *, default: list[str] | None = None) -> list[str]:
        value = self.values.get(key, default if default is not None else [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, value, "must be a list of text entries")
        return [v.strip() for v in value if v.strip()]

    def section(self, key: str) -> _Options:
        value = self.values.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, value, "must be a group of options")
        return _Options(value, prefix=f"{self.name(key)}.")


def _secret(key: str) -> bool:
    return any(word in key for word in ("password", "token", "secret"))


def _homeassistant(opts: _Options) -> dict[str, Any]:
    """``homeassistant`` source: no url/token = the Supervisor proxy with SUPERVISOR_TOKEN."""
    config: dict[str, Any] = {}
    url = opts.text("url")
    token = opts.text("token")
    if url is not None:
        if not _HTTP_URL.fullmatch(url):
            raise opts.fail("url", url, "must be an http:// or https:// URL of Home Assistant")
        config["url"] = url.rstrip("/")
    if token is not None:
        if url is None:
            raise opts.fail(
                "token", token, "needs 'homeassistant.url' too (without both, the Supervisor is used)"
            )
        config["token"] = token
    elif url is not None:
        raise opts.fail("url", url, "needs 'homeassistant.token' (a long-lived access token) too")
    entities = opts.strings("entities")
    if entities:
        config["entities"] = entities
    config["device_classes"] = opts.strings("device_classes", default=["power", "energy"]) or [
        "power",
        "energy",
    ]
    exclude = opts.strings("exclude")
    if exclude:
        config["exclude"] = exclude
    config["backfill_days"] = opts.integer("backfill_days", minimum=0, maximum=365, default=7)
    return {"enabled": opts.boolean("enabled", default=True), "config": config}


def _mqtt(opts: _Options) -> dict[str, Any]:
    enabled = opts.boolean("enabled", default=False)
    config: dict[str, Any] = {}
    broker = opts.text("broker")
    if broker is not None:
        if not _MQTT_URL.fullmatch(broker):
            raise opts.fail("broker", broker, "must be mqtt://host[:port] or mqtts://host[:port]")
        config["broker"] = broker
    elif enabled:
        raise opts.fail(
            "broker", None, "is required when 'mqtt.enabled' is true (e.g. mqtt://core-mosquitto:1883)"
        )
    for key in ("username", "password", "client_id"):
        value = opts.text(key)
        if value is not None:
            config[key] = value
    presets = opts.strings("presets")
    unknown = [p for p in presets if p not in MQTT_PRESETS]
    if unknown:
        raise opts.fail(
            "presets",
            presets,
            f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(MQTT_PRESETS)}",
        )
    if presets:
        config["presets"] = presets
    return {"enabled": enabled, "config": config}


def _tariff(opts: _Options, data_dir: Path, config_dir: Path) -> TariffSource | None:
    text = opts.text("tariff_yaml")
    file_name = opts.text("tariff_file")
    label = opts.text("tariff_label")
    if text is not None and file_name is not None:
        raise opts.fail("tariff_file", file_name, "set either 'tariff_yaml' or 'tariff_file', not both")
    if file_name is not None:
        relative = Path(file_name)
        if relative.is_absolute() or ".." in relative.parts:
            raise opts.fail("tariff_file", file_name, "must be a file name inside the add-on's config folder")
        path = config_dir / relative
        if not path.is_file():
            raise opts.fail(
                "tariff_file",
                file_name,
                f"no such file in the add-on's config folder ({path}); put the YAML or OpenEI URDB JSON "
                "file there (the addon_configs share)",
            )
        return TariffSource(path, label, "tariff_file")
    if text is not None:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise opts.fail("tariff_yaml", "<text>", f"is not valid YAML: {exc}") from None
        if not isinstance(document, dict):
            raise opts.fail(
                "tariff_yaml", "<text>", "must be a tariff in AetherLens's YAML format (a mapping)"
            )
        path = data_dir / "addon" / "tariff.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        return TariffSource(path, label, "tariff_yaml")
    if label is not None:
        raise opts.fail(
            "tariff_label", label, "needs 'tariff_file' (it picks one rate of an OpenEI URDB file)"
        )
    return None


def tariff_arguments(tariff: TariffSource, site: Mapping[str, Any]) -> dict[str, Any]:
    """How the importer reads the tariff: URDB rates carry no zone or holidays, so the site's apply;
    our YAML keeps its own (the site's zone only fills in a missing one)."""
    document = read_document(tariff.path)
    holidays = site.get("country") if is_urdb(document) else None
    return {"data": document, "timezone": site["timezone"], "holidays": holidays, "label": tariff.label}


def _check_tariff(tariff: TariffSource, site: Mapping[str, Any]) -> None:
    try:
        tariff_from_document(**tariff_arguments(tariff, site))
    except TariffError as exc:
        raise ConfigError(
            f"add-on option '{tariff.option}': the tariff is not valid: {exc.message}",
            details={"option": tariff.option},
        ) from None


def _admin_password(data_dir: Path, config_dir: Path) -> str:
    """Generated once into /data and copied to the config folder, which only HA admins can read."""
    password = read_or_create_private_file(
        data_dir / "addon" / "admin_password", lambda: secrets.token_urlsafe(18).encode()
    ).decode()
    visible = config_dir / ADMIN_PASSWORD_FILE
    if config_dir.is_dir() and not visible.exists():
        note = f"# AetherLens user 'admin' (the web API), created with the add-on.\n{password}\n"
        with contextlib.suppress(FileExistsError):
            write_private_file(visible, note.encode())
    return password


def _check_with_core(core: dict[str, Any], env: Mapping[str, str]) -> None:
    """Build the core's settings from the result: a value the core refuses stops the start here too."""
    core_env = {k: v for k, v in env.items() if not k.upper().startswith("AETHERLENS_")}
    try:
        load_settings(None, env=core_env, **core)
    except ConfigError as exc:
        raise ConfigError(
            f"the add-on options produce a configuration the core refuses: {exc.message}"
        ) from None
