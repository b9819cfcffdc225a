"""The route x role (and API-key scope) matrix over EVERY registered route, data routes included.

For each route: no credentials → 401; a principal without the route's scope → 403; a principal with it
→ neither 401 nor 403 (nor a 5xx: dummy path ids and an empty body must be a clean 4xx at worst).
"""

from __future__ import annotations

import re
from typing import Any

from aetherlens.api.openapi import SPECS_KEY
from aetherlens.api.routing import RouteSpec
from aetherlens.auth.principal import ROLE_SCOPES, SCOPES

from .conftest import Api, MakeApi


def _allowed(scope: str, scopes: frozenset[str]) -> bool:
    return scope == "any" or scope in scopes or "admin" in scopes


def _concrete(path: str) -> str:
    """A path that matches the route: ``matrix-x`` for plain segments, a number where the route's regex
    wants one (``{id:[0-9]+}``)."""

    def value(match: re.Match[str]) -> str:
        regex = match.group(1)
        for candidate in ("matrix-x", "999999"):
            if regex is None or re.fullmatch(regex, candidate):
                return candidate
        raise AssertionError(f"no dummy value for {match.group(0)} in {path}")

    return re.sub(r"\{[A-Za-z_][A-Za-z0-9_]*(?::([^}]*))?\}", value, path)


async def _call(api: Api, spec: RouteSpec, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if spec.body is not None and spec.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    resp = await api.client.request(spec.method, _concrete(spec.path), **kwargs)
    await resp.read()
    return resp.status


async def test_route_role_and_scope_matrix(make_api: MakeApi) -> None:
    api = await make_api(api={"rate_limit": {"login_per_minute": 10_000, "login_per_hour": 100_000}})
    specs = [s for s in api.app[SPECS_KEY] if s.scope is not None]
    # Routes any caller may use (logout) end the caller's session: run them last for each principal.
    specs.sort(key=lambda s: s.scope == "any")
    assert len(specs) >= 10
    failures: list[str] = []

    for spec in specs:
        status = await _call(api, spec, {})
        if status != 401:
            failures.append(f"{spec.method} {spec.path} without credentials: {status}")

    for role, scopes in ROLE_SCOPES.items():
        for spec in specs:
            status = await _call(api, spec, await api.headers(role))
            if spec.scope == "any":
                api._tokens.pop(role, None)  # that token's session was just logged out
            _judge(failures, f"role {role}", spec, scopes, status)

    for scope in SCOPES:
        key = await api.key([scope], name=f"matrix-{scope}")
        for spec in specs:
            status = await _call(api, spec, {"Authorization": f"Bearer {key}"})
            _judge(failures, f"key[{scope}]", spec, frozenset({scope}), status)

    assert not failures, "\n".join(failures)


def _judge(failures: list[str], who: str, spec: RouteSpec, scopes: frozenset[str], status: int) -> None:
    assert spec.scope is not None
    if _allowed(spec.scope, scopes):
        if status in (401, 403) or status >= 500:
            failures.append(f"{spec.method} {spec.path} ({spec.scope}) as {who}: {status}, expected access")
    elif status != 403:
        failures.append(f"{spec.method} {spec.path} ({spec.scope}) as {who}: {status}, expected 403")


async def test_every_route_declares_a_known_scope(make_api: MakeApi) -> None:
    api = await make_api()
    for spec in api.app[SPECS_KEY]:
        assert spec.scope in (None, "any", *SCOPES), spec.path
        if spec.scope is None:
            # Public routes are exactly the contract's list (plus the docs page's assets).
            assert spec.path in {
                "/health",
                "/health/live",
                "/health/ready",
                "/metrics",
                "/api/v1/openapi.json",
                "/api/v1/docs",
                "/api/v1/docs/docs.js",
                "/api/v1/docs/docs.css",
                "/api/v1/auth/login",
                "/api/v1/auth/refresh",
            }, spec.path
