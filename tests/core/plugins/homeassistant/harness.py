"""A real Home Assistant for tests: its own process from ``.venv-ha/bin/hass`` on 127.0.0.1.

No browser and no ``default_config``: the configuration lists the integrations the plugin needs. HA
always sets up ``frontend`` (and falls into recovery mode when it fails), but the
``home-assistant-frontend`` package is not in ``.venv-ha``; ``frontend: development_repo:`` points it at
an empty stand-in tree instead (nothing is installed). The user is made with ``hass --script auth``,
onboarding is marked done, and a long-lived token comes from the login flow plus the WebSocket command
``auth/long_lived_access_token``. The test fixtures in ``ha_config/custom_components`` give HA devices
(``lab_meter``, with areas) and entities of platform ``aetherlens`` (which the plugin must skip).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[4]
HASS = REPO / ".venv-ha" / "bin" / "hass"
FIXTURE_COMPONENTS = Path(__file__).parent / "ha_config" / "custom_components"
USER = "aetherlens"
PASSWORD = "aetherlens-test-password"
START_DEADLINE = 120.0  # a cold HA start on a busy 2-core machine takes 10-40 s
STOP_DEADLINE = 60.0

CONFIGURATION = """\
homeassistant:
  name: AetherLens test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
frontend:
  development_repo: "{dir}/frontend_stub"
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
websocket_api:
auth:
config:
recorder:
  db_url: "sqlite:///{dir}/home-assistant_v2.db"
  commit_interval: {commit_interval}
history:
input_number:
  grid_power:
    name: Grid power
    min: -20000
    max: 20000
    step: 0.1
    initial: 0
    mode: box
template:
  - sensor:
      - name: Grid power
        unique_id: grid_power_template
        unit_of_measurement: W
        device_class: power
        state_class: measurement
        state: "{{{{ states('input_number.grid_power') }}}}"
lab_meter:
sensor:
  - platform: aetherlens
logger:
  default: warning
