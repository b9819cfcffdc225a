"""``aetherlens addon render-config | prepare | announce``: the Home Assistant add-on's start steps.

The add-on's s6 scripts (addon/rootfs/etc/s6-overlay/s6-rc.d/) call these; each is an ordinary command
so the same steps run (and are tested) outside the container.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import yaml

from aetherlens.commands import _addon_announce, _addon_prepare
from aetherlens.commands._addon_options import API_PORT, render_core_config
from aetherlens.config import Settings
from aetherlens.errors import ConfigError

DEFAULT_DATA = Path("/data")
DEFAULT_CONFIG = Path("/config")
SUPERVISOR_URL = "http://supervisor"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("addon", help="steps of the Home Assistant add-on's start")
    sub = parser.add_subparsers(dest="addon_command", metavar="ACTION", required=True)

    render = sub.add_parser(
        "render-config",
        help="turn the add-on's options.json into the core's YAML configuration",
        description="Validate the add-on's options and write the core's configuration; a bad option "
        "exits 1 naming the option.",
    )
    render.add_argument("--options", type=Path, help="the Supervisor's options (default: DATA/options.json)")
    render.add_argument("--output", type=Path, help="core YAML to write (default: DATA/aetherlens.yaml)")
    render.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA, help="add-on data folder (default: /data)"
    )
    render.add_argument(
        "--config-dir", type=Path, default=DEFAULT_CONFIG, help="add-on config folder (default: /config)"
    )
    render.set_defaults(handler=_render)

    prepare = sub.add_parser(
        "prepare",
        help="restore a pending backup, migrate, store the configured tariff",
        description="Run before serve: loads the newest dump after a Home Assistant restore (no cluster, "
        "a dump in DATA/backup), applies migrations and stores the tariff of the options when it changed.",
    )
    prepare.add_argument(
        "--config-dir", type=Path, default=DEFAULT_CONFIG, help="add-on config folder (default: /config)"
    )
    prepare.set_defaults(handler=_prepare)

    announce = sub.add_parser(
        "announce",
        help="announce the running core to the Supervisor (discovery)",
        description="Wait for /health/ready, create or reuse the integration's API key (read, control) and "
        "POST {service: aetherlens, config: {host, port, api_key}} to the Supervisor with SUPERVISOR_TOKEN.",
    )
    announce.add_argument(
        "--supervisor-url", default=SUPERVISOR_URL, help="Supervisor API base URL (default: %(default)s)"
    )
    announce.add_argument("--api-url", help="where the core answers (default: http://127.0.0.1:api.port)")
    announce.add_argument(
        "--port",
        type=int,
        default=API_PORT,
        help="API port announced to Home Assistant (default: %(default)s)",
    )
    announce.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for the core (default: %(default)s)"
    )
    announce.set_defaults(handler=_announce)


def _render(args: argparse.Namespace, settings: Settings) -> int:
    data_dir: Path = args.data_dir.absolute()
    options_file: Path = args.options or data_dir / "options.json"
    try:
        options = json.loads(options_file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the add-on options {options_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"the add-on options {options_file} are not JSON: {exc}") from None
    rendered = render_core_config(
        options, data_dir=data_dir, config_dir=args.config_dir.absolute(), env=dict(os.environ)
    )
    output: Path = args.output or data_dir / "aetherlens.yaml"
    output.parent.mkdir(parents=True, exist_ok=True)
    # Holds the MQTT password / HA token from the options: owner-only like options.json itself.
    tmp = output.with_name(output.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(yaml.safe_dump(rendered.core, sort_keys=False), encoding="utf-8")
    tmp.replace(output)
    core_settings = settings.model_copy(update={"data_dir": data_dir})
    _addon_prepare.write_state(core_settings, rendered.tariff, rendered.database_access)
    print(output)
    return 0


def _prepare(args: argparse.Namespace, settings: Settings) -> int:
    result = asyncio.run(_addon_prepare.prepare(settings, config_dir=args.config_dir.absolute()))
    print(
        json.dumps(
            {
                "restored_from": str(result.restored_from) if result.restored_from else None,
                "tariff_id": result.tariff_id,
            }
        )
    )
    return 0


def _announce(args: argparse.Namespace, settings: Settings) -> int:
    api_url = args.api_url or f"http://127.0.0.1:{settings.api.port}"
    result = asyncio.run(
        _addon_announce.announce(
            settings,
            supervisor_url=args.supervisor_url.rstrip("/"),
            token=os.environ.get("SUPERVISOR_TOKEN", ""),
            api_url=api_url.rstrip("/"),
            port=args.port,
            key_file=_addon_prepare.addon_state_dir(settings) / _addon_announce.KEY_FILE,
            ready_timeout=args.timeout,
        )
    )
    # The key itself stays out of stdout and the log (it is in the owner-only key file).
    print(json.dumps({"host": result.host, "port": result.port, "key_id": result.key_id}))
    return 0
