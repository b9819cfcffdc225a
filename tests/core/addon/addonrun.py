"""Running the add-on's real scripts (addon/rootfs) with bash on this machine.

The scripts read their folders from ADDON_DATA_DIR / ADDON_CONFIG_DIR / ADDON_LIB_DIR and the CLI from
ADDON_CLI (in the container: /data, /config, /usr/local/lib/aetherlens-addon, aetherlens), so the same
files run against a temporary data folder and the managed database here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[3]
ROOTFS = ROOT / "addon" / "rootfs"
S6 = ROOTFS / "etc" / "s6-overlay" / "s6-rc.d"
LIB = ROOTFS / "usr" / "local" / "lib" / "aetherlens-addon"
RUN = S6 / "aetherlens" / "run"
DB_PROXY = S6 / "db-proxy" / "run"
ANNOUNCE = LIB / "announce"
PG_UPGRADE = LIB / "pg-upgrade"
BACKUP_PRE = ROOTFS / "usr" / "local" / "bin" / "aetherlens-backup-pre"
BACKUP_POST = ROOTFS / "usr" / "local" / "bin" / "aetherlens-backup-post"
CLI = str(Path(sys.executable).with_name("aetherlens"))
READY_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AddonHome:
    """A temp /data and /config, the environment the scripts see, and the core they start."""

    def __init__(self, root: Path, options: dict[str, Any]) -> None:
        self.root = root
        self.data = root / "data"
        self.config = root / "config"
        self.data.mkdir(exist_ok=True)
        self.config.mkdir(exist_ok=True)
        self.port = free_port()
        self.write_options(options)
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def write_options(self, options: dict[str, Any]) -> None:
        (self.data / "options.json").write_text(json.dumps(options))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AETHERLENS_", "ADDON_", "SUPERVISOR_"))
        }
        env |= {
            "ADDON_DATA_DIR": str(self.data),
            "ADDON_CONFIG_DIR": str(self.config),
            "ADDON_LIB_DIR": str(LIB),
            "ADDON_CLI": CLI,
            # The add-on's API port is 8080; here a free one (the environment beats the YAML).
            "AETHERLENS_API__PORT": str(self.port),
            "TZ": "Europe/Berlin",
        }
        return env | extra

    def log_file(self, what: str) -> Path:
        path = self.root / f"{what}-{len(self.logs)}.log"
        self.logs.append(path)
        return path

    def run_script(
        self, script: Path, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """A one-shot script (bash, as s6 would run it after with-contenv), output captured."""
        return subprocess.run(
            ["bash", str(script), *args], env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )

    def spawn_script(self, script: Path, **env: str) -> subprocess.Popen[bytes]:
        """A long-running script (an s6 longrun) in the background."""
        return subprocess.Popen(["bash", str(script)], env=self.env(**env))

    async def start(self) -> None:
        """The core's s6 `run` script, as a background process; returns once /health/ready is 200."""
        self.spawn()
        await self.wait_ready()

    def spawn(self) -> None:
        assert self.process is None
        log = self.log_file("core").open("wb")
        self.process = subprocess.Popen(["bash", str(RUN)], env=self.env(), stdout=log, stderr=log)

    async def wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT
        last: Any = "no answer"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"the add-on's run script exited with {self.process.returncode}:\n{self.tail()}"
                    )
                try:
                    async with session.get(f"{self.url}/health/ready") as response:
                        body = await response.json()
                        if response.status == 200:
                            return dict(body)
                        last = body
                except (aiohttp.ClientError, OSError) as exc:
                    last = repr(exc)
                await asyncio.sleep(0.25)
        raise AssertionError(f"the core never got ready (last: {last}):\n{self.tail()}")

    def stop(self) -> int:
        """SIGTERM, as s6 sends it when the Supervisor stops the add-on (the script exec'd serve)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=90)
        finally:
            self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None
        # A killed core leaves its postmaster behind: stop it so the temp folder can go.
        subprocess.run(
            [CLI, "--config", str(self.data / "aetherlens.yaml"), "db", "stop"],
            env=self.env(),
            capture_output=True,
            timeout=120,
            check=False,
        )

    def tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.logs[-1:])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The core's CLI with the configuration the run script rendered (works beside a running core)."""
        return subprocess.run(
            [CLI, "--config", str(self.data / "aetherlens.yaml"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


async def api(method: str, url: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers) as r,
    ):
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text
