"""Add-on discovery: the `announce` one-shot (run with bash) tells a loopback stand-in for the
Supervisor about the running core — the token in the Authorization header, service `aetherlens`, the
add-on's host and port, and an API key that works against the core with exactly `read` + `control`.
Restarts re-announce the same key; a revoked key is replaced."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from .addonrun import ANNOUNCE, AddonHome, api, free_port
from .test_options import defaults

pytestmark = pytest.mark.slow

TOKEN = "supervisor-token-3f9a"
HOSTNAME = "5f3e2a1b-aetherlens"


@dataclass
class Supervisor:
    """What the Supervisor's /discovery and /addons/self/info see; unauthorised calls get 401."""

    url: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def authorised(self, request: web.Request) -> bool:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.refused.append(request.path)
            return False
        return True

    async def discovery(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return web.json_response({"result": "error", "message": "Unauthorized"}, status=401)
        self.messages.append(await request.json())
        return web.json_response({"result": "ok", "data": {"uuid": f"uuid-{len(self.messages)}"}})

    async def self_info(self, request: web.Request) -> web.Response:
        if not self.authorised(request):
            return web.json_response({"result": "error"}, status=401)
        return web.json_response({"result": "ok", "data": {"slug": "aetherlens", "hostname": HOSTNAME}})


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    stand_in = Supervisor()
    app = web.Application()
    app.router.add_post("/discovery", stand_in.discovery)
    app.router.add_get("/addons/self/info", stand_in.self_info)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stand_in.url = f"http://127.0.0.1:{port}"
    yield stand_in
    await runner.cleanup()


@pytest.fixture
def home(cluster_dir: Path) -> Iterator[AddonHome]:
    options = copy.deepcopy(defaults())
    options["homeassistant"]["enabled"] = False  # no Home Assistant on this machine
    addon = AddonHome(cluster_dir, options)
    yield addon
    addon.kill()


async def announce(home: AddonHome, supervisor: Supervisor, token: str = TOKEN) -> tuple[int, str]:
    """The one-shot, as s6 runs it, concurrently with the stand-in serving in this event loop."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(ANNOUNCE),
        env=home.env(SUPERVISOR_URL=supervisor.url, SUPERVISOR_TOKEN=token),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode is not None
    return process.returncode, (out + err).decode()


async def test_discovery_payload_and_the_key_it_carries(home: AddonHome, supervisor: Supervisor) -> None:
    await home.start()
    code, output = await announce(home, supervisor)
    assert code == 0, output
    assert supervisor.refused == []
    assert len(supervisor.messages) == 1, output
    message = supervisor.messages[0]
    assert message["service"] == "aetherlens"
    config = message["config"]
    assert set(config) == {"host", "port", "api_key"}
    assert config["host"] == HOSTNAME and config["port"] == 8080
    key = config["api_key"]
    assert key not in output  # never echoed into the add-on log

    # read: yes; control: yes (404 for an unknown device, not 403); anything else: 403.
    status, _ = await api("GET", f"{home.url}/api/v1/devices", key)
    assert status == 200
    status, body = await api(
        "POST", f"{home.url}/api/v1/devices/no-such-device/control", key, {"action": "on"}
    )
    assert status == 404, body
    status, _ = await api("GET", f"{home.url}/api/v1/auth/api-keys", key)
    assert status == 403
    status, _ = await api("POST", f"{home.url}/api/v1/metrics", key, {"metrics": []})
    assert status == 403
    listed = home.cli("api-keys", "list", "--json")
    integration = [k for k in json.loads(listed.stdout) if k["name"].startswith("home-assistant")]
    assert len(integration) == 1 and sorted(integration[0]["scopes"]) == ["control", "read"]

    # A restart re-announces the same key (no pile of keys).
    assert home.stop() == 0
    await home.start()
    code, output = await announce(home, supervisor)
    assert code == 0, output
    assert supervisor.messages[-1]["config"]["api_key"] == key

    # A revoked key is replaced by a new one, and the old one no longer opens the API.
    revoked = home.cli("api-keys", "revoke", integration[0]["id"])
    assert revoked.returncode == 0, revoked.stderr
    code, output = await announce(home, supervisor)
    assert code == 0, output
    new_key = supervisor.messages[-1]["config"]["api_key"]
    assert new_key != key
    assert (await api("GET", f"{home.url}/api/v1/devices", key))[0] == 401
    assert (await api("GET", f"{home.url}/api/v1/devices", new_key))[0] == 200


async def test_a_refused_announcement_is_logged_not_fatal(home: AddonHome, supervisor: Supervisor) -> None:
    await home.start()
    code, output = await announce(home, supervisor, token="wrong-token")
    # A failing one-shot would make s6 stop the container: the core must keep running.
    assert code == 0
    assert "HTTP 401" in output and "restart the add-on to retry" in output
    assert supervisor.messages == [] and "/discovery" in supervisor.refused
    assert (await home.wait_ready())["status"] == "ok"
