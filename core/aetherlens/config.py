"""Typed settings: YAML file + environment, with ``${VAR}`` substitution inside the YAML.

Sources, strongest first (CONTRACT.md): environment (``AETHERLENS_`` prefix, ``__`` for nesting), the
YAML file named by ``AETHERLENS_CONFIG``, defaults. An unknown YAML key stops the start and names the
key; an unknown ``AETHERLENS_*`` variable only warns. Every option is documented in
docs/CONFIGURATION.md — keep the two in step.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from aetherlens.errors import ConfigError, describe_validation_error, validation_message

log = logging.getLogger(__name__)

ENV_PREFIX = "AETHERLENS_"
# Short names the contract gives for nested keys (the `__` spelling works too).
_ENV_ALIASES = {
    "AETHERLENS_DATABASE_URL": ("database", "url"),
    "AETHERLENS_ADMIN_PASSWORD": ("auth", "admin_password"),
}
# Variables that are not settings keys but are read by the loader or by tools around it.
_LOADER_ENV = {"AETHERLENS_CONFIG", "AETHERLENS_MIGRATIONS_DIR", *_ENV_ALIASES}
# Plugin ids and plugin instance ids (``plugins.<instance>``): they name processes and state folders.
PLUGIN_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_VAR_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# The environment the settings being built read (``load_settings(env=...)``); None = the process's.
# A context variable, not a rewrite of os.environ: another thread or task reading the environment while
# settings are built must see the process's real environment.
_BUILD_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("aetherlens_settings_env", default=None)


def _environ() -> Mapping[str, str]:
    given = _BUILD_ENV.get()
    return os.environ if given is None else given


class _GivenEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._given = environ  # set before super().__init__, which loads the variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatabaseSettings(_Section):
    url: str | None = Field(
        default=None, description="postgresql:// URL of an external server; unset = managed database"
    )
    managed_dir: Path | None = Field(default=None, description="cluster directory; default data_dir/postgres")
    listen_port: int | None = Field(default=None, ge=1, le=65535, description="also listen on 127.0.0.1:PORT")
    pool_min_size: int = Field(default=2, ge=1, le=100)
    pool_max_size: int = Field(default=10, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (or unset for the managed database)")
        return value


class SiteSettings(_Section):
    timezone: str = Field(default_factory=lambda: _system_timezone())
    currency: str = "USD"
    country: str | None = None
    meter_device: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as Europe/Berlin or America/New_York") from None
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError("must be an ISO 4217 code of three capital letters, such as USD or EUR")
        return value


class RetentionSettings(_Section):
    raw_days: int = Field(default=90, ge=1)
    hourly_days: int = Field(default=365, ge=1)
    daily_days: int = Field(default=1825, ge=1)


class CollectorSettings(_Section):
    auto_register_devices: bool = True
    max_future_seconds: float = Field(default=300.0, ge=0, description="reject timestamps further ahead")


class WriterSettings(_Section):
    batch_size: int = Field(default=50_000, ge=1, le=1_000_000, description="rows per COPY")
    # Natural group commit: the writer commits whatever is queued as soon as its previous commit is done,
    # so 0 (no lingering) gives the lowest latency and batches still grow under load by themselves.
    flush_interval: float = Field(
        default=0.0, ge=0, le=60, description="seconds a partial batch may wait for more rows (0 = none)"
    )
    queue_max: int = Field(default=200_000, ge=1, description="metrics buffered before backpressure")
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 20, description="disk spool bound")
    retry_initial: float = Field(default=0.5, gt=0)
    retry_max: float = Field(default=30.0, gt=0)


class RateLimitSettings(_Section):
    login_per_minute: int = Field(default=60, ge=1)
    login_per_hour: int = Field(default=1000, ge=1)
    principal_per_minute: int = Field(default=6000, ge=1)
    stream_pending_per_ip: int = Field(default=10, ge=1)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)


class AuthSettings(_Section):
    admin_password: str | None = Field(default=None, min_length=12)
    secret_key: str | None = Field(default=None, min_length=32)
    access_token_ttl: int = Field(default=3600, ge=60)
    refresh_token_ttl: int = Field(default=7 * 24 * 3600, ge=300)


class PluginSettings(_Section):
    """One plugin instance, ``plugins.<instance id>``; several instances may run one plugin."""

    plugin: str | None = Field(
        default=None,
        pattern=PLUGIN_ID_PATTERN.pattern,
        description="manifest id of the plugin this instance runs; unset = the instance id itself",
    )
    enabled: bool | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    poll_interval: float | None = Field(default=None, gt=0)


class PluginsSection(_Section):
    """Global plugin options; per-plugin settings are the other keys (``plugins.<id>``)."""

    directories: list[Path] = Field(default_factory=list)
    trusted_keys: dict[str, str] = Field(default_factory=dict, description="publisher -> ed25519 public key")
    allow_unsigned: list[str] = Field(default_factory=list)
    memory_limit_mb: int = Field(default=256, ge=16)
    cpu_limit_percent: float = Field(default=50.0, gt=0, le=100)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    data_dir: Path = Field(default_factory=lambda: _default_data_dir())
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    site: SiteSettings = Field(default_factory=SiteSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    collector: CollectorSettings = Field(default_factory=CollectorSettings)
    writer: WriterSettings = Field(default_factory=WriterSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    plugin_options: PluginsSection = Field(default_factory=PluginsSection)
    plugins: dict[str, PluginSettings] = Field(default_factory=dict)
    log: LogSettings = Field(default_factory=LogSettings)

    @field_validator("plugins")
    @classmethod
    def _instance_ids(cls, value: dict[str, PluginSettings]) -> dict[str, PluginSettings]:
        # The instance id names a process and a state folder under data_dir: keep it a plain name.
        for key in value:
            if not PLUGIN_ID_PATTERN.fullmatch(key):
                raise ValueError(
                    f"plugins.{key}: an instance id must be lower-case letters, digits and '_', "
                    "starting with a letter (at most 64 characters)"
                )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML file, which arrives as init kwargs; no .env or secrets dir.
        given = _BUILD_ENV.get()
        if given is not None:
            env_settings = _GivenEnvSource(settings_cls, given)
        return (env_settings, init_settings)

    @property
    def managed_dir(self) -> Path:
        return self.database.managed_dir or self.data_dir / "postgres"

    @property
    def uses_managed_database(self) -> bool:
        return self.database.url is None


def _system_timezone() -> str:
    tz = _environ().get("TZ")
    if tz and tz in available_timezones():
        return tz
    try:
        link = Path("/etc/localtime").resolve()
        name = str(link).split("zoneinfo/", 1)[1]
        ZoneInfo(name)
    except (IndexError, OSError, ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


def _default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/aetherlens")
    # Path.home() would read the process's HOME; the environment being built from decides.
    home = _environ().get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    return Path(home) / ".local" / "share" / "aetherlens"


def substitute_env(value: Any, env: dict[str, str], where: str = "") -> Any:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: substitute_env(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"config key '{where}': environment variable ${{{name}}} is not set "
            "(set it, or write ${" + name + ":-default})",
            details={"key": where, "variable": name},
        )

    return _VAR_PATTERN.sub(replace, value)


def read_yaml_config(path: Path, env: dict[str, str]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}", details={"file": str(path)}
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {path} is not valid YAML: {exc}", details={"file": str(path)}
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys at the top level")
    result: dict[str, Any] = substitute_env(data, env)
    # The contract's key is `plugins.<id>`; global plugin options sit beside them in the YAML.
    plugins = result.get("plugins")
    if isinstance(plugins, dict):
        options = {k: plugins.pop(k) for k in list(plugins) if k in PluginsSection.model_fields}
        if options:
            result["plugin_options"] = options
    return result


def _warn_unknown_env(env: dict[str, str]) -> None:
    top = set(Settings.model_fields)
    for name in env:
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in _LOADER_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower().split("__", 1)[0]
        if key not in top:
            log.warning("ignoring unknown environment variable %s (no settings key '%s')", name, key)


def load_settings(
    config_file: Path | str | None = None, env: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build the settings; raise ConfigError naming the key, the value and what is allowed."""
    environ = dict(os.environ if env is None else env)
    path = config_file or environ.get("AETHERLENS_CONFIG")
    data = read_yaml_config(Path(path), environ) if path else {}
    for key, value in overrides.items():
        data[key] = value
    _warn_unknown_env(environ)
    for variable, (section, key) in _ENV_ALIASES.items():
        if environ.get(variable):
            data.setdefault(section, {})[key] = environ[variable]
    token = _BUILD_ENV.set(environ) if env is not None else None
    try:
        return Settings(**data)
    except pydantic.ValidationError as exc:
        problems = validation_message(describe_validation_error(exc, noun="config key", show_input=True))
        raise ConfigError(f"invalid configuration: {problems}", details={"errors": problems}) from None
    finally:
        if token is not None:
            _BUILD_ENV.reset(token)
