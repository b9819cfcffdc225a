"""Reading a tariff file: our YAML (or JSON) format, or OpenEI URDB JSON — told apart by their fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from aetherlens.costs.tariff import Tariff, load_yaml, parse_tariff
from aetherlens.costs.urdb import is_urdb, pick_rate, urdb_to_tariff
from aetherlens.errors import TariffError


def read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TariffError(f"cannot read tariff file {path}: {exc.strerror}") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise TariffError(f"tariff file {path} is neither JSON nor YAML: {exc}") from None


def tariff_from_document(
    data: Any,
    *,
    timezone: str,
    holidays: str | None = None,
    name: str | None = None,
    label: str | None = None,
) -> tuple[Tariff, str]:
    """(tariff, source) where source is ``urdb`` or ``yaml``; options override our format's fields."""
    if is_urdb(data):
        rate = pick_rate(data, label)
        return urdb_to_tariff(rate, timezone=timezone, holidays=holidays, name=name), "urdb"
    if isinstance(data, dict):
        data = dict(data)
        if name:
            data["name"] = name
        if holidays:
            data["holidays"] = holidays
        data.setdefault("timezone", timezone)
    return parse_tariff(data), "yaml"
