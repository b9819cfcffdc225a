"""Which HA entities the plugin reads: ids/globs, device classes, exclusions, never AetherLens's own.

- ``entities`` given: only entities matching one of those ids or globs are candidates (any domain);
  ``device_classes`` then narrows them only when it is set explicitly.
- ``entities`` absent: every ``sensor.*`` whose ``device_class`` is in ``device_classes`` (default
  power, energy).
- ``exclude`` (ids or globs) removes entities; entities of the entity-registry platform ``aetherlens``
  (the AetherLens integration's own sensors) are always removed, so costs and energy AetherLens
  computed are never fed back in as readings.
- A candidate must also carry a unit the plugin can convert (``mapping.metric_for_unit``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

OWN_PLATFORM: Final = "aetherlens"
DEFAULT_DEVICE_CLASSES: Final = ("power", "energy")


@dataclass(frozen=True)
class RegistryEntity:
    entity_id: str
    platform: str
    device_id: str | None
    area_id: str | None
    name: str | None


@dataclass(frozen=True)
class RegistryDevice:
    id: str
    name: str
    area_id: str | None


@dataclass(frozen=True)
class Registries:
    """HA's entity, device and area registries as far as the plugin needs them."""

    entities: Mapping[str, RegistryEntity]
    devices: Mapping[str, RegistryDevice]
    areas: Mapping[str, str]  # area id -> name

    @classmethod
    def parse(
        cls,
        entities: Iterable[Mapping[str, Any]],
        devices: Iterable[Mapping[str, Any]],
        areas: Iterable[Mapping[str, Any]],
    ) -> Registries:
        """From the results of ``config/entity_registry/list``, ``config/device_registry/list`` and
        ``config/area_registry/list``."""
        return cls(
            {
                str(e["entity_id"]): RegistryEntity(
                    str(e["entity_id"]),
                    str(e.get("platform") or ""),
                    e.get("device_id") or None,
                    e.get("area_id") or None,
                    e.get("name") or e.get("original_name") or None,
                )
                for e in entities
                if e.get("entity_id")
            },
            {
                str(d["id"]): RegistryDevice(
                    str(d["id"]),
                    str(d.get("name_by_user") or d.get("name") or d["id"]),
                    d.get("area_id") or None,
                )
                for d in devices
                if d.get("id")
            },
            {str(a["area_id"]): str(a.get("name") or a["area_id"]) for a in areas if a.get("area_id")},
        )

    def is_own(self, entity_id: str) -> bool:
        entry = self.entities.get(entity_id)
        return entry is not None and entry.platform == OWN_PLATFORM


def matches(entity_id: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(entity_id, p) for p in patterns)


@dataclass(frozen=True)
class Selection:
    entities: tuple[str, ...] | None
    device_classes: tuple[str, ...]
    device_classes_given: bool
    exclude: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Selection:
        entities = config.get("entities")
        classes = config.get("device_classes")
        return cls(
            tuple(str(e) for e in entities) if entities else None,
            tuple(str(c) for c in classes) if classes else DEFAULT_DEVICE_CLASSES,
            bool(classes),
            tuple(str(e) for e in config.get("exclude") or ()),
        )

    def wants(self, entity_id: str, attributes: Mapping[str, Any], registries: Registries) -> bool:
        """Whether this entity is read (before the unit check, which ``mapping`` does)."""
        if registries.is_own(entity_id) or matches(entity_id, self.exclude):
            return False
        device_class = attributes.get("device_class")
        if self.entities is not None:
            if not matches(entity_id, self.entities):
                return False
            return not self.device_classes_given or device_class in self.device_classes
        return entity_id.startswith("sensor.") and device_class in self.device_classes