"""

# Entities the fixture configuration creates (ids as HA derives them from device and entity names).
PLUG_POWER = "sensor.lab_plug_power"  # W, device "Lab plug" in area Workshop
PLUG_ENERGY = "sensor.lab_plug_energy"  # kWh, total_increasing
PLUG_VOLTAGE = "sensor.lab_plug_voltage"  # V: not power/energy, not selected by default
HEATER_POWER = "sensor.lab_heater_power"  # kW, device "Lab heater" in area Cellar
HEATER_ENERGY = "sensor.lab_heater_energy"  # Wh
PLANT_ENERGY = "sensor.lab_plant_energy"  # MWh, device without area
KETTLE_POWER = "sensor.lab_kettle_power"  # W, on device "Lab kettle" that lab_meter.add_device adds
GRID_POWER = "sensor.grid_power"  # template sensor without a device
OWN_POWER = "sensor.aetherlens_site_power"  # platform aetherlens: always excluded
OWN_ENERGY = "sensor.aetherlens_site_energy"
LAB_KEYS = {
    PLUG_POWER: "plug_power",
    PLUG_ENERGY: "plug_energy",
    PLUG_VOLTAGE: "plug_voltage",
    HEATER_POWER: "heater_power",
    HEATER_ENERGY: "heater_energy",
    PLANT_ENERGY: "plant_energy",
    KETTLE_POWER: "kettle_power",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available() -> str | None:
    """None when a real HA can run here, else the reason to skip."""
    if not HASS.exists():
        return f"{HASS} is missing: run scripts/setup (it builds .venv-ha with Home Assistant)"
    return None


class HomeAssistant:
    """One HA instance in ``directory``; ``start``/``stop`` may be called repeatedly (a restart)."""

    def __init__(self, directory: Path, commit_interval: int = 0) -> None:
        """``commit_interval``: the recorder's, in seconds (HA's default is 5; 0 commits at once, so
        the history tests need not wait for it)."""
        self.directory = directory
        self.commit_interval = commit_interval
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- life ------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "configuration.yaml").write_text(
            CONFIGURATION.format(port=self.port, dir=self.directory, commit_interval=self.commit_interval)
        )
        stub = self.directory / "frontend_stub" / "hass_frontend"
        for folder in ("static", "frontend_latest", "frontend_es5"):
            (stub / folder).mkdir(parents=True, exist_ok=True)
        for name in ("service_worker.js", "robots.txt", "onboarding.html", "authorize.html", "index.html"):
            (stub / name).write_text("")
        shutil.copytree(FIXTURE_COMPONENTS, self.directory / "custom_components", dirs_exist_ok=True)
        subprocess.run(
            [str(HASS), "--script", "auth", "-c", str(self.directory), "add", USER, PASSWORD],
            check=True,
            capture_output=True,
            timeout=120,
        )
        storage = self.directory / ".storage"
        storage.mkdir(exist_ok=True)
        (storage / "onboarding").write_text(
            json.dumps(
                {
                    "version": 4,
                    "minor_version": 1,
                    "key": "onboarding",
                    "data": {"done": ["user", "core_config", "analytics", "integration"]},
                }
            )
        )

    def _spawn(self) -> subprocess.Popen[bytes]:
        with (self.directory / "hass.out").open("ab") as log:
            return subprocess.Popen(
                [str(HASS), "-c", str(self.directory), "--skip-pip"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )

    async def start(self) -> None:
        assert self.process is None, "already running"
        self.process = self._spawn()
        self._session = self._session or aiohttp.ClientSession()
        await self._wait_http()
        if not self.token:
            self.token = await self._long_lived_token()
        await self.wait_for_state(PLUG_POWER, lambda s: s is not None, what="lab_meter entities")
        await self.wait_for_state(GRID_POWER, lambda s: s is not None, what="template sensor")

    async def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_DEADLINE
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                break
            await asyncio.sleep(0.1)
        self.process = None

    async def close(self) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def log_tail(self, lines: int = 60) -> str:
        path = self.directory / "hass.out"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- HTTP ------------------------------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def _wait_http(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"Home Assistant exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                async with self.session.get(f"{self.url}/auth/providers") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Home Assistant did not answer on {self.url}:\n{self.log_tail()}")
            await asyncio.sleep(0.2)

    async def _long_lived_token(self) -> str:
        client_id = f"{self.url}/"
        async with self.session.post(
            f"{self.url}/auth/login_flow",
            json={"client_id": client_id, "handler": ["homeassistant", None], "redirect_uri": client_id},
        ) as resp:
            flow = await resp.json()
        async with self.session.post(
            f"{self.url}/auth/login_flow/{flow['flow_id']}",
            json={"client_id": client_id, "username": USER, "password": PASSWORD},
        ) as resp:
            result = await resp.json()
        assert result.get("type") == "create_entry", result
        async with self.session.post(
            f"{self.url}/auth/token",
            data={"grant_type": "authorization_code", "code": result["result"], "client_id": client_id},
        ) as resp:
            access = (await resp.json())["access_token"]
        async with self.session.ws_connect(f"{self.url}/api/websocket") as ws:
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": access})
            assert (await ws.receive_json())["type"] == "auth_ok"
            await ws.send_json(
                {
                    "id": 1,
                    "type": "auth/long_lived_access_token",
                    "client_name": "aetherlens-test",
                    "lifespan": 30,
                }
            )
            answer = await ws.receive_json()
        assert answer.get("success"), answer
        return str(answer["result"])

    async def ws_command(self, kind: str, **payload: Any) -> Any:
        """One WebSocket command with the test user's token; its result (the command must succeed)."""
        async with self.session.ws_connect(f"{self.url}/api/websocket") as ws:
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": self.token})
            assert (await ws.receive_json())["type"] == "auth_ok"
            await ws.send_json({"id": 1, "type": kind, **payload})
            answer = await ws.receive_json()
        assert answer.get("success"), answer
        return answer.get("result")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def state(self, entity_id: str) -> dict[str, Any] | None:
        async with self.session.get(f"{self.url}/api/states/{entity_id}", headers=self.headers) as resp:
            if resp.status == 404:
                return None
            resp.raise_for_status()
            return dict(await resp.json())

    async def wait_for_state(
        self, entity_id: str, condition: Any, within: float = START_DEADLINE, what: str = "state"
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + within
        while True:
            try:
                current = await self.state(entity_id)
            except aiohttp.ClientError:
                current = None
            if condition(current):
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {entity_id} is {current!r}\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    async def call(self, domain: str, service: str, data: dict[str, Any]) -> None:
        async with self.session.post(
            f"{self.url}/api/services/{domain}/{service}", headers=self.headers, json=data
        ) as resp:
            resp.raise_for_status()

    async def set_lab(self, entity_id: str, value: float | str) -> dict[str, Any]:
        """Set a lab_meter sensor; returns its new state (with ``last_updated``)."""
        before = await self.state(entity_id)
        await self.call("lab_meter", "set", {"key": LAB_KEYS[entity_id], "value": value})
        changed = await self.wait_for_state(
            entity_id,
            lambda s: s is not None and (before is None or s["last_updated"] != before["last_updated"]),
            within=10,
            what=f"{entity_id} set to {value!r}",
        )
        assert changed is not None
        return changed

    async def set_grid(self, watts: float) -> dict[str, Any]:
        await self.call("input_number", "set_value", {"entity_id": "input_number.grid_power", "value": watts})
        state = await self.wait_for_state(
            GRID_POWER,
            lambda s: (
                s is not None and s["state"] not in ("unknown", "unavailable") and float(s["state"]) == watts
            ),
            within=10,
            what=f"grid power {watts}",
        )
        assert state is not None
        return state

    async def history(self, entity_id: str, since: str) -> list[dict[str, Any]]:
        """The recorder's states of one entity since ``since`` (ISO), as HA's REST history answers."""
        async with self.session.get(
            f"{self.url}/api/history/period/{since}",
            headers=self.headers,
            # HA's default end is start + 1 day: give it explicitly.
            params={
                "filter_entity_id": entity_id,
                "end_time": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
                "no_attributes": "",
                "significant_changes_only": "0",
            },
        ) as resp:
            resp.raise_for_status()
            body = await resp.json()
        return list(body[0]) if body else []

    async def render(self, template: str) -> str:
        """A Jinja template rendered by HA (``device_id(...)``, ``area_name(...)``)."""
        async with self.session.post(
            f"{self.url}/api/template", headers=self.headers, json={"template": template}
        ) as resp:
            resp.raise_for_status()
            return await resp.text()

    async def device_of(self, entity_id: str) -> str:
        """The AetherLens device id the plugin derives: ``ha_<HA device id>``."""
        return "ha_" + await self.render(f"{{{{ device_id('{entity_id}') }}}}")
