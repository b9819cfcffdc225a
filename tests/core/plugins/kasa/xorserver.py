"""A loopback Kasa device speaking the legacy protocol (TCP 9999 on real hardware) from a recorded fixture.

Wire format of the device side (what HS110 / HS300 / KP115 / KP303 on old firmware do): every message
is a 4-byte big-endian length followed by the JSON text "encrypted" with TP-Link's autokey XOR (key
starts at 171; each plaintext byte XOR the key gives the cipher byte, which becomes the next key). The
same XOR, without the length prefix, is the UDP discovery answer (port 9999). This is written from the
protocol's description, not with python-kasa's helpers, so the library is tested against an independent
implementation of the device side.

Answers come from python-kasa's recorded device dumps (fixtures/README.md): a request
``{"<module>": {"<method>": {...}}}`` gets the dump's value for that module and method; a module the
dump does not have gets the firmware's ``module not support`` error, a method it does not have gets
``member not support`` (both as real firmware answers them, e.g. the HS300 1.0.10 dump). The only
state the server changes is what switching changes: ``system.set_relay_state`` sets ``relay_state``,
or, with ``context.child_ids``, the ``state`` of those outlets.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
KEY = 171


def xor_encrypt(plain: bytes) -> bytes:
    key = KEY
    out = bytearray()
    for byte in plain:
        key = key ^ byte
        out.append(key)
    return bytes(out)


def xor_decrypt(cipher: bytes) -> bytes:
    key = KEY
    out = bytearray()
    for byte in cipher:
        out.append(key ^ byte)
        key = byte
    return bytes(out)


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@dataclass
class FixtureDevice:
    """One recorded device: its dump, the requests it got, and how it misbehaves (if at all)."""

    dump: dict[str, Any]
    #: "ok", "hang" (reads the request, never answers) or "malformed" (answers bytes that are not JSON)
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_fixture(cls, name: str, mode: str = "ok") -> FixtureDevice:
        return cls(copy.deepcopy(load_fixture(name)), mode)

    @property
    def sysinfo(self) -> dict[str, Any]:
        info: dict[str, Any] = self.dump["system"]["get_sysinfo"]
        return info

    def relay_states(self) -> list[int]:
        """The plug's relay state, or each outlet's state for a strip."""
        children = self.sysinfo.get("children")
        if children:
            return [int(c["state"]) for c in children]
        return [int(self.sysinfo["relay_state"])]

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(copy.deepcopy(request))
        child_ids = (request.get("context") or {}).get("child_ids") or []
        response: dict[str, Any] = {}
        for module, methods in request.items():
            if module == "context":
                continue
            recorded = self.dump.get(module)
            if recorded is None or (isinstance(recorded, dict) and recorded.get("err_code", 0) != 0):
                response[module] = recorded or {"err_code": -1, "err_msg": "module not support"}
                continue
            answers: dict[str, Any] = {}
            for method, params in methods.items():
                if module == "system" and method == "set_relay_state":
                    self._switch(int(params["state"]), child_ids)
                    answers[method] = {"err_code": 0}
                elif method in recorded:
                    answers[method] = copy.deepcopy(recorded[method])
                else:
                    answers[method] = {"err_code": -2, "err_msg": "member not support"}
            response[module] = answers
        return response

    def _switch(self, state: int, child_ids: list[str]) -> None:
        if child_ids:
            for child in self.sysinfo["children"]:
                # The library addresses an outlet by the strip's deviceId + child id on some firmware
                # and by the bare child id on others; the firmware accepts either.
                if child["id"] in child_ids or any(cid.endswith(child["id"]) for cid in child_ids):
                    child["state"] = state
        else:
            self.sysinfo["relay_state"] = state


class XorServer:
    """Serves one FixtureDevice on 127.0.0.1:<ephemeral> (TCP), optionally also answering the UDP
    discovery probe on the same port number."""

    def __init__(self, device: FixtureDevice) -> None:
        self.device = device
        self.port = 0
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._hung: list[asyncio.StreamWriter] = []
        self.connections = 0

    async def start(self) -> XorServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def start_discovery(self) -> None:
        """Answer the legacy discovery datagram on UDP <self.port>: python-kasa sends the probe to the
        TCP port it will then connect to, so both share the number (TCP and UDP ports are separate)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", self.port))
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Discovery(self.device), sock=sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                header = await reader.readexactly(4)
                (length,) = struct.unpack(">I", header)
                request = json.loads(xor_decrypt(await reader.readexactly(length)))
                if self.device.mode == "hang":
                    self.device.requests.append(request)
                    self._hung.append(writer)
                    await asyncio.Event().wait()  # until the server closes
                if self.device.mode == "malformed":
                    self.device.requests.append(request)
                    body = xor_encrypt(b"<html>not a device</html>")
                else:
                    body = xor_encrypt(json.dumps(self.device.answer(request)).encode())
                writer.write(struct.pack(">I", len(body)) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for writer in self._hung:
            writer.close()
        if self._server is not None:
            self._server.close()
            # Connections still open (a hung device's) would make wait_closed() wait for them.
            self._server.close_clients()
            await self._server.wait_closed()


class _Discovery(asyncio.DatagramProtocol):
    def __init__(self, device: FixtureDevice) -> None:
        self.device = device
        self.transport: asyncio.DatagramTransport | None = None
        self.probes: list[dict[str, Any]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        probe = json.loads(xor_decrypt(data))
        self.probes.append(probe)
        if probe == {"system": {"get_sysinfo": {}}} and self.transport is not None:
            # A legacy device answers the probe with its sysinfo (python-kasa's discovery fixtures
            # replay the dump's get_sysinfo the same way).
            answer = {"system": {"get_sysinfo": self.device.sysinfo}}
            self.transport.sendto(xor_encrypt(json.dumps(answer).encode()), addr)


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
