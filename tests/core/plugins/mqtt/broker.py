"""A private Mosquitto for the tests that restart it or need TLS and passwords (never the shared one).

It listens on a free port of 127.0.0.1 with persistence in its own folder, so a restart on the same
folder keeps the persistent sessions (and the QoS 1 messages queued for them) as a real broker does.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (it is its own CA for the client)."""
    cert, key = folder / "broker.crt", folder / "broker.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class PrivateBroker:
    def __init__(
        self, folder: Path, *, tls: tuple[Path, Path] | None = None, users: dict[str, str] | None = None
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        (folder / "data").mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder / 'data'}/",
            f"log_dest file {folder / 'mosquitto.log'}",
            "user root",  # stay the user that owns the folder (tests run as root)
        ]
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        if users:
            passwords = folder / "passwords"
            passwords.touch()
            for name, secret in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), name, secret], check=True)
            lines += [f"password_file {passwords}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    async def start(self, within: float = 15.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            MOSQUITTO, "-c", str(self.config), stderr=asyncio.subprocess.PIPE
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if self.proc.returncode is not None:
                error = await self.proc.stderr.read() if self.proc.stderr else b""
                raise RuntimeError(f"mosquitto exited: {error.decode()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if loop.time() > deadline:
                    raise TimeoutError(f"mosquitto did not listen on {self.port}") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def stop(self) -> None:
        """SIGTERM, as a service manager stops it: Mosquitto saves its persistence file first."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
