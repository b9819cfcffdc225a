"""Device registry queries against the real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from aetherlens.collect.registry import DeviceRegistry
from aetherlens.db.connection import connection
from aetherlens.db.queries import devices as q
from aetherlens.errors import ConflictError, NotFoundError, ValidationError


async def test_create_get_list_round_trip(pool: asyncpg.Pool) -> None:
    created = await q.create_device(
        pool, device_id="plug.kitchen:1", name="Kettle", type="plug", room="kitchen", tags={"phase": "L1"}
    )
    assert created.as_dict() == {
        "id": "plug.kitchen:1",
        "name": "Kettle",
        "type": "plug",
        "room": "kitchen",
        "source": "api",
        "tags": {"phase": "L1"},
    }
    await q.create_device(pool, device_id="a-meter", name="Main meter", type="meter")
    assert await q.get_device(pool, "plug.kitchen:1") == created
    assert [d.id for d in await q.list_devices(pool)] == ["a-meter", "plug.kitchen:1"]
    assert await q.device_exists(pool, "a-meter")
    assert not await q.device_exists(pool, "nope")


async def test_duplicate_id_is_a_conflict(pool: asyncpg.Pool) -> None:
    await q.create_device(pool, device_id="d1", name="one")
    with pytest.raises(ConflictError, match="already exists"):
        await q.create_device(pool, device_id="d1", name="again")
    assert (await q.get_device(pool, "d1")).name == "one"


@pytest.mark.parametrize("bad_id", ["", "-leading", "has space", "x" * 129, "slash/inside"])
async def test_bad_id_is_rejected_with_the_pattern(pool: asyncpg.Pool, bad_id: str) -> None:
    with pytest.raises(ValidationError, match="must match"):
        await q.create_device(pool, device_id=bad_id, name="n")
    assert await q.list_devices(pool) == []


async def test_unknown_type_is_rejected(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValidationError, match="not one of"):
        await q.create_device(pool, device_id="d", name="n", type="toaster")


async def test_partial_update_changes_only_given_fields_and_null_clears(pool: asyncpg.Pool) -> None:
    await q.create_device(pool, device_id="d", name="n", type="plug", room="attic", tags={"a": "1"})
    updated = await q.update_device(pool, "d", {"name": "renamed", "room": None})
    assert (updated.name, updated.type, updated.room, updated.tags) == ("renamed", "plug", None, {"a": "1"})
    updated = await q.update_device(pool, "d", {"tags": {"b": "2"}, "type": "server"})
    assert (updated.name, updated.type, updated.tags) == ("renamed", "server", {"b": "2"})
    assert await q.get_device(pool, "d") == updated


async def test_update_rejects_unknown_fields_and_bad_values(pool: asyncpg.Pool) -> None:
    await q.create_device(pool, device_id="d", name="n")
    with pytest.raises(ValidationError, match="cannot update id"):
        await q.update_device(pool, "d", {"id": "other"})
    with pytest.raises(ValidationError, match="not one of"):
        await q.update_device(pool, "d", {"type": "toaster"})
    with pytest.raises(ValidationError, match="name cannot be null"):
        await q.update_device(pool, "d", {"name": None})


async def test_missing_device_is_not_found(pool: asyncpg.Pool) -> None:
    with pytest.raises(NotFoundError):
        await q.get_device(pool, "ghost")
    with pytest.raises(NotFoundError):
        await q.update_device(pool, "ghost", {"name": "x"})
    with pytest.raises(NotFoundError):
        await q.delete_device(pool, "ghost")


async def test_delete_removes_the_device(pool: asyncpg.Pool) -> None:
    await q.create_device(pool, device_id="d", name="n")
    await q.delete_device(pool, "d")
    assert not await q.device_exists(pool, "d")


async def test_discovery_replaces_only_the_placeholder_of_auto_registration(pool: asyncpg.Pool) -> None:
    registry = DeviceRegistry(pool, auto_register=True)
    assert await registry.resolve(["auto1"], "sim") == {}  # auto-registered: name = id
    await registry.create(device_id="named", name="Kettle", type="plug")
    count = await registry.register_discovered(
        "sim",
        [
            {"id": "auto1", "name": "Heat pump", "type": "hvac", "room": "Cellar"},
            {"id": "named", "name": "Discovered name", "type": "meter", "room": "Kitchen"},
            {"id": "new.one", "type": "toaster"},  # unknown type -> other
            {"id": "bad id"},  # skipped: not a device id
            "not a mapping",
        ],
    )
    assert count == 3
    got = {d.id: (d.name, d.type, d.source, d.room) for d in await registry.list_all()}
    assert got == {
        "auto1": ("Heat pump", "hvac", "sim", "Cellar"),
        "named": ("Kettle", "plug", "api", "Kitchen"),  # the user's name stays; it had no room yet
        "new.one": ("new.one", "other", "sim", None),
    }
    assert {"auto1", "named", "new.one"} <= registry.known
    # A room the user set is kept when discovery reports another one.
    await registry.update("named", {"room": "Pantry"})
    await registry.register_discovered("sim", [{"id": "named", "name": "x", "room": "Garage"}])
    assert [(d.name, d.room) for d in await registry.list_all() if d.id == "named"] == [("Kettle", "Pantry")]


async def test_pool_or_connection_adapter_borrows_only_from_a_pool(pool: asyncpg.Pool) -> None:
    async with connection(pool) as borrowed:
        assert not isinstance(borrowed, asyncpg.Pool)
        assert await borrowed.fetchval("SELECT 1") == 1
        async with connection(borrowed) as same:
            assert same is borrowed
