"""Login, token refresh, logout and API keys (CONTRACT.md, HTTP: /auth/*)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from aetherlens.api.routing import ApiModel, Call, route
from aetherlens.api.security import AUTH_SERVICE_KEY
from aetherlens.auth import queries as q
from aetherlens.auth.principal import SCOPES
from aetherlens.auth.service import AuthService, TokenPair

Scope = Literal["read", "ingest", "write", "control", "admin"]
assert set(Scope.__args__) == set(SCOPES)  # type: ignore[attr-defined]


class LoginRequest(ApiModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(ApiModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutRequest(ApiModel):
    refresh_token: str | None = Field(default=None, max_length=256)


class Tokens(ApiModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    expires_in: int = Field(description="seconds until the access token expires")


class ApiKeyCreate(ApiModel):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1)


class ApiKeyCreated(ApiModel):
    id: str
    name: str
    scopes: list[Scope]
    key: str = Field(description="the key itself; shown only in this answer")


class ApiKeyOut(ApiModel):
    id: str
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None


class ApiKeyList(ApiModel):
    items: list[ApiKeyOut]


def _service(call: Call[Any, Any]) -> AuthService:
    return call.request.app[AUTH_SERVICE_KEY]


def _tokens(pair: TokenPair) -> Tokens:
    return Tokens(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@route(
    "POST",
    "/api/v1/auth/login",
    scope=None,
    body=LoginRequest,
    response=Tokens,
    rate_limit="ip",
    summary="Log in: a JWT access token and a refresh token",
    errors=(401,),
)
async def login(call: Call[None, LoginRequest]) -> Tokens:
    return _tokens(await _service(call).login(call.body.username, call.body.password, call.request.remote))


@route(
    "POST",
    "/api/v1/auth/refresh",
    scope=None,
    body=RefreshRequest,
    response=Tokens,
    rate_limit="ip",
    summary="New tokens for a refresh token (which is revoked: rotation)",
    errors=(401,),
)
async def refresh(call: Call[None, RefreshRequest]) -> Tokens:
    return _tokens(await _service(call).refresh(call.body.refresh_token, call.request.remote))


@route(
    "POST",
    "/api/v1/auth/logout",
    scope="any",
    body=LogoutRequest,
    body_required=False,
    status=204,
    summary="Revoke this session's tokens (and the given refresh token's session)",
)
async def logout(call: Call[None, LogoutRequest | None]) -> None:
    refresh_token = call.body.refresh_token if call.body is not None else None
    await _service(call).logout(call.user.session_id, refresh_token)


@route(
    "GET",
    "/api/v1/auth/api-keys",
    scope="admin",
    response=ApiKeyList,
    summary="List API keys (never the keys)",
)
async def list_api_keys(call: Call[None, None]) -> ApiKeyList:
    rows = await q.list_keys(call.ctx.pool)
    return ApiKeyList(items=[ApiKeyOut(**dict(r)) for r in rows])


@route(
    "POST",
    "/api/v1/auth/api-keys",
    scope="admin",
    body=ApiKeyCreate,
    response=ApiKeyCreated,
    status=201,
    summary="Create an API key (the key is shown once)",
)
async def create_api_key(call: Call[None, ApiKeyCreate]) -> ApiKeyCreated:
    creator = call.user.id if call.user.kind == "user" else None
    created = await _service(call).create_key(call.body.name, list(call.body.scopes), creator)
    return ApiKeyCreated(id=created.id, name=created.name, scopes=created.scopes, key=created.key)  # type: ignore[arg-type]


@route(
    "DELETE",
    "/api/v1/auth/api-keys/{id}",
    scope="admin",
    status=204,
    errors=(404,),
    summary="Revoke an API key",
)
async def revoke_api_key(call: Call[None, None]) -> None:
    await _service(call).revoke_key(call.path["id"])
