"""The one exception hierarchy of the core.

Internals raise these; the CLI turns them into a message and exit code 1, the API into the contract's
error envelope with the status given by ``http_status``.
"""

from __future__ import annotations

from typing import Any


class AetherLensError(Exception):
    """Base of every error the core raises on purpose."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ConfigError(AetherLensError):
    """The configuration is invalid: the message names the key, the value and what is allowed."""

    code = "config_error"
    http_status = 400


class DatabaseError(AetherLensError):
    """The database cannot be reached, started or used."""

    code = "database_error"
    http_status = 503


class ManagedDatabaseError(DatabaseError):
    """The embedded (managed) PostgreSQL cluster could not be created, started or stopped."""

    code = "managed_database_error"


class MigrationError(DatabaseError):
    """A migration failed, or an applied migration file changed on disk."""

    code = "migration_error"


class CapabilityChangedError(DatabaseError):
    """The storage mode recorded at the first migration no longer matches what the server offers."""

    code = "capability_changed"


class ValidationError(AetherLensError):
    """Input is malformed; the message says what is wrong."""

    code = "validation_error"
    http_status = 400


class NotFoundError(AetherLensError):
    code = "not_found"
    http_status = 404


class ConflictError(AetherLensError):
    code = "conflict"
    http_status = 409


class AuthenticationError(AetherLensError):
    code = "unauthorized"
    http_status = 401


class PermissionDeniedError(AetherLensError):
    code = "forbidden"
    http_status = 403


class BackpressureError(AetherLensError):
    """The write queue (or the spool) is full; retry after ``retry_after`` seconds."""

    code = "queue_full"
    http_status = 503

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class PluginError(AetherLensError):
    """A plugin's manifest, config, signature or process is not acceptable; names the plugin."""

    code = "plugin_error"
    http_status = 400


class TariffError(ValidationError):
    """A tariff is invalid; the message names the field."""

    code = "invalid_tariff"
