"""The add-on's s6 `run` script, run with bash against a temp /data with the managed database: it
renders the options, prepares the database and execs a core that becomes healthy; a bad option stops
the start naming it; the tariff of the options is stored once; the Grafana forwarder publishes the
read-only role."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from dbtest import wait_until

from aetherlens.commands._addon_options import DB_LISTEN_PORT, READONLY_PASSWORD_FILE

from .addonrun import BACKUP_POST, DB_PROXY, RUN, AddonHome, api, free_port
from .test_options import DEMO_TARIFF, defaults

pytestmark = pytest.mark.slow


def options(**changes: Any) -> dict[str, Any]:
    base = defaults()
    # This machine has no Home Assistant: the source is switched off (its settings are tested in
    # test_options); everything else is the add-on's defaults.
    base["homeassistant"]["enabled"] = False
    return copy.deepcopy(base | changes)


@pytest.fixture
def home(cluster_dir: Path) -> Iterator[AddonHome]:
    addon = AddonHome(cluster_dir, options())
    yield addon
    addon.kill()


def read_key(home: AddonHome, scopes: str = "read") -> str:
    created = home.cli("api-keys", "create", "--name", "test", "--scopes", scopes)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


async def tariffs(home: AddonHome, key: str) -> list[dict[str, Any]]:
    status, body = await api("GET", f"{home.url}/api/v1/tariffs", key)
    assert status == 200, body
    return list(body["items"])


async def test_run_script_reaches_a_healthy_core_with_the_options_applied(home: AddonHome) -> None:
    home.write_options(options(currency="EUR", tariff_yaml=DEMO_TARIFF.read_text(), database_access=True))
    await home.start()
    ready = await home.wait_ready()
    assert ready["checks"]["database"]["status"] == "ok"
    # The cluster is the managed one, in /data/postgres.
    assert (home.data / "postgres" / "data" / "PG_VERSION").is_file()
    rendered = (home.data / "aetherlens.yaml").read_text()
    assert "currency: EUR" in rendered and oct((home.data / "aetherlens.yaml").stat().st_mode)[-3:] == "600"

    key = read_key(home)
    stored = await tariffs(home, key)
    assert [(t["name"], t["active"]) for t in stored] == [("Demo time-of-use", True)]

    # The admin password went to the config folder, not to the log.
    password = (home.config / "admin_password.txt").read_text().split()[-1]
    assert password not in (home.logs[-1].read_text())
    status, body = await api(
        "POST", f"{home.url}/api/v1/auth/login", body={"username": "admin", "password": password}
    )
    assert status == 200, body

    # Graceful stop: SIGTERM reaches serve (exec'd by the script), which exits 0 and stops PostgreSQL.
    assert home.stop() == 0
    assert not (home.data / "postgres" / "data" / "postmaster.pid").exists()

    # A restart with the same tariff stores nothing new; a changed tariff is a new active version.
    await home.start()
    assert len(await tariffs(home, key)) == 1
    assert home.stop() == 0
    changed = (
        DEMO_TARIFF.read_text()
        .replace("price: 0.38", "price: 0.41")
        .replace("name: Demo time-of-use", "name: Evening peak 2027")
    )
    home.write_options(options(currency="EUR", tariff_yaml=changed, database_access=True))
    await home.start()
    stored = await tariffs(home, key)
    assert sorted((t["name"], t["active"]) for t in stored) == [
        ("Demo time-of-use", False),
        ("Evening peak 2027", True),
    ]


async def test_grafana_forwarder_publishes_the_read_only_role(home: AddonHome) -> None:
    home.write_options(options(database_access=True))
    await home.start()
    password = (home.config / READONLY_PASSWORD_FILE).read_text().strip()
    public = free_port()
    proxy = home.spawn_script(DB_PROXY, DB_PUBLIC_PORT=str(public), DB_LISTEN_PORT=str(DB_LISTEN_PORT))
    try:
        conn = None
        for _ in range(100):  # until socat listens
            try:
                conn = await asyncpg.connect(
                    host="127.0.0.1",
                    port=public,
                    user="aetherlens_readonly",
                    password=password,
                    database="aetherlens",
                )
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert conn is not None, "the forwarder never accepted a connection"
        try:
            assert await conn.fetchval("SELECT count(*) FROM devices") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM devices")
        finally:
            await conn.close()
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


async def test_forwarder_stays_idle_without_database_access(home: AddonHome) -> None:
    (home.data / "addon").mkdir(parents=True)
    (home.data / "addon" / "render.json").write_text(json.dumps({"database_access": False}, indent=2))
    proxy = home.spawn_script(DB_PROXY, DB_PUBLIC_PORT=str(free_port()))
    cmdline = Path(f"/proc/{proxy.pid}/cmdline")

    def command() -> bytes:
        return cmdline.read_bytes()

    try:
        # It execs `sleep infinity` (s6 would restart a longrun that exits), never socat.
        await wait_until(lambda: b"sleep" in command(), timeout=10, what="the idle forwarder")
        assert b"socat" not in command() and proxy.poll() is None
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def test_a_bad_option_stops_the_start_and_names_it(home: AddonHome) -> None:
    home.write_options(options(currency="eur"))
    result = home.run_script(RUN, timeout=60)
    assert result.returncode == 1
    assert "add-on option 'currency' = 'eur'" in result.stderr
    assert not (home.data / "postgres").exists()  # nothing was started


def test_backup_post_only_removes_leftovers(home: AddonHome) -> None:
    backup = home.data / "backup"
    backup.mkdir()
    (backup / "aetherlens-x.dump.partial").write_text("half")
    (backup / "keep.dump").write_text("whole")
    result = home.run_script(BACKUP_POST)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in backup.iterdir()) == ["keep.dump"]


@pytest.mark.parametrize(
    ("args", "halts", "code"),
    [
        (("0", "0"), False, None),
        (("256", "15"), False, None),
        (("1", "0"), True, "1"),
        (("256", "9"), True, "137"),
    ],
)
def test_finish_stops_the_container_only_when_the_core_failed(
    home: AddonHome, args: tuple[str, str], halts: bool, code: str | None
) -> None:
    results = home.root / "results"
    results.mkdir()
    halt = home.root / "halt"
    halt.write_text(f"#!/bin/sh\ntouch {home.root / 'halted'}\n")
    halt.chmod(0o755)
    finish = RUN.with_name("finish")
    result = home.run_script(finish, *args, ADDON_S6_RESULTS_DIR=str(results), ADDON_S6_HALT=str(halt))
    assert result.returncode == 0, result.stderr
    assert (home.root / "halted").exists() is halts
    exitcode = results / "exitcode"
    assert (exitcode.read_text().strip() if exitcode.exists() else None) == code
