"""Rules declared in the YAML configuration, and the engine inside a running core: a config rule fires on
ingested data, the core restarts between fire and resolve, and the resolve arrives once."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from api.conftest import ADMIN_PASSWORD

from aetherlens.alerts.config_rules import sync_config_rules
from aetherlens.config import Settings, load_settings
from aetherlens.db.queries import alerts as q
from aetherlens.errors import ConfigError
from aetherlens.models import METRIC_TYPES, Metric
from aetherlens.runtime import Core

BOILER: dict[str, Any] = {
    "name": "boiler too hot",
    "device_id": "boiler",
    "metric_type": "temperature",
    "condition": {"type": "threshold", "op": ">", "value": 90},
    "severity": "critical",
    "cooldown_seconds": 0,
}


def settings(tmp: Path, dsn: str, rules: list[dict[str, Any]]) -> Settings:
    return Settings(
        data_dir=tmp / "data",
        database={"url": dsn},
        auth={"admin_password": ADMIN_PASSWORD},
        site={"timezone": "UTC"},
        alerts={"rules": rules, "evaluation_interval": 1},
        log={"format": "text"},
    )


async def test_yaml_rules_are_created_replaced_and_removed(migrated_database: Any, tmp_path: Path) -> None:
    dsn = await migrated_database()
    config = tmp_path / "aetherlens.yaml"
    config.write_text(
        """
alerts:
  evaluation_interval: 15
  rules:
    - name: boiler too hot
      device_id: boiler
      metric_type: temperature
      condition: {type: threshold, op: ">", value: 90, for_seconds: 120}
    - name: site budget
      condition: {type: budget, scope: site, period: cycle, amount: 120, projected: true}
      notify: [{type: webhook, url: "https://hooks.example/alerts"}]
""",
        encoding="utf-8",
    )
    loaded = load_settings(config_file=config, env={})
    assert loaded.alerts.evaluation_interval == 15
    conn = await asyncpg.connect(dsn)
    try:
        rules = await sync_config_rules(conn, loaded, METRIC_TYPES)
        assert [(r.name, r.source) for r in rules] == [
            ("boiler too hot", "config"),
            ("site budget", "config"),
        ]
        # The device the rule names is registered as its first reading would register it.
        assert await conn.fetchval("SELECT source FROM devices WHERE id = 'boiler'") == "config"
        api_rule = await q.create_alert(
            conn, q.AlertFields(name="by hand", condition={"type": "no_data", "for_seconds": 60})
        )
        # Unchanged: untouched (same row, same update time); changed: replaced; removed: deleted.
        again = await sync_config_rules(conn, loaded, METRIC_TYPES)
        assert [(r.id, r.updated_at) for r in again] == [(r.id, r.updated_at) for r in rules]
        changed = loaded.model_copy(
            update={"alerts": loaded.alerts.model_copy(update={"rules": [{**BOILER}]})}
        )
        (boiler,) = await sync_config_rules(conn, changed, METRIC_TYPES)
        assert boiler.id == rules[0].id and boiler.condition["for_seconds"] == 0
        assert sorted(r.name for r in await q.list_alerts(conn)) == ["boiler too hot", "by hand"]
        assert api_rule.id in [r.id for r in await q.list_alerts(conn)]
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        ({**BOILER, "condition": {"type": "threshold", "op": "=", "value": 1}}, "alerts.rules.0.condition"),
        ({**BOILER, "metric_type": "humidity"}, "alerts.rules.0.metric_type"),
        (
            {**BOILER, "condition": {"type": "threshold", "op": "<", "value": -300}},
            "alerts.rules.0.condition.value",
        ),
        ({**BOILER, "colour": "red"}, "alerts.rules.0.colour"),
    ],
)
async def test_a_bad_config_rule_stops_the_start_naming_the_key(
    migrated_database: Any, tmp_path: Path, rule: dict[str, Any], key: str
) -> None:
    conn = await asyncpg.connect(await migrated_database())
    try:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            await sync_config_rules(conn, settings(tmp_path, "", [rule]), METRIC_TYPES)
    finally:
        await conn.close()


async def test_a_running_core_evaluates_config_rules_across_a_restart(
    migrated_database: Any, tmp_path: Path
) -> None:
    dsn = await migrated_database()
    now = dt.datetime.now(dt.UTC)

    async def reading(core: Core, value: float, seconds_ago: float) -> None:
        assert core.collector is not None
        metric = Metric(
            now - dt.timedelta(seconds=seconds_ago),
            "boiler",
            "temperature",
            value,
            METRIC_TYPES["temperature"].unit,
        )
        assert (await core.collector.submit([metric])).accepted == 1

    async def transitions() -> list[str]:
        return [t["state"] for t in await q.transitions(pool)]

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    core = Core(settings(tmp_path, dsn, [BOILER]))
    try:
        await core.start(port=0)
        await reading(core, 95, 60)
        await wait_until_async(lambda: transitions(), ["firing"])
        await core.stop()
        core = Core(settings(tmp_path, dsn, [BOILER]))  # the restart, while the alert is firing
        await core.start(port=0)
        await reading(core, 97, 50)  # still hot: no second "fired"
        await reading(core, 40, 40)
        await wait_until_async(lambda: transitions(), ["firing", "resolved"])
        assert len(await q.list_events(pool)) == 1
    finally:
        await core.stop()
        await pool.close()


async def wait_until_async(get: Any, expected: Any, timeout: float = 30.0) -> None:
    """``dbtest.wait_until`` for an async getter: re-checks ``get()`` every 50 ms until it returns
    ``expected``; fails (never falls through) after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (seen := await get()) != expected:
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout} s: got {seen!r}, wanted {expected!r}")
        await asyncio.sleep(0.05)
