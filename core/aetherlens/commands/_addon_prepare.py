"""What the add-on does between rendering its configuration and ``aetherlens serve``.

1. **Restore after a Home Assistant restore.** ``backup_pre`` dumps the database into
   ``<data_dir>/backup`` and ``backup_exclude`` keeps the live cluster files out of the backup, so a
   restored ``/data`` holds a dump but no cluster. That state (no ``PG_VERSION``, a dump present) is
   the signal: a new cluster is created and the newest dump loaded before the core starts.
2. **Migrations** (as ``serve`` would apply them, done here so the tariff can be stored).
3. **The tariff from the options**, stored and made active when it differs from the one the add-on
   stored last (a fingerprint in ``<data_dir>/addon``), so restarts do not pile up versions.
4. **The Grafana password**: with database access on, the read-only role's password is copied to the
   add-on's config folder where the user can read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aetherlens.commands._addon_options import READONLY_PASSWORD_FILE, TariffSource, tariff_arguments
from aetherlens.config import Settings
from aetherlens.costs import store
from aetherlens.costs.files import tariff_from_document
from aetherlens.db import backup as backups
from aetherlens.db.database import READONLY_SECRET_FILE, database_target, open_database
from aetherlens.errors import ConfigError, ConflictError
from aetherlens.keyfile import write_private_file

log = logging.getLogger(__name__)

BACKUP_DIR = "backup"
STATE_FILE = "render.json"


@dataclass(frozen=True, slots=True)
class PrepareResult:
    restored_from: Path | None
    tariff_id: str | None  # set when a tariff was stored by this run


def addon_state_dir(settings: Settings) -> Path:
    return settings.data_dir / "addon"


def write_state(settings: Settings, tariff: TariffSource | None, database_access: bool) -> None:
    """What ``render-config`` hands to ``prepare`` (besides the core's YAML)."""
    state = {
        "tariff": None
        if tariff is None
        else {"path": str(tariff.path), "label": tariff.label, "option": tariff.option},
        "database_access": database_access,
    }
    path = addon_state_dir(settings) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def read_state(settings: Settings) -> dict[str, Any]:
    path = addon_state_dir(settings) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"tariff": None, "database_access": False}
    return data if isinstance(data, dict) else {"tariff": None, "database_access": False}


def pending_restore(settings: Settings) -> Path | None:
    """The dump to load: the newest one in the backup folder, when no cluster exists yet."""
    if not settings.uses_managed_database or (settings.managed_dir / "data" / "PG_VERSION").exists():
        return None
    dumps = backups.list_backups(settings.data_dir / BACKUP_DIR)
    return dumps[-1] if dumps else None


async def prepare(settings: Settings, *, config_dir: Path) -> PrepareResult:
    dump = pending_restore(settings)
    if dump is not None:
        log.info("no database cluster but a backup (%s): restoring it (a Home Assistant restore)", dump.name)
        async with database_target(settings) as target:
            await backups.restore(target, dump)
        log.info("restore of %s done", dump.name)

    state = read_state(settings)
    tariff_id: str | None = None
    database = await open_database(settings)  # applies pending migrations
    try:
        if state.get("tariff"):
            tariff_id = await _sync_tariff(settings, database.pool, state["tariff"])
    finally:
        await database.close()
    if state.get("database_access"):
        _publish_readonly_password(settings, config_dir)
    return PrepareResult(restored_from=dump, tariff_id=tariff_id)


async def _sync_tariff(settings: Settings, pool: Any, spec: dict[str, Any]) -> str | None:
    source = TariffSource(Path(spec["path"]), spec.get("label"), spec.get("option", "tariff"))
    site = {"timezone": settings.site.timezone, "country": settings.site.country}
    arguments = tariff_arguments(source, site)
    fingerprint = hashlib.sha256(
        json.dumps(
            {"tariff": arguments["data"], "site": site, "label": source.label}, sort_keys=True
        ).encode()
    ).hexdigest()
    marker = addon_state_dir(settings) / "tariff.sha256"
    async with pool.acquire() as conn:
        active = await store.active_tariff_id(conn)
        previous = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
        if previous == fingerprint and active is not None:
            return None
        tariff, kind = tariff_from_document(**arguments)
        try:
            tariff_id = await store.insert_tariff(conn, tariff, source=kind, active=True)
        except ConflictError as exc:
            raise ConfigError(
                f"add-on option '{source.option}': {exc.message}; a changed tariff needs a new "
                "effective_from (or none, which means now)",
                details={"option": source.option},
            ) from None
    marker.write_text(fingerprint + "\n", encoding="utf-8")
    log.info("stored the tariff from add-on option '%s' as %s (active)", source.option, tariff_id)
    return tariff_id


def _publish_readonly_password(settings: Settings, config_dir: Path) -> None:
    secret = settings.data_dir / READONLY_SECRET_FILE
    if not secret.is_file() or not config_dir.is_dir():
        return
    target = config_dir / READONLY_PASSWORD_FILE
    if target.is_file() and target.read_bytes() == secret.read_bytes():
        return
    target.unlink(missing_ok=True)
    write_private_file(target, secret.read_bytes())
    shutil.copystat(secret, target)
