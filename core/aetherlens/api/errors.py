"""The one error envelope: every 4xx/5xx answer is ``{"error": {"code", "message", "details"}}``.

Internals raise ``aetherlens.errors`` exceptions (the code comes from the class, the status from
``STATUS_BY_ERROR`` below: the one place an exception type becomes an HTTP status); aiohttp's own
HTTP exceptions (unknown route, wrong method, oversize body) are translated here too, so no client ever
sees aiohttp's plain-text pages. Unexpected exceptions become a 500 that names only the request id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
import orjson
from aiohttp import web

from aetherlens.alerts.rules import RuleError
from aetherlens.api.context import CTX_KEY
from aetherlens.auth.errors import InvalidTokenError
from aetherlens.db.outage import DATABASE_UNREACHABLE
from aetherlens.errors import (
    AetherLensError,
    AuthenticationError,
    BackpressureError,
    ConfigError,
    ConflictError,
    DatabaseError,
    NotFoundError,
    PermissionDeniedError,
    PluginError,
    UnavailableError,
    ValidationError,
)
from aetherlens.obs import request_id_var

log = logging.getLogger("aetherlens.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RateLimitedError(AetherLensError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, details={"retry_after": math.ceil(retry_after)})
        self.retry_after = retry_after


# Exception type -> HTTP status. A subclass not listed takes the status of its nearest listed base (in
# MRO order), so a new domain exception needs an entry only when its status differs from its base's.
STATUS_BY_ERROR: Final[dict[type[AetherLensError], int]] = {
    AetherLensError: 500,
    ConfigError: 400,
    ValidationError: 400,  # TariffError ...
    RuleError: 422,  # a well-formed alert rule that cannot work (unknown device, impossible threshold)
    PluginError: 400,
    AuthenticationError: 401,  # InvalidTokenError
    PermissionDeniedError: 403,
    NotFoundError: 404,
    ConflictError: 409,  # NotControllableError ...
    RateLimitedError: 429,
    DatabaseError: 503,
    BackpressureError: 503,
    UnavailableError: 503,  # PluginUnavailable, SpoolFullError
}


def status_for(exc: AetherLensError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


# aiohttp's exceptions by status -> our codes (the envelope's code is snake_case by contract).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "rate_limited",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return web.Response(
        status=status, body=orjson.dumps({"error": error}), content_type="application/json", headers=headers
    )


def from_exception(exc: AetherLensError) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = (
            'Bearer error="invalid_token"' if isinstance(exc, InvalidTokenError) else "Bearer"
        )
    if isinstance(exc, BackpressureError | RateLimitedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return error_response(status_for(exc), exc.code, exc.message, exc.details or None, headers)


def from_http_exception(exc: web.HTTPException, request: web.Request) -> web.Response:
    status = exc.status
    code = HTTP_CODES.get(status, "http_error")
    details: dict[str, Any] = {}
    if status == 404:
        message = f"no route {request.path}"
    elif status == 405:
        allowed = sorted(getattr(exc, "allowed_methods", set()) or ())
        message = f"method {request.method} is not allowed on {request.path}"
        details["allowed"] = allowed
    elif status == 413:
        max_size = request.app[CTX_KEY].settings.api.max_body_bytes
        message = f"request body is larger than api.max_body_bytes ({max_size} bytes)"
        details["max_body_bytes"] = max_size
    else:
        message = exc.reason or code.replace("_", " ")
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after", "www-authenticate"}
    }
    return error_response(status, code, message, details or None, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AetherLensError as exc:
        if status_for(exc) >= 500:
            log.warning("request failed: %s (%s)", exc.message, exc.code)
        return from_exception(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_http_exception(exc, request)
    except Exception as exc:
        return _unexpected(exc, request)


def _unexpected(exc: Exception, request: web.Request) -> web.Response:
    if isinstance(exc, asyncpg.DataError) and type(exc) is not asyncpg.DataError:
        # PostgreSQL's class 22 (a value out of range, an impossible date ...): the input is at fault.
        # (Plain DataError is asyncpg's client-side argument encoding: a bug, so a 500 below.)
        return error_response(400, "invalid_value", f"a value was refused by the database: {exc.message}")
    if isinstance(exc, DATABASE_UNREACHABLE):
        # The database went away mid-request: a temporary condition, not a bug.
        log.warning("database unavailable in %s %s: %s", request.method, request.path, type(exc).__name__)
        return error_response(
            503,
            "database_unavailable",
            "the database is not reachable right now; retry later",
            headers={"Retry-After": "5"},
        )
    # Internals stay in the log; the client gets the request id to quote.
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    request_id = request_id_var.get() or "-"
    return error_response(
        500, "internal_error", f"internal error (request id {request_id})", {"request_id": request_id}
    )
