"""The one exception hierarchy of the core.

Internals raise these; the CLI turns them into a message and exit code 1, the API into the contract's
error envelope. An exception says what went wrong (``code``, ``message``, ``details``), never how a
transport reports it: the HTTP status of each class is decided in one table, ``aetherlens.api.errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pydantic


class AetherLensError(Exception):
    """Base of every error the core raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ConfigError(AetherLensError):
    """The configuration is invalid: the message names the key, the value and what is allowed."""

    code = "config_error"


class DatabaseError(AetherLensError):
    """The database cannot be reached, started or used."""

    code = "database_error"


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


class NotFoundError(AetherLensError):
    code = "not_found"


class ConflictError(AetherLensError):
    code = "conflict"


class AuthenticationError(AetherLensError):
    code = "unauthorized"


class PermissionDeniedError(AetherLensError):
    code = "forbidden"


class BackpressureError(AetherLensError):
    """The write queue (or the spool) is full; retry after ``retry_after`` seconds."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class UnavailableError(AetherLensError):
    """Something the operation needs is unavailable for now (a plugin restarting, the spool full); the
    same request can succeed later."""

    code = "unavailable"


class PluginError(AetherLensError):
    """A plugin's manifest, config, signature or process is not acceptable; names the plugin."""

    code = "plugin_error"


class TariffError(ValidationError):
    """A tariff is invalid; the message names the field."""

    code = "invalid_tariff"


# Field names whose values are never repeated in a message (they may hold credentials).
_HIDDEN_INPUT = ("password", "secret", "key", "token")


def describe_validation_error(
    exc: pydantic.ValidationError, *, where: str = "", noun: str = "field", show_input: bool = False
) -> list[dict[str, str]]:
    """The one formatter of pydantic errors: one ``{"field", "type", "message"}`` per problem, each
    message naming the field (prefixed with ``where``: ``body.metrics.3.value``) as a ``noun``
    ("field", "config key", "key"); ``show_input`` repeats the offending value unless the field name
    suggests a secret. Callers join the messages with "; " and may put the list in ``details``."""
    problems: list[dict[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        name = f"{where}.{loc}" if where and loc else where or loc
        if err["type"] == "extra_forbidden":
            text = f"unknown {noun} '{name}'"
        elif err["type"] == "missing":
            text = f"missing required {noun} '{name}'"
        elif err["type"] == "json_invalid":
            text = f"not valid JSON: {err['msg']}"
        else:
            reason = str(err["msg"]).removeprefix("Value error, ")
            shown = ""
            if show_input:
                hidden = any(s in name.lower() for s in _HIDDEN_INPUT)
                shown = " = <hidden>" if hidden else f" = {err.get('input')!r}"
            text = f"{noun} '{name}'{shown}: {reason}" if name else reason
        problems.append({"field": name, "type": err["type"], "message": text})
    return problems


def validation_message(problems: list[dict[str, str]]) -> str:
    return "; ".join(p["message"] for p in problems)
