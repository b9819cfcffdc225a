"""``aetherlens serve`` and ``aetherlens demo``: run the core until SIGINT/SIGTERM.

``demo`` is ``serve`` with the ``simulator`` plugin (a household with history backfilled) and a demo
tariff; it prints the URL, the admin password (when generated now) and a fresh API key once, to the
terminal (stdout) and never to the log.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import asyncpg

from aetherlens.auth import queries as auth_queries
from aetherlens.config import PluginSettings, Settings
from aetherlens.costs import service as costs
from aetherlens.costs.tariff import load_yaml
from aetherlens.db.queries.metrics import last_counter_readings

if TYPE_CHECKING:
    from aetherlens.runtime import Core, Started

DEMO_KEY_NAME = "demo"
DEMO_KEY_SCOPES = ["read", "ingest", "control"]
DEMO_METER = "sim-h001-mains"  # the simulated household's mains meter: the site the bill is for


def register(subparsers: Any) -> None:
    for name, help_text in (
        ("serve", "run the core: database, migrations, plugins, collector, jobs and the API"),
        ("demo", "serve with the simulator plugin and a demo tariff; prints URL, password and API key"),
    ):
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--host", help="listen address (default: api.host, 127.0.0.1)")
        parser.add_argument("--port", type=int, help="listen port (default: api.port, 8080; 0 = any free)")
        parser.set_defaults(handler=_serve if name == "serve" else _demo)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(settings, args.host, args.port, demo=False))


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    plugins = dict(settings.plugins)
    plugins.setdefault(
        "simulator",
        PluginSettings(
            enabled=True,
            poll_interval=5.0,
            config={"households": 1, "backfill_hours": 48, "timezone": settings.site.timezone},
        ),
    )
    site = settings.site.model_copy(update={"meter_device": settings.site.meter_device or DEMO_METER})
    demo_settings = settings.model_copy(update={"plugins": plugins, "site": site})
    return asyncio.run(_run(demo_settings, args.host, args.port, demo=True))


async def _run(settings: Settings, host: str | None, port: int | None, *, demo: bool) -> int:
    # Imported here, not at the top: the CLI imports every command module to build its parser, and the
    # runtime brings aiohttp, the plugin host and the cost engine, which `users`, `api-keys` and the
    # other one-shot commands must not load (tests/core/cli checks that they do not).
    from aetherlens.runtime import Core

    core = Core(settings, prepare_plugins=_resume_simulator if demo else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        started = await core.start(host, port)
        if demo:
            await _install_demo_tariff(core, settings)
            key = await _fresh_demo_key(core)
            _announce(started, key)
        elif started.admin_password:
            _announce(started, None)
        await stop.wait()
        print("aetherlens: stopping (draining the write queue)", file=sys.stderr)
    finally:
        await core.stop()
    return 0


async def _resume_simulator(pool: asyncpg.Pool, settings: Settings) -> Settings:
    """On a restart over stored demo data the simulator continues its meters and fills only the gap:
    regenerating history, or restarting counters lower than stored, would read as counter resets."""
    simulator = settings.plugins.get("simulator")
    if simulator is None or not simulator.enabled:
        return settings
    rows = await last_counter_readings(pool, "simulator")
    if not rows:
        return settings
    counters: dict[str, dict[str, float]] = {}
    for device_id, metric_type, value, _ in rows:
        counters.setdefault(device_id, {})[metric_type] = value
    resume = {"after": max(at for *_, at in rows), "counters": counters}
    resumed = simulator.model_copy(update={"config": {**simulator.config, "resume": resume}})
    return settings.model_copy(update={"plugins": {**settings.plugins, "simulator": resumed}})


async def _install_demo_tariff(core: Core, settings: Settings) -> None:
    assert core.database is not None
    pool = core.database.pool
    if await costs.list_tariffs(pool):
        return
    definition = load_yaml(files("aetherlens.costs").joinpath("demo_tariff.yaml").read_text("utf-8"))
    definition.setdefault("timezone", settings.site.timezone)
    definition["currency"] = settings.site.currency
    await costs.create_tariff(pool, definition, active=True)


async def _fresh_demo_key(core: Core) -> str:
    """Each demo start shows a new key: the previous demo key is revoked (only digests are stored)."""
    assert core.database is not None
    service = core.auth
    for row in await auth_queries.list_keys(core.database.pool):
        if row["name"] == DEMO_KEY_NAME:
            await service.revoke_key(str(row["id"]))
    created = await service.create_key(DEMO_KEY_NAME, DEMO_KEY_SCOPES)
    return created.key


def _announce(started: Started, api_key: str | None) -> None:
    lines = [f"AetherLens is running at {started.url}  (API docs: {started.url}/api/v1/docs)"]
    if started.admin_password:
        lines.append(f"  admin password (shown once): {started.admin_password}")
    else:
        lines.append("  user: admin (password as set before, or auth.admin_password)")
    if api_key:
        lines.append(f"  API key ({', '.join(DEMO_KEY_SCOPES)}; shown once): {api_key}")
        lines.append(f'  try: curl -H "Authorization: Bearer {api_key}" {started.url}/api/v1/metrics/current')
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
