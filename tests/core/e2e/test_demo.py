"""README's first command, as a user runs it: ``aetherlens demo`` as a real process on an embedded database.

Walks the whole flow: the cluster is created, migrations run, the simulator's data reaches the API, the
cost engine prices it with the demo tariff, SIGTERM stops everything cleanly, and a restart keeps the
data, shows no password again and replaces the demo key.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

AETHERLENS = [sys.executable, "-m", "aetherlens.cli"]
START_TIMEOUT = 120.0
HISTORY_START = (datetime.now(UTC) - timedelta(hours=49)).isoformat()
# The demo's simulator (commands/serve.py): 48 h of history at one reading a minute, then one reading
# per poll, every 5 s +- 10 % (the supervisor's jitter), never two polls less than 4.5 s apart.
BACKFILL = timedelta(hours=48)
BACKFILL_READINGS = int(BACKFILL / timedelta(minutes=1))  # 2,880
MIN_POLL_GAP = 4.5


class RunningCore:
    def __init__(self, data_dir: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AETHERLENS_")}
        env |= {"AETHERLENS_DATA_DIR": str(data_dir), "AETHERLENS_LOG__FORMAT": "text"}
        self.log_path = data_dir.parent / f"core-{time.monotonic_ns()}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*AETHERLENS, *args, "--port", "0"], stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        self.banner = self._read_banner()

    def _read_banner(self) -> str:
        assert self.process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                return "".join(lines)
        self.process.kill()
        raise AssertionError(f"core did not start: {''.join(lines)}\n{self.log_path.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        match = re.search(r"running at (http://\S+)", self.banner)
        assert match, self.banner
        return match.group(1)

    def field(self, label: str) -> str | None:
        match = re.search(rf"{label}[^:]*: (\S+)", self.banner)
        return match.group(1) if match else None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.log.close()


@pytest.fixture
def data_dir(cluster_dir: Path) -> Iterator[Path]:
    path = cluster_dir / "data"
    yield path


async def get(url: str, key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.json()


async def wait_for(url: str, key: str, ready: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        status, body = await get(url, key)
        if status == 200 and ready(body):
            return body
        await asyncio.sleep(1.0)
    raise AssertionError(f"{url} never became ready; last answer: {body}")


async def first_stream_metric(url: str, key: str) -> Any:
    """Authenticate on the WebSocket stream, subscribe to metrics and return the first event."""
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/api/v1/stream") as ws:
        await ws.send_json({"type": "auth", "token": key})
        assert (await ws.receive_json(timeout=10))["type"] == "auth_ok"
        await ws.send_json({"type": "subscribe", "topics": ["metrics", "costs"]})
        assert (await ws.receive_json(timeout=10))["type"] == "subscribed"
        return await ws.receive_json(timeout=30)  # the simulator polls every 5 s


@pytest.mark.slow
async def test_demo_runs_prices_and_restarts_cleanly(data_dir: Path) -> None:
    first_start = datetime.now(UTC)
    core = RunningCore(data_dir, "demo")
    try:
        password, key = core.field("admin password"), core.field("API key")
        assert password and len(password) >= 12
        assert key and key.startswith("al_")
        assert password not in core.log_path.read_text() and key not in core.log_path.read_text()

        status, _ = await get(f"{core.url}/api/v1/metrics/current")
        assert status == 401
        current = await wait_for(
            f"{core.url}/api/v1/metrics/current",
            key,
            lambda body: any(d["device_id"] == "sim-h001-mains" for d in body["devices"]),
        )
        history_seen = datetime.now(UTC)  # the backfill was generated before this
        mains = next(d for d in current["devices"] if d["device_id"] == "sim-h001-mains")
        assert mains["metrics"]["power"]["unit"] == "W"
        assert mains["metrics"]["energy"]["unit"] == "kWh"

        summary = await wait_for(
            f"{core.url}/api/v1/costs/summary", key, lambda body: body["month_to_date"] is not None
        )
        assert summary["currency"] == "USD"
        assert summary["month_to_date"] > 0
        assert summary["current_period"] in {"peak", "off_peak"}

        event = await first_stream_metric(core.url, key)
        assert event["type"] == "metric"
        assert event["data"]["device_id"].startswith("sim-h001-")
        assert {"time", "metric_type", "value", "unit"} <= set(event["data"])

        _, devices = await get(f"{core.url}/api/v1/devices", key)
        by_id = {d["id"]: d for d in devices["items"]}
        assert by_id["sim-h001-mains"]["type"] == "meter"
        assert by_id["sim-h001-mains"]["source"] == "simulator"
    finally:
        assert core.stop() == 0
    assert not (data_dir / "postgres" / "data" / "postmaster.pid").exists(), "database left running"

    restarted_at = datetime.now(UTC).isoformat()
    again = RunningCore(data_dir, "demo")
    try:
        assert again.field("admin password") is None  # shown once, at the first start only
        new_key = again.field("API key")
        assert new_key and new_key != key
        status, _ = await get(f"{again.url}/api/v1/devices", key)
        assert status == 401  # the previous demo key was revoked
        _, devices = await get(f"{again.url}/api/v1/devices", new_key)
        assert "sim-h001-mains" in {d["id"] for d in devices["items"]}  # data survived the restart
        # The restarted simulator carries its meters on and fills only the gap: the mains counter never
        # drops (a drop would be billed as a counter reset) and its readings are not generated twice.
        series = await wait_for(
            f"{again.url}/api/v1/metrics?device_id=sim-h001-mains&metric_type=energy&resolution=raw"
            f"&from={quote(HISTORY_START)}",
            new_key,
            lambda body: body["points"][-1]["time"] > restarted_at,
        )
        queried = datetime.now(UTC)
        values = [p["value"] for p in series["points"]]
        times = [p["time"] for p in series["points"]]
        # The whole backfill, once: it starts 48 h before the simulator started ...
        oldest = datetime.fromisoformat(times[0])
        assert first_start - BACKFILL <= oldest <= history_seen - BACKFILL, (times[0], first_start)
        # ... and holds 2,880 readings; after it, one reading per poll (and one a minute for the gap the
        # restart fills), so at most one per 4.5 s of the test's run time, and at least the one after
        # the restart that wait_for waited for.
        live_at_most = int((queried - first_start).total_seconds() / MIN_POLL_GAP) + 4
        assert BACKFILL_READINGS + 1 <= len(values) <= BACKFILL_READINGS + live_at_most, (
            len(values),
            BACKFILL_READINGS,
            live_at_most,
        )
        assert all(b >= a for a, b in itertools.pairwise(values)), "the mains counter dropped"
        assert len(times) == len(set(times)), "history was generated twice"
    finally:
        assert again.stop() == 0
