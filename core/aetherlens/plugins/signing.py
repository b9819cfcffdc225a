"""Publisher signatures for third-party plugins: ed25519 over the manifest and a sha256 of every file.

``plugin.sig`` (next to ``plugin.yaml``) is JSON: the publisher, the sha256 of each file of the plugin
directory, and an ed25519 signature over the canonical JSON of those two plus the manifest's hash. A
plugin verifies when the signature checks out with the key the user trusts for that publisher and the
directory holds exactly the listed files with the listed hashes (an added file is refused as well as a
changed one, since the host imports whatever is there).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aetherlens.errors import PluginError
from aetherlens.plugins.manifest import MANIFEST_NAME

SIGNATURE_NAME: Final = "plugin.sig"
FORMAT: Final = 1
_SKIP_DIRS: Final = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking a plugin directory: ``ok`` and, either way, a sentence why."""

    ok: bool
    status: str  # "verified", "unsigned", "unsigned_allowed", "refused", "builtin"
    reason: str
    publisher: str | None = None


def generate_keypair() -> tuple[bytes, str]:
    """A new key: (private key as PEM, public key as 'ed25519:<base64>' for trusted_keys)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, public_key_text(key.public_key())


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PluginError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PluginError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PluginError(f"{path} is not an ed25519 private key")
    return key


def parse_public_key(text: str) -> Ed25519PublicKey:
    raw_text = text.strip().removeprefix("ed25519:")
    try:
        raw = base64.b64decode(raw_text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise PluginError("a trusted key must be 'ed25519:<base64 of 32 bytes>'") from None


def hash_files(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` (relative POSIX paths), the signature file excluded."""
    hashes: dict[str, str] = {}
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(directory).as_posix()
            if relative == SIGNATURE_NAME or name.endswith(".pyc"):
                continue
            if path.is_symlink():
                raise PluginError(f"{path}: symbolic links are not allowed in a signed plugin")
            hashes[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _payload(publisher: str, manifest_sha256: str, files: dict[str, str]) -> bytes:
    return orjson.dumps(
        {"format": FORMAT, "publisher": publisher, "manifest_sha256": manifest_sha256, "files": files},
        option=orjson.OPT_SORT_KEYS,
    )


def sign_directory(directory: Path, key: Ed25519PrivateKey, publisher: str) -> Path:
    """Write ``plugin.sig`` for the plugin in ``directory``; returns its path."""
    if not (directory / MANIFEST_NAME).is_file():
        raise PluginError(f"{directory}: no {MANIFEST_NAME} here, so nothing to sign")
    files = hash_files(directory)
    manifest_sha = files[MANIFEST_NAME]
    signature = key.sign(_payload(publisher, manifest_sha, files))
    document: dict[str, Any] = {
        "format": FORMAT,
        "publisher": publisher,
        "manifest_sha256": manifest_sha,
        "files": files,
        "signature": base64.b64encode(signature).decode(),
    }
    path = directory / SIGNATURE_NAME
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    return path


def verify_directory(
    directory: Path, plugin_id: str, trusted_keys: dict[str, str], allow_unsigned: list[str]
) -> Verification:
    """Check a third-party plugin; never raises for a bad plugin, the reason is in the result."""
    sig_path = directory / SIGNATURE_NAME
    if not sig_path.is_file():
        if plugin_id in allow_unsigned:
            return Verification(True, "unsigned_allowed", "unsigned, allowed by name in allow_unsigned")
        return Verification(
            False,
            "unsigned",
            f"plugin '{plugin_id}' is not signed ({SIGNATURE_NAME} missing) and is not listed in "
            "plugins.allow_unsigned",
        )
    try:
        document = orjson.loads(sig_path.read_bytes())
        publisher = str(document["publisher"])
        files = {str(k): str(v) for k, v in dict(document["files"]).items()}
        manifest_sha = str(document["manifest_sha256"])
        signature = base64.b64decode(str(document["signature"]), validate=True)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return Verification(False, "refused", f"{SIGNATURE_NAME} is malformed: {exc}")
    key_text = trusted_keys.get(publisher)
    if key_text is None:
        return Verification(
            False, "refused", f"publisher '{publisher}' is not in plugins.trusted_keys", publisher
        )
    try:
        parse_public_key(key_text).verify(signature, _payload(publisher, manifest_sha, files))
    except PluginError as exc:
        return Verification(False, "refused", f"trusted key of '{publisher}': {exc.message}", publisher)
    except InvalidSignature:
        return Verification(
            False, "refused", f"signature does not match the key trusted for '{publisher}'", publisher
        )
    try:
        actual = hash_files(directory)
    except PluginError as exc:
        return Verification(False, "refused", exc.message, publisher)
    if actual.get(MANIFEST_NAME) != manifest_sha:
        return Verification(False, "refused", f"{MANIFEST_NAME} changed after signing", publisher)
    changed = sorted(name for name in files if actual.get(name) != files[name])
    added = sorted(set(actual) - set(files))
    if changed or added:
        parts = []
        if changed:
            parts.append("changed or missing since signing: " + ", ".join(changed))
        if added:
            parts.append("not covered by the signature: " + ", ".join(added))
        return Verification(False, "refused", "; ".join(parts), publisher)
    return Verification(True, "verified", f"signed by '{publisher}'", publisher)
