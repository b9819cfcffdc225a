"""Password hashing (argon2id) and the contract's password rule (12+ characters)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from aetherlens.errors import ValidationError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 accepts any length; a bound keeps hashing time bounded
_hasher = PasswordHasher()
# Verified against when the user does not exist, so "no such user" costs the same time as "wrong password".
_DUMMY_HASH = _hasher.hash("aetherlens-dummy-password")


def check_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise ValidationError(
            f"password must have at least {MIN_LENGTH} characters",
            details={"errors": [{"field": "body.password", "type": "too_short"}]},
        )
    if len(password) > MAX_LENGTH:
        raise ValidationError(f"password must have at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_policy(password)
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password_async(password: str) -> str:
    """argon2 takes tens of ms of CPU: keep it off the event loop that serves ingest."""
    check_policy(password)
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)
