"""Which plugin config values are secrets, and their storage in ``plugins.secrets``.

Next to the plugins (not in the API) because both the supervisor, which decrypts them to configure a
plugin, and ``PUT /plugins/{id}/config``, which encrypts them, need it; nothing here is HTTP.

Encryption itself is the shared :class:`aetherlens.secrets.SecretBox` (Fernet, key file 0600 in
``data_dir``). Secrets are string values whose key the manifest's JSON Schema marks (``writeOnly`` or
``format: password``) or whose name looks like a credential (password, secret, token, api_key, ...):
manifests rarely mark their tokens, and a leaked token costs more than a masked room name. A ``${VAR}``
reference is not a secret (the environment holds the value) and stays in the plain config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from aetherlens.config import Settings
from aetherlens.secrets import REDACTED, SecretBox, is_reference, secret_fields_of

__all__ = ["REDACTED", "decrypt", "encrypt", "secret_keys", "split"]

_SECRET_NAME: Final = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|credential|private[_-]?key)", re.I
)


def secret_keys(config: Mapping[str, Any], schema: Mapping[str, Any] | None) -> set[str]:
    marked = set(secret_fields_of(schema or {}))
    return {
        key
        for key, value in config.items()
        if isinstance(value, str)
        and not is_reference(value)
        and (key in marked or _SECRET_NAME.search(key) is not None)
    }


def split(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain config, secrets) of a plugin config."""
    keys = secret_keys(config, schema)
    plain = {k: v for k, v in config.items() if k not in keys}
    return plain, {k: config[k] for k in keys}


def _box(settings: Settings) -> SecretBox:
    return SecretBox.for_data_dir(settings.data_dir)


def encrypt(settings: Settings, secrets: Mapping[str, Any]) -> bytes | None:
    """The column value: a JSON object of ``enc:v1:`` Fernet tokens (None when there are no secrets)."""
    if not secrets:
        return None
    return orjson.dumps(_box(settings).encrypt_fields(secrets, secrets.keys()))


def decrypt(settings: Settings, blob: bytes | None) -> dict[str, Any]:
    if not blob:
        return {}
    stored: dict[str, Any] = orjson.loads(blob)
    return _box(settings).decrypt_fields(stored, stored.keys())
