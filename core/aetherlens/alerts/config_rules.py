"""Rules declared in the configuration (``alerts.rules``): validated like API rules, synced at start.

Each list item has the shape of a POST /alerts body; its ``name`` is its key. At start the stored
``source = 'config'`` rules become exactly the file's list (new ones created, changed ones replaced,
removed ones deleted); rules made through the API are never touched. A device a rule names that is not
registered yet is registered (source ``config``) when ``collector.auto_register_devices`` is on, as its
first reading would; otherwise it must exist. A bad rule stops the start with a
``ConfigError`` naming the key (``alerts.rules.2.condition.op``), like any other bad configuration.
"""

from __future__ import annotations

from collections.abc import Container

import asyncpg
import pydantic

from aetherlens.alerts.rules import RuleError, RuleSpec, check_rule, condition_dict
from aetherlens.config import Settings
from aetherlens.db.queries import alerts as q
from aetherlens.db.queries.devices import create_device, device_exists
from aetherlens.errors import ConfigError, ValidationError, describe_validation_error, validation_message


def fields_of(spec: RuleSpec) -> q.AlertFields:
    return q.AlertFields(
        name=spec.name,
        enabled=spec.enabled,
        device_id=spec.device_id,
        metric_type=spec.metric_type,
        condition=condition_dict(spec),
        severity=spec.severity,
        notify=[t.model_dump() for t in spec.notify],
        cooldown_seconds=spec.cooldown_seconds,
    )


async def sync_config_rules(
    conn: asyncpg.Connection, settings: Settings, known_metric_types: Container[str]
) -> list[q.AlertRule]:
    specs: list[RuleSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(settings.alerts.rules):
        where = f"alerts.rules.{i}"
        try:
            spec = RuleSpec.model_validate(item)
        except pydantic.ValidationError as exc:
            problems = describe_validation_error(exc, where=where, noun="config key", show_input=True)
            raise ConfigError(validation_message(problems), details={"errors": problems}) from None
        if spec.name in seen:
            raise ConfigError(f"config key '{where}.name': a second rule named {spec.name!r}")
        seen.add(spec.name)

        async def exists(device: str) -> bool:
            if await device_exists(conn, device):
                return True
            if not settings.collector.auto_register_devices:
                return False
            try:
                await create_device(conn, device_id=device, name=device, source="config")
            except ValidationError:  # not a valid device id: reported as an unknown device
                return False
            return True

        try:
            await check_rule(spec, known_metric_types=known_metric_types, device_exists=exists, where=where)
        except RuleError as exc:
            raise ConfigError(f"config key '{exc.field}': {exc.message.split(': ', 1)[-1]}") from None
        specs.append(spec)
    return await q.sync_config_rules(conn, [fields_of(s) for s in specs])
