"""The auth domain's exceptions (part of the one hierarchy in :mod:`aetherlens.errors`).

They say what went wrong with a credential; which HTTP status that is, and which ``WWW-Authenticate``
header goes with it, is decided only by ``aetherlens.api.errors``.
"""

from __future__ import annotations

from aetherlens.errors import AuthenticationError


class InvalidTokenError(AuthenticationError):
    """The bearer token, API key or refresh token is malformed, expired or revoked."""

    code = "invalid_token"
