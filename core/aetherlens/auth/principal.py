"""Who is calling, and what they may do (CONTRACT.md: scopes and roles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

SCOPES: Final = ("read", "ingest", "write", "control", "admin")
ROLES: Final = ("viewer", "operator", "admin")
ROLE_SCOPES: Final[dict[str, frozenset[str]]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "control"}),
    "admin": frozenset(SCOPES),
}


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["user", "api_key"]
    id: str
    name: str
    scopes: frozenset[str]
    session_id: str | None = None
    # When the credential itself expires (JWT ``exp``, API key ``expires_at``), epoch seconds; long-lived
    # connections (the WebSocket stream) re-check it.
    expires_at: float | None = None

    def allows(self, scope: str) -> bool:
        # `admin` is "all" (the admin role has every scope; an admin key likewise).
        return scope in self.scopes or "admin" in self.scopes

    @property
    def rate_key(self) -> str:
        return f"{self.kind}:{self.id}"
