"""Plugin rows against the real PostgreSQL: reads never carry the secrets column."""

from __future__ import annotations

import dataclasses

import asyncpg

from aetherlens.db.queries import plugins as q


async def test_rows_without_secrets_and_config_upsert(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO plugins (id, enabled, config, secrets, status) "
        """VALUES ('shelly', true, '{"host": "10.0.0.2"}', '\\x736563726574', '{"state": "running"}')"""
    )
    (row,) = await q.list_plugins(pool)
    assert row == q.PluginRow(
        id="shelly", enabled=True, config={"host": "10.0.0.2"}, status={"state": "running"}
    )
    assert "secrets" not in {f.name for f in dataclasses.fields(q.PluginRow)}
    assert await q.get_plugin(pool, "nope") is None
    assert await q.secrets_blob(pool, "shelly") == b"secret"

    updated = await q.set_plugin_config(
        pool, "shelly", config={"host": "10.0.0.3"}, secrets=None, enabled=None
    )
    assert (updated.enabled, updated.config) == (True, {"host": "10.0.0.3"})
    assert await q.secrets_blob(pool, "shelly") is None
    new = await q.set_plugin_config(pool, "kasa", config={}, secrets=b"x", enabled=False)
    assert (new.id, new.enabled, new.status) == ("kasa", False, None)
    assert [p.id for p in await q.list_plugins(pool)] == ["kasa", "shelly"]
