"""Plugin credentials at rest: Fernet-encrypted with a key file (0600) in ``data_dir``.

Which config values are secrets: keys whose JSON Schema property says ``"writeOnly": true`` or
``"format": "password"``, and — when a plugin has no schema for a key — keys whose name looks like a
credential (password, secret, token, api_key, ...). A ``${VAR}`` reference is not a secret (the value
lives in the environment) and stays a reference in the plain config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import orjson
from cryptography.fernet import Fernet, InvalidToken

from aetherlens.api.auth.keys import write_private_file
from aetherlens.config import Settings
from aetherlens.errors import AetherLensError

KEY_FILE: Final = "plugin_secrets.key"
REDACTED: Final = "********"
_SECRET_NAME: Final = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|credential|private[_-]?key)", re.I
)
_REFERENCE: Final = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$")


def _key_path(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE


def load_key(settings: Settings) -> bytes:
    """The Fernet key, created (0600) on first use."""
    path = _key_path(settings)
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        key = b""
    if not key:
        key = Fernet.generate_key()
        write_private_file(path, key)
    return key


def secret_keys(config: Mapping[str, Any], schema: Mapping[str, Any] | None) -> set[str]:
    properties: Mapping[str, Any] = (schema or {}).get("properties", {}) or {}
    found: set[str] = set()
    for key, value in config.items():
        spec = properties.get(key)
        if isinstance(spec, Mapping):
            is_secret = bool(spec.get("writeOnly")) or spec.get("format") == "password"
        else:
            is_secret = bool(_SECRET_NAME.search(key))
        if is_secret and not (isinstance(value, str) and _REFERENCE.match(value)):
            found.add(key)
    return found


def split(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain config, secrets) of a plugin config."""
    keys = secret_keys(config, schema)
    plain = {k: v for k, v in config.items() if k not in keys}
    return plain, {k: config[k] for k in keys}


def encrypt(settings: Settings, secrets: Mapping[str, Any]) -> bytes | None:
    if not secrets:
        return None
    return Fernet(load_key(settings)).encrypt(orjson.dumps(dict(secrets)))


def decrypt(settings: Settings, blob: bytes | None) -> dict[str, Any]:
    if not blob:
        return {}
    try:
        value: dict[str, Any] = orjson.loads(Fernet(load_key(settings)).decrypt(blob))
    except InvalidToken:
        raise AetherLensError(
            f"stored plugin secrets cannot be decrypted with {_key_path(settings)} "
            "(was the key file replaced?)"
        ) from None
    return value


def redact(plain: Mapping[str, Any], secret_names: set[str] | list[str]) -> dict[str, Any]:
    """What answers show: the plain config plus every secret key with its value hidden."""
    shown = dict(plain)
    for key in secret_names:
        shown[key] = REDACTED
    return shown
