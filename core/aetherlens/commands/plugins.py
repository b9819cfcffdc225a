"""``aetherlens plugins list|status|restart ID|validate PATH|keygen|sign PATH``.

``list`` and ``validate`` read the disk only. ``status`` reads what the running core's supervisor last
wrote to the ``plugins`` table; ``restart`` asks that supervisor over PostgreSQL NOTIFY on channel
``db.queries.plugins.NOTIFY_CHANNEL``. ``keygen`` and ``sign`` are for publishers of third-party plugins.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aetherlens.config import Settings
from aetherlens.db.queries import plugins as plugin_rows
from aetherlens.errors import NotFoundError, PluginError
from aetherlens.keyfile import write_private_file
from aetherlens.plugins.discovery import DiscoveredPlugin, discover, inspect_directory
from aetherlens.plugins.manifest import validate_config
from aetherlens.plugins.signing import generate_keypair, load_private_key, public_key_text, sign_directory


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("plugins", help="plugin management and signing")
    sub = parser.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="discovered plugins: source, version, enabled, verification")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    status = sub.add_parser("status", help="health of the plugins of the running core")
    status.add_argument("id", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    restart = sub.add_parser("restart", help="ask the running core to restart a plugin's process")
    restart.add_argument("id")
    restart.set_defaults(handler=_restart)

    validate = sub.add_parser("validate", help="check a plugin directory: manifest, config, signature")
    validate.add_argument("path", type=Path)
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(handler=_validate)

    keygen = sub.add_parser("keygen", help="make an ed25519 key pair for signing plugins")
    keygen.add_argument("--output", type=Path, help="write the private key here (mode 0600)")
    keygen.set_defaults(handler=_keygen)

    sign = sub.add_parser("sign", help="sign a plugin directory (writes plugin.sig)")
    sign.add_argument("path", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="private key file from 'plugins keygen'")
    sign.add_argument("--publisher", help="publisher name (default: the manifest's 'publisher')")
    sign.set_defaults(handler=_sign)


def _enabled(plugin: DiscoveredPlugin, settings: Settings, instance_id: str | None = None) -> bool:
    instance = instance_id or plugin.id
    configured = settings.plugins.get(instance)
    if configured is not None and configured.enabled is not None:
        return configured.enabled
    if instance != plugin.id:
        return True  # a configured extra instance runs unless it says enabled: false
    return plugin.manifest is not None and plugin.manifest.default_enabled


def _describe(plugin: DiscoveredPlugin, settings: Settings, instance_id: str | None = None) -> dict[str, Any]:
    return {
        "id": instance_id or plugin.id,
        "plugin": plugin.id,
        "name": plugin.manifest.name if plugin.manifest else None,
        "version": plugin.manifest.version if plugin.manifest else None,
        "source": plugin.source,
        "path": str(plugin.directory),
        "enabled": _enabled(plugin, settings, instance_id),
        "verification": plugin.verification.status,
        "capabilities": list(plugin.manifest.capabilities) if plugin.manifest else [],
        "problem": plugin.problem,
    }


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _instances(settings: Settings) -> list[dict[str, Any]]:
    """Every plugin's default instance plus each ``plugins.<instance>`` that names another ``plugin:``."""
    found = discover(settings)
    items = {plugin_id: _describe(p, settings) for plugin_id, p in found.items()}
    for instance_id, configured in settings.plugins.items():
        target = configured.plugin or instance_id
        if target == instance_id:
            continue
        if target in found and instance_id not in found:
            items[instance_id] = _describe(found[target], settings, instance_id)
        else:
            reason = (
                f"'{instance_id}' is the id of a plugin itself"
                if instance_id in found
                else f"no plugin '{target}'"
            )
            items[instance_id] = {
                "id": instance_id,
                "plugin": target,
                "name": None,
                "version": None,
                "source": None,
                "path": None,
                "enabled": configured.enabled is not False,
                "verification": "refused",
                "capabilities": [],
                "problem": f"plugins.{instance_id}.plugin: {reason}",
            }
    return [items[key] for key in sorted(items)]


