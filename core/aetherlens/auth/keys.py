"""Key material: the JWT signing secret (generated into data_dir, 0600), API keys and refresh tokens.

An API key is ``al_<prefix>_<secret>``: 8 hex characters to find the row, 256 random bits of secret.
Only an HMAC-SHA256 digest is stored. It is checked on every request, so it is a fast keyed hash and
not a password hash; the randomness of the secret is what makes guessing hopeless.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

from aetherlens.config import Settings
from aetherlens.keyfile import read_or_create_private_file

SECRET_FILE: Final = "auth_secret.key"  # noqa: S105 - a file name, not a secret
API_KEY_PATTERN: Final = re.compile(r"^al_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
REFRESH_PATTERN: Final = re.compile(r"^rt_[A-Za-z0-9_-]{43}$")


def signing_secret(settings: Settings) -> bytes:
    """``auth.secret_key`` if configured, else the key file in data_dir (created on first use, 0600; two
    processes starting at once end up with the same secret)."""
    if settings.auth.secret_key:
        return settings.auth.secret_key.encode()
    return read_or_create_private_file(
        settings.data_dir / SECRET_FILE,
        lambda: secrets.token_urlsafe(48).encode(),
        valid=lambda data: len(data) >= 32,
    )


def digest(secret_key: bytes, token: str) -> str:
    return hmac.new(secret_key, token.encode(), hashlib.sha256).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_api_key() -> tuple[str, str]:
    """Return ``(prefix, full_key)``."""
    prefix = secrets.token_hex(4)
    return prefix, f"al_{prefix}_{secrets.token_urlsafe(32)}"


def new_refresh_token() -> str:
    """A refresh token is found by its digest alone, so it carries nothing but 256 random bits."""
    return f"rt_{secrets.token_urlsafe(32)}"
