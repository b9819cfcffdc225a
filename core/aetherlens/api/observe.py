"""Outermost middleware: request id, access log, Prometheus request metrics, security headers, CORS.

It wraps the error middleware, so it sees the final status of every answer (errors included) and can
stamp the same headers on all of them.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter, Histogram

from aetherlens.api.security import PRINCIPAL_KEY
from aetherlens.obs import request_id_var

access_log = logging.getLogger("aetherlens.api.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUESTS = Counter(
    "aetherlens_http_requests_total",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "aetherlens_http_request_duration_seconds",
    "Time to answer HTTP requests, by route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, X-Request-ID"


def route_label(request: web.Request) -> str:
    """The route *template* (bounded label cardinality); unknown paths share one label."""
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    resource = info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def make_observe_middleware(cors_origins: Iterable[str]) -> Middleware:
    origins = frozenset(cors_origins)
    allow_any = "*" in origins

    def cors_origin(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin and (allow_any or origin in origins):
            return origin
        return None

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            origin = cors_origin(request)
            if request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
                response: web.StreamResponse = web.Response(status=204)
                response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
                response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
            else:
                response = await handler(request)
            status = response.status
            if not response.prepared:
                headers = response.headers
                headers["X-Request-ID"] = request_id
                for name, value in _SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", API_CSP)
                if origin:
                    headers["Access-Control-Allow-Origin"] = origin
                    headers["Access-Control-Expose-Headers"] = "Retry-After, X-Request-ID, WWW-Authenticate"
                    headers["Vary"] = "Origin"
            return response
        finally:
            elapsed = time.perf_counter() - started
            label = route_label(request)
            REQUESTS.labels(request.method, label, str(status)).inc()
            LATENCY.labels(request.method, label).observe(elapsed)
            principal = request.get(PRINCIPAL_KEY)
            # Path only: query strings are not logged (they are not meant to hold secrets, but be safe).
            access_log.info(
                "%s %s %d",
                request.method,
                request.path,
                status,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "remote": request.remote,
                    "principal": principal.rate_key if principal is not None else None,
                },
            )
            request_id_var.reset(token)

    return observe
