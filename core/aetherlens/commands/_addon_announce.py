"""Announce the running core to the Home Assistant Supervisor (add-on discovery).

The integration (domain ``aetherlens``) is offered to the user when the Supervisor receives
``POST /discovery`` ``{"service": "aetherlens", "config": {"host", "port", "api_key"}}`` from the add-on
(CONTRACT.md "Home Assistant"). The key is made for the integration with exactly the scopes it needs
(``read``, ``control``) and kept in ``/data`` so a restart re-announces the same key instead of piling up
new ones; a key that was revoked (or lost a scope) is replaced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aetherlens.auth import queries as q
from aetherlens.commands._auth_db import auth_service
from aetherlens.config import Settings
from aetherlens.errors import AetherLensError
from aetherlens.keyfile import write_private_file

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

SERVICE = "aetherlens"  # must equal the integration's domain
KEY_NAME = "home-assistant (add-on discovery)"
KEY_SCOPES = ("read", "control")
KEY_FILE = "integration_api_key.json"


class AnnounceError(AetherLensError):
    """The announcement could not be made (the core never got ready, or the Supervisor refused it)."""


@dataclass(frozen=True, slots=True)
class Announcement:
    host: str
    port: int
    api_key: str
    key_id: str
    created_key: bool

    def payload(self) -> dict[str, Any]:
        return {"service": SERVICE, "config": {"host": self.host, "port": self.port, "api_key": self.api_key}}


async def wait_ready(session: aiohttp.ClientSession, api_url: str, timeout: float) -> None:
    """Poll ``/health/ready`` until it answers 200 or ``timeout`` seconds pass."""
    import aiohttp  # here, not at the top: the CLI imports every command module (tests/core/cli)

    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            async with session.get(f"{api_url}/health/ready") as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (aiohttp.ClientError, OSError) as exc:
            last = type(exc).__name__
        if time.monotonic() >= deadline:
            raise AnnounceError(f"the core at {api_url} was not ready within {timeout:.0f}s (last: {last})")
        await asyncio.sleep(1.0)


async def integration_key(settings: Settings, key_file: Path) -> tuple[str, str, bool]:
    """(key id, key, created): the stored key when it is still live with the needed scopes, else a new one
    (the stale one, if still listed, is revoked so only one integration key exists)."""
    stored = _read_key_file(key_file)
    async with auth_service(settings) as service:
        live = {str(row["id"]): set(row["scopes"]) for row in await q.list_keys(service.pool)}
        if stored is not None:
            key_id, key = stored
            if set(KEY_SCOPES) <= live.get(key_id, set()):
                return key_id, key, False
            if key_id in live:
                await service.revoke_key(key_id)
            log.info("the stored integration API key is no longer usable; creating a new one")
        created = await service.create_key(KEY_NAME, list(KEY_SCOPES))
    _save_key_file(key_file, created.id, created.key)
    return created.id, created.key, True


def _save_key_file(path: Path, key_id: str, key: str) -> None:
    path.unlink(missing_ok=True)
    write_private_file(path, json.dumps({"id": key_id, "key": key}).encode())


def _read_key_file(path: Path) -> tuple[str, str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("ignoring unreadable %s; a new integration key is created", path)
        return None
    if isinstance(data, dict) and isinstance(data.get("id"), str) and isinstance(data.get("key"), str):
        return data["id"], data["key"]
    return None


async def add_on_hostname(session: aiohttp.ClientSession, supervisor_url: str, token: str) -> str:
    """The add-on's name on the Supervisor's network (``/addons/self/info``), else the container's."""
    import aiohttp

    try:
        async with session.get(
            f"{supervisor_url}/addons/self/info", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            if response.status == 200:
                body = await response.json()
                hostname = (body.get("data") or {}).get("hostname")
                if isinstance(hostname, str) and hostname:
                    return hostname
            log.warning("the Supervisor did not name this add-on's host (HTTP %d)", response.status)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        log.warning("cannot ask the Supervisor for this add-on's host: %s", type(exc).__name__)
    return socket.gethostname()


async def announce(
    settings: Settings,
    *,
    supervisor_url: str,
    token: str,
    api_url: str,
    port: int,
    key_file: Path,
    ready_timeout: float,
) -> Announcement:
    """Wait for the core, get the integration's key, and POST the discovery message."""
    import aiohttp

    if not token:
        raise AnnounceError("SUPERVISOR_TOKEN is not set; discovery works only inside the add-on")
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await wait_ready(session, api_url, ready_timeout)
        key_id, key, created = await integration_key(settings, key_file)
        host = await add_on_hostname(session, supervisor_url, token)
        result = Announcement(host, port, key, key_id, created)
        async with session.post(
            f"{supervisor_url}/discovery",
            json=result.payload(),
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            text = await response.text()
            if response.status != 200:
                raise AnnounceError(
                    f"the Supervisor refused the discovery message: HTTP {response.status} {text[:200]}"
                )
    log.info(
        "announced AetherLens to Home Assistant as %s:%d (API key %s%s)",
        host,
        port,
        key_id,
        ", new" if created else "",
    )
    return result
