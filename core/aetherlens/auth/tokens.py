"""JWT access tokens (HS256 with the signing secret). The claims name the user and the session; the
user's role is *not* trusted from the token but looked up in memory on every request, so a role change
or a revoked session takes effect at once."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from aetherlens.auth.errors import InvalidTokenError

ALGORITHM = "HS256"
ISSUER = "aetherlens"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    user_name: str
    session_id: str
    issued_at: float
    expires_at: float


def issue_access_token(
    secret: bytes, *, user_id: str, user_name: str, session_id: str, ttl: int, now: float | None = None
) -> str:
    issued = time.time() if now is None else now
    claims = {
        "iss": ISSUER,
        "sub": user_name,
        "uid": user_id,
        "sid": session_id,
        "iat": int(issued),
        "exp": int(issued) + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access_token(secret: bytes, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidTokenError("access token has expired; refresh it or log in again") from None
    except jwt.PyJWTError:
        raise InvalidTokenError("access token is invalid") from None
    try:
        return AccessClaims(
            user_id=str(claims["uid"]),
            user_name=str(claims["sub"]),
            session_id=str(claims["sid"]),
            issued_at=float(claims["iat"]),
            expires_at=float(claims["exp"]),
        )
    except (KeyError, TypeError, ValueError):
        raise InvalidTokenError("access token is invalid") from None
