"""``plugin.yaml``: the manifest model, config validation against its JSON Schema, core-version check."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final, Literal

import jsonschema
import pydantic
import yaml
from jsonschema.exceptions import SchemaError
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aetherlens import __version__
from aetherlens.config import PLUGIN_ID_PATTERN
from aetherlens.errors import PluginError, describe_validation_error, validation_message
from aetherlens.models import MAX_MAGNITUDE, METRIC_TYPES, MetricType

MANIFEST_NAME: Final = "plugin.yaml"

Capability = Literal[
    "metrics.collect", "metrics.push", "metrics.export", "costs.collect", "device.discover", "device.control"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricDeclaration(_Strict):
    """A metric type the plugin emits; types outside the core vocabulary extend it (with their unit)."""

    type: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    unit: str = Field(min_length=1, max_length=32)
    counter: bool = False
    description: str = ""
    # The physical range of a declared type, in its unit; readings outside it are rejected on ingest.
    # Absent = only the magnitude bound every type has (±1e15); counters default to a minimum of 0.
    minimum: float | None = Field(default=None, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)
    maximum: float | None = Field(default=None, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)

    @model_validator(mode="after")
    def _range(self) -> MetricDeclaration:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(
                f"metric {self.type}: minimum {self.minimum:g} is above maximum {self.maximum:g}"
            )
        return self

    def as_metric_type(self) -> MetricType:
        """The collector's view: a declared type is accepted in its own unit only (no conversions)."""
        minimum = self.minimum if self.minimum is not None else (0.0 if self.counter else -MAX_MAGNITUDE)
        return MetricType(
            self.type,
            self.unit,
            {self.unit: (1.0, 0.0)},
            self.counter,
            self.description,
            minimum=minimum,
            maximum=self.maximum if self.maximum is not None else MAX_MAGNITUDE,
        )


class Requirements(_Strict):
    core_version: str = ">=0"
    python_packages: list[str] = Field(default_factory=list)

    @field_validator("core_version")
    @classmethod
    def _specifier(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(f"'{value}' is not a version range such as '>=0.1,<1'") from None
        return value


class Manifest(_Strict):
    id: str
    name: str = Field(min_length=1, max_length=200)
    version: str
    description: str = ""
    publisher: str | None = Field(default=None, description="who signs it; a key in trusted_keys")
    entry: str = Field(description="'module:Class' of the BasePlugin subclass")
    capabilities: list[Capability] = Field(min_length=1)
    config_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    metrics: list[MetricDeclaration] = Field(default_factory=list)
    permissions: list[str] = Field(default_factory=list)
    poll_interval: float = Field(default=60.0, gt=0)
    timeout: float = Field(default=30.0, gt=0, description="seconds one call may take before a kill")
    default_enabled: bool = False
    requirements: Requirements = Field(default_factory=Requirements)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not PLUGIN_ID_PATTERN.fullmatch(value):
            raise ValueError("must be lower-case letters, digits and '_', starting with a letter")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"'{value}' is not a version such as 1.0.0") from None
        return value

    @field_validator("entry")
    @classmethod
    def _entry(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError("must be 'module:Class', such as 'plugin:MyPlugin'")
        return value

    @field_validator("config_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def extra_metric_types(self) -> dict[str, MetricDeclaration]:
        return {m.type: m for m in self.metrics if m.type not in METRIC_TYPES}


def parse_manifest(data: Any, where: str) -> Manifest:
    if not isinstance(data, dict):
        raise PluginError(f"{where}: the manifest must be a mapping of keys")
    plugin = data.get("id", "?")
    try:
        return Manifest.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = validation_message(describe_validation_error(exc, noun="key"))
        raise PluginError(
            f"plugin '{plugin}' ({where}): invalid manifest: {problems}",
            details={"plugin": plugin, "errors": problems},
        ) from None


def load_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PluginError(f"{path}: cannot read the manifest: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PluginError(f"{path}: the manifest is not valid YAML: {exc}") from None
    return parse_manifest(data, str(path))


def validate_config(
    manifest: Manifest, config: dict[str, Any], *, instance_id: str | None = None
) -> dict[str, Any]:
    """Check ``plugins.<instance>.config`` against the schema; fill schema defaults for absent top-level keys.

    Every problem is reported at once, each naming the plugin instance, the key path and the reason.
    """
    name = instance_id or manifest.id
    validator = jsonschema.Draft202012Validator(manifest.config_schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        problems = [
            f"plugin '{name}': config key '{_key_path(name, e.absolute_path)}': {e.message}" for e in errors
        ]
        raise PluginError(
            "; ".join(problems),
            details={"plugin": name, "errors": problems},
        )
    filled = dict(config)
    for key, spec in manifest.config_schema.get("properties", {}).items():
        if key not in filled and isinstance(spec, dict) and "default" in spec:
            filled[key] = spec["default"]
    return filled


def _key_path(plugin_id: str, path: Any) -> str:
    parts = [f"plugins.{plugin_id}.config"]
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts)


def check_core_version(manifest: Manifest, core_version: str = __version__) -> None:
    spec = SpecifierSet(manifest.requirements.core_version)
    if not spec.contains(Version(core_version), prereleases=True):
        raise PluginError(
            f"plugin '{manifest.id}' requires core version {manifest.requirements.core_version}, "
            f"this core is {core_version}",
            details={"plugin": manifest.id, "required": manifest.requirements.core_version},
        )
