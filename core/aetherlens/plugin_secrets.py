"""Which plugin config values are secrets, and their storage in ``plugins.secrets``.

Next to the plugins (not in the API) because both the supervisor, which decrypts them to configure a
plugin, and ``PUT /plugins/{id}/config``, which encrypts them, need it; nothing here is HTTP.

Encryption itself is the shared :class:`aetherlens.secrets.SecretBox` (Fernet, key file 0600 in
``data_dir``). Secrets are string values whose key the manifest's JSON Schema marks (``writeOnly`` or
``format: password``) or whose name looks like a credential (password, secret, token, api_key, ...):
manifests rarely mark their tokens, and a leaked token costs more than a masked room name. A ``${VAR}``
reference is not a secret (the environment holds the value) and stays in the plain config.

Secrets may sit deep in a config (``devices[0].password`` of a device plugin): they are found by
walking the config along its schema (``properties``, ``items``), and stored under their path, so a
top-level secret's path is just its key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import orjson

from aetherlens.config import Settings
from aetherlens.secrets import REDACTED, SecretBox, is_reference, secret_fields_of

__all__ = ["REDACTED", "decrypt", "encrypt", "merge", "secret_keys", "split"]

_SECRET_NAME: Final = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|credential|private[_-]?key)", re.I
)


_PATH_PART: Final = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

type Path = tuple[str | int, ...]


def _path_text(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _path_parts(text: str) -> Path:
    return tuple(int(m[2]) if m[2] is not None else m[1] for m in _PATH_PART.finditer(text))


def _secret_paths(value: Any, schema: Mapping[str, Any], path: Path) -> list[Path]:
    found: list[Path] = []
    if isinstance(value, Mapping):
        marked = set(secret_fields_of(schema))
        properties = schema.get("properties")
        props: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
        for key, item in value.items():
            if isinstance(item, str):
                if not is_reference(item) and (key in marked or _SECRET_NAME.search(key) is not None):
                    found.append((*path, key))
            else:
                sub = props.get(key)
                found += _secret_paths(item, sub if isinstance(sub, Mapping) else {}, (*path, key))
    elif isinstance(value, list):
        items = schema.get("items")
        for index, item in enumerate(value):
            found += _secret_paths(item, items if isinstance(items, Mapping) else {}, (*path, index))
    return found


def secret_keys(config: Mapping[str, Any], schema: Mapping[str, Any] | None) -> set[str]:
    """Paths of the secret values in ``config`` (``token``, ``devices[0].password``)."""
    return {_path_text(path) for path in _secret_paths(config, schema or {}, ())}


def split(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain config, secrets by path) of a plugin config; ``merge`` puts them back together."""
    plain: dict[str, Any] = orjson.loads(orjson.dumps(config))  # a deep copy of JSON values
    secrets: dict[str, Any] = {}
    for path in _secret_paths(config, schema or {}, ()):
        parent: Any = plain
        for part in path[:-1]:
            parent = parent[part]
        secrets[_path_text(path)] = parent.pop(path[-1])
    return plain, secrets


def merge(plain: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    """``plain`` with each secret put back at its path (a path whose place is gone is dropped: the
    list it was in became shorter)."""
    config: dict[str, Any] = orjson.loads(orjson.dumps(plain))
    for text, value in secrets.items():
        path = _path_parts(text)
        parent: Any = config
        try:
            for part in path[:-1]:
                parent = parent[part]
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(parent, dict):
            parent[path[-1]] = value
    return config


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