def _list(args: argparse.Namespace, settings: Settings) -> int:
    items = _instances(settings)
    if args.json:
        print(json.dumps({"items": items}, indent=2))
        return 0
    rows = [["ID", "PLUGIN", "SOURCE", "VERSION", "ENABLED", "VERIFICATION", "PROBLEM"]]
    rows += [
        [
            i["id"],
            i["plugin"],
            i["source"] or "-",
            i["version"] or "-",
            "yes" if i["enabled"] else "no",
            i["verification"],
            i["problem"] or "",
        ]
        for i in items
    ]
    print(_table(rows))
    return 0


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.path
    if not path.is_dir():
        raise PluginError(f"{path} is not a directory")
    plugin = inspect_directory(path, settings)
    problems = [plugin.problem] if plugin.problem else []
    if plugin.manifest is not None and plugin.id in settings.plugins:
        try:
            validate_config(plugin.manifest, dict(settings.plugins[plugin.id].config))
        except PluginError as exc:
            problems.append(exc.message)
    result = {
        **_describe(plugin, settings),
        "verification_reason": plugin.verification.reason,
        "problems": problems,
        "ok": not problems,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{plugin.id}: {'ok' if not problems else 'NOT OK'}")
        print(f"  manifest: {'valid' if plugin.manifest else 'invalid'}")
        print(f"  signature: {plugin.verification.status} ({plugin.verification.reason})")
        for problem in problems:
            print(f"  problem: {problem}")
    if problems:
        print(f"aetherlens plugins validate: {'; '.join(problems)}", file=sys.stderr)
        return 1
    return 0


def _keygen(args: argparse.Namespace, settings: Settings) -> int:
    pem, public = generate_keypair()
    if args.output is None:
        sys.stdout.write(pem.decode())
        print(public)
        return 0
    target: Path = args.output
    try:
        write_private_file(target, pem)
    except FileExistsError:
        raise PluginError(f"{target} exists; refusing to overwrite a key") from None
    print(public)
    print(f"private key written to {target}; add the public key to plugins.trusted_keys", file=sys.stderr)
    return 0


def _sign(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.path
    plugin = inspect_directory(path, settings)
    if plugin.manifest is None:
        raise PluginError(plugin.problem or f"{path}: no valid manifest")
    publisher = args.publisher or plugin.manifest.publisher
    if not publisher:
        raise PluginError("no publisher: pass --publisher or set 'publisher' in plugin.yaml")
    key = load_private_key(args.key)
    signature = sign_directory(path, key, publisher)
    print(signature)
    print(f"signed as '{publisher}' with {public_key_text(key.public_key())}", file=sys.stderr)
    return 0


async def _with_pool(settings: Settings, work: Any) -> Any:
    from aetherlens.db.database import open_database

    database = await open_database(settings)
    try:
        return await work(database.pool)
    finally:
        await database.close()


def _status(args: argparse.Namespace, settings: Settings) -> int:
    async def read(pool: Any) -> list[tuple[plugin_rows.PluginRow, Any]]:
        return await plugin_rows.status_rows(pool, args.id)

    rows = asyncio.run(_with_pool(settings, read))
    if args.id and not rows:
        raise NotFoundError(
            f"no status for plugin '{args.id}' (has a core with that plugin run on this database?)"
        )
    items = []
    for row, updated_at in rows:
        status = dict(row.status) if isinstance(row.status, dict) else {}
        status.pop("config", None)
        items.append({**status, "id": row.id, "enabled": row.enabled, "updated_at": updated_at.isoformat()})
    if args.json:
        print(json.dumps(items[0] if args.id else {"items": items}, indent=2, default=str))
        return 0
    table = [["ID", "PLUGIN", "STATE", "PID", "RESTARTS", "ERRORS", "LAST SUCCESS", "LAST EXIT"]]
    for item in items:
        last_exit = item.get("last_exit") or {}
        table.append(
            [
                item["id"],
                str(item.get("plugin") or item["id"]),
                str(item.get("state", "?")),
                str(item.get("pid") or "-"),
                str(item.get("restarts", 0)),
                str(item.get("errors", 0)),
                str(item.get("last_success") or "-"),
                f"{last_exit.get('cause')}: {last_exit.get('detail')}" if last_exit else "",
            ]
        )
    print(_table(table))
    return 0


def _restart(args: argparse.Namespace, settings: Settings) -> int:
    async def notify(pool: Any) -> bool:
        known = await plugin_rows.plugin_known(pool, args.id)
        if known:
            await plugin_rows.request_restart(pool, args.id)
        return known

    if not asyncio.run(_with_pool(settings, notify)):
        raise NotFoundError(f"no plugin '{args.id}' known to a core on this database")
    print(args.id)
    print(f"restart of '{args.id}' requested from the running core", file=sys.stderr)
    return 0
