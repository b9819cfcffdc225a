"""Secrets at rest: plugin credentials saved through the API or CLI are Fernet-encrypted.

The key lives in ``data_dir/secrets.key`` (created on first use, mode 0600). A value that is a
``${VAR}`` reference stays a reference (the environment supplies it at run time), so encrypting never
freezes what an operator meant to keep in the environment. Encrypted values carry the ``enc:v1:``
prefix so reading is unambiguous and idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken

from aetherlens.errors import ConfigError
from aetherlens.keyfile import read_or_create_private_file

KEY_FILE: Final = "secrets.key"
PREFIX: Final = "enc:v1:"
REDACTED: Final = "********"
_REFERENCE: Final = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$")


def is_reference(value: str) -> bool:
    return bool(_REFERENCE.match(value))


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> SecretBox:
        # Two processes creating the key at once must share it, or one's secrets are unreadable later.
        return cls(read_or_create_private_file(data_dir / KEY_FILE, Fernet.generate_key))

    def encrypt(self, value: str) -> str:
        if is_reference(value) or value.startswith(PREFIX):
            return value
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str) -> str:
        if not value.startswith(PREFIX):
            return value  # plain value or ${VAR} reference
        try:
            return self._fernet.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "an encrypted secret cannot be decrypted with the key in data_dir/secrets.key "
                "(was the key file replaced?)"
            ) from None

    def encrypt_fields(self, config: Mapping[str, Any], secret_fields: Iterable[str]) -> dict[str, Any]:
        names = set(secret_fields)
        return {k: self.encrypt(v) if k in names and isinstance(v, str) else v for k, v in config.items()}

    def decrypt_fields(self, config: Mapping[str, Any], secret_fields: Iterable[str]) -> dict[str, Any]:
        names = set(secret_fields)
        return {k: self.decrypt(v) if k in names and isinstance(v, str) else v for k, v in config.items()}


def redact(config: Mapping[str, Any], secret_fields: Iterable[str]) -> dict[str, Any]:
    """What responses show: secret fields masked (a ``${VAR}`` reference is not a secret and is shown)."""
    names = set(secret_fields)
    return {
        k: (v if isinstance(v, str) and is_reference(v) else REDACTED) if k in names and v is not None else v
        for k, v in config.items()
    }


def secret_fields_of(schema: Mapping[str, Any]) -> list[str]:
    """Top-level properties a JSON Schema marks as secret (``format: password`` or ``writeOnly``)."""
    props = schema.get("properties", {})
    return [
        name
        for name, prop in props.items()
        if isinstance(prop, Mapping) and (prop.get("format") == "password" or prop.get("writeOnly") is True)
    ]
