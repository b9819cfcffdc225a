"""Status persisted to the real ``plugins`` table, restarts over NOTIFY, and the ``plugins`` CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import pytest
import yaml

from aetherlens.cli import main as cli_main
from aetherlens.config import load_settings
from aetherlens.db.database import open_database
from aetherlens.plugins.signing import SIGNATURE_NAME
from aetherlens.plugins.testkit import MemorySink

from .conftest import FAST, FIXTURES, make_settings, wait_for
from .test_manifest_and_signing import _copy_counter


async def _cli(*args: str, config: Path | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERLENS_")}
    if config is not None:
        env["AETHERLENS_CONFIG"] = str(config)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aetherlens.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _cli_in_process(
    capsys: pytest.CaptureFixture[str], *args: str, config: Path | None = None
) -> tuple[int, str, str]:
    """The CLI's own entry point, in this process (the commands that need no event loop)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    capsys.readouterr()
    try:
        argv = (["--config", str(config)] if config else []) + list(args)
        code = cli_main(argv)
    finally:
        root.handlers[:] = handlers  # main() installs its own log handler
        root.setLevel(level)
    out, err = capsys.readouterr()
    return code, out, err


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


async def test_status_persisted_and_restart_via_cli(
    fresh_database, tmp_path: Path, supervisor_factory, capsys: pytest.CaptureFixture[str]
) -> None:
    async def cli(*args: str, config: Path) -> tuple[int, str, str]:
        # In a thread: the command runs its own event loop, as it does from a shell.
        return await asyncio.to_thread(_cli_in_process, capsys, *args, config=config)

    dsn = await fresh_database()
    settings = make_settings({"counter": {}})
    settings = settings.model_copy(update={"database": settings.database.model_copy(update={"url": dsn})})
    database = await open_database(settings)  # migrates: the plugins table comes from 007_plugins.sql
    started = []
    try:
        sup = await supervisor_factory(settings, pool=database.pool)
        started.append(sup)
        runner = sup.runners["counter"]
        await wait_for(lambda: runner.collections >= 2, what="collections")
        await sup.persist_status()
        config = _write_config(tmp_path / "core.yaml", {"database": {"url": dsn}, "log": {"format": "text"}})

        # Once through the real console entry (a separate process), the rest in-process for speed.
        code, out, err = await _cli("plugins", "status", "--json", config=config)
        assert code == 0, err
        items = {item["id"]: item for item in json.loads(out)["items"]}
        assert items["counter"]["state"] == "running" and items["counter"]["pid"] == runner.pid
        assert items["hanger"]["state"] == "disabled"

        pid = runner.pid
        code, out, err = await cli("plugins", "restart", "counter", config=config)
        assert code == 0, err and out.strip() == "counter"
        await wait_for(
            lambda: runner.restarts == 1 and runner.state == "running" and runner.pid != pid,
            what="restart through NOTIFY",
        )

        code, _, err = await cli("plugins", "restart", "nosuch", config=config)
        assert code == 1 and "no plugin 'nosuch'" in err
    finally:
        for sup in started:
            await sup.stop()  # releases its LISTEN connection before the pool closes
        await database.close()


async def test_config_saved_through_the_api_overlays_settings(
    fresh_database, supervisor_factory, tmp_path: Path
) -> None:
    from aetherlens import plugin_secrets

    dsn = await fresh_database()
    settings = make_settings({"probe": {"config": {"room": "yaml-room"}}})
    settings = settings.model_copy(update={"database": settings.database.model_copy(update={"url": dsn})})
    settings.data_dir = tmp_path  # where the secret box keeps its key
    database = await open_database(settings)
    started = []
    try:
        blob = plugin_secrets.encrypt(settings, {"api_token": "from-db-secret"})
        await database.pool.execute(
            "INSERT INTO plugins (id, enabled, config, secrets) VALUES ('probe', true, $1, $2)",
            {"room": "db-room"},
            blob,
        )
        sup = await supervisor_factory(settings, pool=database.pool)
        started.append(sup)
        await wait_for(lambda: sup.runners["probe"].state == "running", what="probe running")
        [device] = await sup.discover_devices("probe")
        assert device["config"] == {"room": "db-room", "api_token": "from-db-secret"}
        await sup.persist_status()
        stored = await database.pool.fetchval("SELECT status FROM plugins WHERE id = 'probe'")
        assert stored["state"] == "running" and "from-db-secret" not in json.dumps(stored)
    finally:
        for sup in started:
            await sup.stop()
        await database.close()


def test_keygen_sign_validate_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def cli(*args: str, config: Path | None = None) -> tuple[int, str, str]:
        return _cli_in_process(capsys, *args, config=config)

    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    plugin = _copy_counter(plugins_dir)
    key = tmp_path / "acme.pem"

    code, out, err = cli("plugins", "keygen", "--output", str(key))
    assert code == 0, err
    public = out.strip()
    assert public.startswith("ed25519:") and oct(key.stat().st_mode & 0o777) == "0o600"

    code, out, err = cli("plugins", "sign", str(plugin), "--key", str(key), "--publisher", "acme")
    assert code == 0, err and Path(out.strip()) == plugin / SIGNATURE_NAME

    trusting = _write_config(
        tmp_path / "trust.yaml",
        {
            "log": {"format": "text"},
            "plugins": {
                "directories": [str(plugins_dir)],
                "trusted_keys": {"acme": public},
                "counter": {"enabled": True},
            },
        },
    )
    code, out, err = cli("plugins", "validate", str(plugin), "--json", config=trusting)
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] and result["verification"] == "verified"

    code, out, err = cli("plugins", "list", "--json", config=trusting)
    assert code == 0, err
    listed = {i["id"]: i for i in json.loads(out)["items"]}
    assert listed["counter"]["source"] == "directory" and listed["counter"]["verification"] == "verified"
    assert listed["counter"]["enabled"] is True
    assert listed["simulator"]["source"] == "builtin"

    (plugin / "plugin.py").write_text((plugin / "plugin.py").read_text() + "\n# tampered\n")
    code, out, err = cli("plugins", "validate", str(plugin), config=trusting)
    assert code == 1
    assert "changed or missing since signing: plugin.py" in err and "NOT OK" in out

    code, _, err = cli("plugins", "validate", str(FIXTURES / "counter"))
    assert code == 1 and "is not signed" in err


async def test_signed_plugin_runs_through_supervisor(
    tmp_path: Path, supervisor_factory, sink: MemorySink
) -> None:
    from aetherlens.plugins.signing import generate_keypair, load_private_key, sign_directory

    plugin = _copy_counter(tmp_path)
    pem, public = generate_keypair()
    (tmp_path / "k.pem").write_bytes(pem)
    sign_directory(plugin, load_private_key(tmp_path / "k.pem"), "acme")
    settings = load_settings(
        env={},
        plugin_options={"directories": [str(tmp_path)], "trusted_keys": {"acme": public}},
        plugins={"counter": {"enabled": True}},
    )
    sup = await supervisor_factory(settings, options=FAST)
    await wait_for(lambda: len(sink.of("counter-1")) >= 2, what="signed plugin collecting")
    assert sup.status_of("counter")["verification"] == "verified"
