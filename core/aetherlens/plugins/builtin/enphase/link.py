"""One Envoy: pyenphase's ``Envoy`` connected lazily, read once per poll, and its health.

Connecting is pyenphase's own sequence: ``setup()`` reads ``/info`` (open, HTTPS first and plain HTTP
for firmware < 7), ``authenticate()`` picks the scheme by firmware (a JWT for 7+, checked at
``/auth/check_jwt``; HTTP digest with the ``installer``/``envoy`` user before), and the first
``update()`` probes which endpoints the Envoy has. A failure drops the connection; the next poll
connects afresh, so an Envoy that rebooted, changed firmware or got a new token is picked up.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
from pyenphase import Envoy
from pyenphase.auth import EnvoyTokenAuth
from pyenphase.const import AUTH_TOKEN_MIN_VERSION, SupportedFeatures
from pyenphase.exceptions import (
    EnvoyAuthenticationError,
    EnvoyAuthenticationRequired,
    EnvoyError,
    EnvoyFirmwareFatalCheckError,
    EnvoyProbeFailed,
)
from pyenphase.models.envoy import EnvoyData


@dataclass(frozen=True, slots=True)
class EnvoyConfig:
    host: str
    id: str | None = None
    name: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, item: dict[str, Any]) -> EnvoyConfig:
        return cls(
            host=str(item["host"]),
            id=item.get("id"),
            name=item.get("name"),
            username=item.get("username"),
            password=item.get("password"),
            token=item.get("token"),
        )

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.token) if s]


class EnvoyReadError(Exception):
    """One Envoy's poll failed; the message is a sentence for the user (it never holds a secret)."""


class EnvoyLink:
    def __init__(self, config: EnvoyConfig, session: aiohttp.ClientSession, timeout: float) -> None:
        self.config = config
        self.session = session
        self.timeout = timeout
        self.envoy: Envoy | None = None
        self.serial: str | None = None
        self.model: str | None = None
        self.firmware: str | None = None
        self.last_success: datetime | None = None
        self.last_error: str | None = None
        self.consecutive_errors = 0
        self.inverters: int | None = None
        self.warning: str | None = None
        # The token in use: the configured one, or one pyenphase fetched with the Enlighten account.
        self._token = config.token
        self._stage = "connecting"
        self._tokened = False

    @property
    def base_id(self) -> str | None:
        """``id`` from the config, else ``enphase_<serial>`` once the Envoy told its serial."""
        if self.config.id:
            return self.config.id
        return f"enphase_{self.serial.lower()}" if self.serial else None

    @property
    def health_key(self) -> str:
        return self.base_id or self.config.host

    async def read(self) -> EnvoyData:
        """One poll, all of it (connecting included) within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(self.timeout):
                data = await self._read()
        except TimeoutError:
            self._failed()
            raise self._error(f"no answer within {self.timeout:g} s while {self._stage}") from None
        except (EnvoyAuthenticationError, EnvoyAuthenticationRequired) as exc:
            problem = self._auth_problem(exc)
            self._failed(auth=True)
            raise self._error(problem) from None
        except EnvoyFirmwareFatalCheckError:
            self._failed()
            raise self._error("cannot connect (nothing answers at that address)") from None
        except EnvoyProbeFailed:
            self._failed()
            raise self._error("its answers hold no production data (malformed or not an Envoy)") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # pyenphase parses with orjson (JSONDecodeError is a ValueError) and indexes the answers
            # directly, so a cut or reshaped answer surfaces as one of these.
            self._failed()
            raise self._error(f"malformed answer while {self._stage} ({type(exc).__name__})") from None
        except (EnvoyError, aiohttp.ClientError, json.JSONDecodeError) as exc:
            self._failed()
            raise self._error(f"{type(exc).__name__} while {self._stage}: {self._redact(str(exc))}") from None
        self.last_success = datetime.now(UTC)
        self.last_error = None
        self.consecutive_errors = 0
        return data

    async def _read(self) -> EnvoyData:
        if self.envoy is None:
            self._stage = "connecting"
            envoy = Envoy(self.config.host, client=self.session)
            await envoy.setup()
            self.serial = envoy.serial_number
            self.firmware = str(envoy.firmware)
            self._tokened = envoy.firmware >= AUTH_TOKEN_MIN_VERSION
            self._stage = "authenticating"
            await envoy.authenticate(
                username=self.config.username, password=self.config.password, token=self._token
            )
            if isinstance(envoy.auth, EnvoyTokenAuth):
                self._token = envoy.auth.token
            self.envoy = envoy
            self._stage = "probing"
            await envoy.probe()
            self.model = envoy.envoy_model
            self.warning = None
            if not self._tokened and SupportedFeatures.INVERTERS not in envoy.supported_features:
                # pyenphase drops the inverter list quietly when the digest login is refused for it;
                # say so, since that is what a wrong local password looks like.
                self.warning = (
                    "no per-inverter readings: the Envoy has no inverter list or refused this local "
                    "user for it (check 'username'/'password')"
                )
        self._stage = "reading"
        data = await self.envoy.update()
        self.inverters = len(data.inverters or {})
        return data

    def _failed(self, *, auth: bool = False) -> None:
        self.consecutive_errors += 1
        if auth and self.config.username and self.config.password:
            # A rejected token with an Enlighten account at hand: the next connect fetches a new one.
            self._token = None
        # The session belongs to the plugin; dropping the Envoy object is all a reconnect needs.
        self.envoy = None

    def _error(self, what: str) -> EnvoyReadError:
        message = f"Envoy at {self.config.host}: {what}"
        self.last_error = message
        return EnvoyReadError(message)

    def _auth_problem(self, exc: Exception) -> str:
        firmware = self.firmware or "unknown"
        if self._tokened:
            if not (self._token or (self.config.username and self.config.password)):
                return (
                    f"firmware {firmware} needs a token: set 'token', or 'username' and 'password' of "
                    "the Enlighten account"
                )
            expires = self._token_expiry()
            if expires is not None and expires <= datetime.now(UTC):
                return f"the token expired on {expires.date().isoformat()}: get a new one from Enphase"
            return (
                "the Envoy refused the token (wrong, expired or for another Envoy) or the Enlighten "
                f"login failed: {self._redact(str(exc))}"
            )
        return (
            f"firmware {firmware} refused the local login (HTTP digest): check 'username' "
            "(installer or envoy) and 'password'"
        )

    def _token_expiry(self) -> datetime | None:
        token = self._token or self.config.token
        if not token:
            return None
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            return datetime.fromtimestamp(float(claims["exp"]), UTC)
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            return None

    def _redact(self, text: str) -> str:
        for secret in self.config.secrets() + ([self._token] if self._token else []):
            text = text.replace(secret, "***")
        return text[:300]

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "host": self.config.host,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "last_error": self.last_error,
            "consecutive_errors": self.consecutive_errors,
        }
        for key in ("serial", "model", "firmware", "inverters", "warning"):
            if (value := getattr(self, key)) is not None:
                out[key] = value
        return out
