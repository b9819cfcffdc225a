"""A loopback Kasa device on KLAP firmware (HTTP; the transport newer Kasa plug firmware speaks), with an
owner account, answering the same IOT commands from a recorded dump (``xorserver.FixtureDevice``).

The device side of KLAP (v1, as Kasa plugs announce it: ``encrypt_type: KLAP`` without a login version):

- ``POST /app/handshake1`` with the client's 16-byte seed: the device answers its own 16-byte seed and
  ``sha256(client_seed + auth)``, ``auth = md5(md5(username) + md5(password))`` of its owner account,
  and sets the ``TP_SESSIONID`` cookie. The device does not refuse here: the *client* compares that
  hash with its own and gives up when they differ (wrong credentials).
- ``POST /app/handshake2`` with ``sha256(device_seed + auth)``: 200 when it matches, else 403.
- ``POST /app/request?seq=N``: ``sha256(sig + N + cipher) + cipher``, AES-128-CBC with PKCS#7, key
  ``sha256("lsk" + seeds + auth)[:16]``, IV ``sha256("iv" + seeds + auth)[:12] + N`` (signed 32-bit
  big-endian), sig ``sha256("ldk" + seeds + auth)[:28]``; the answer is encrypted the same way with
  the same N.

Written from that description (not with python-kasa's session class), so python-kasa's client is
checked against an independent device side.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .xorserver import FixtureDevice


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()  # the protocol's hash, not a choice


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass
class _Session:
    client_seed: bytes
    device_seed: bytes
    auth: bytes
    verified: bool = False
    key: bytes = field(init=False)
    iv: bytes = field(init=False)
    sig: bytes = field(init=False)

    def __post_init__(self) -> None:
        seeds = self.client_seed + self.device_seed + self.auth
        self.key = _sha256(b"lsk" + seeds)[:16]
        self.iv = _sha256(b"iv" + seeds)[:12]
        self.sig = _sha256(b"ldk" + seeds)[:28]

    def _cipher(self, seq: int) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.iv + struct.pack(">l", seq)))

    def decrypt(self, body: bytes, seq: int) -> bytes:
        signature, cipher_text = body[:32], body[32:]
        if signature != _sha256(self.sig + struct.pack(">l", seq) + cipher_text):
            raise ValueError("bad signature")
        decryptor = self._cipher(seq).decryptor()
        padded = decryptor.update(cipher_text) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()

    def encrypt(self, plain: bytes, seq: int) -> bytes:
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = self._cipher(seq).encryptor()
        cipher_text = encryptor.update(padded) + encryptor.finalize()
        return _sha256(self.sig + struct.pack(">l", seq) + cipher_text) + cipher_text


class KlapServer:
    def __init__(self, device: FixtureDevice, username: str, password: str) -> None:
        self.device = device
        self.auth = _md5(_md5(username.encode()) + _md5(password.encode()))
        self.sessions: dict[str, _Session] = {}
        self.handshakes = 0
        self.refused = 0
        self.port = 0
        app = web.Application()
        app.router.add_post("/app/handshake1", self._handshake1)
        app.router.add_post("/app/handshake2", self._handshake2)
        app.router.add_post("/app/request", self._request)
        self._runner = web.AppRunner(app)

    async def start(self) -> KlapServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        await self._runner.cleanup()

    async def _handshake1(self, request: web.Request) -> web.Response:
        client_seed = await request.read()
        if len(client_seed) != 16:
            return web.Response(status=400)
        self.handshakes += 1
        device_seed = secrets.token_bytes(16)
        session_id = secrets.token_hex(16).upper()
        self.sessions[session_id] = _Session(client_seed, device_seed, self.auth)
        response = web.Response(body=device_seed + _sha256(client_seed + self.auth))
        response.set_cookie("TP_SESSIONID", session_id)
        response.set_cookie("TIMEOUT", "86400")
        return response

    def _session(self, request: web.Request) -> _Session | None:
        return self.sessions.get(request.cookies.get("TP_SESSIONID", ""))

    async def _handshake2(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None or await request.read() != _sha256(session.device_seed + session.auth):
            self.refused += 1
            return web.Response(status=403)
        session.verified = True
        return web.Response()

    async def _request(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None or not session.verified:
            return web.Response(status=403)
        seq = int(request.query["seq"])
        try:
            plain = session.decrypt(await request.read(), seq)
        except ValueError:
            return web.Response(status=400)
        answer = self.device.answer(json.loads(plain))
        return web.Response(body=session.encrypt(json.dumps(answer).encode(), seq))
