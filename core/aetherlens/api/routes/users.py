"""User management (admin): GET/POST /users, GET/PATCH/DELETE /users/{name}."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from aetherlens.api.routing import ApiModel, Call, route
from aetherlens.api.security import AUTH_SERVICE_KEY
from aetherlens.auth import queries as q
from aetherlens.errors import NotFoundError

Role = Literal["viewer", "operator", "admin"]
USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class UserCreate(ApiModel):
    name: str = Field(pattern=USER_NAME)
    role: Role
    password: str = Field(min_length=12, max_length=1024)


class UserPatch(ApiModel):
    role: Role | None = None
    password: str | None = Field(default=None, min_length=12, max_length=1024)


class UserOut(ApiModel):
    name: str
    role: Role
    created_at: datetime | None = None
    updated_at: datetime | None = None


class UserList(ApiModel):
    items: list[UserOut]


def _out(row: Any) -> UserOut:
    return UserOut(
        name=row["name"], role=row["role"], created_at=row["created_at"], updated_at=row["updated_at"]
    )


@route("GET", "/api/v1/users", scope="admin", response=UserList, summary="List users")
async def list_users(call: Call[None, None]) -> UserList:
    return UserList(items=[_out(r) for r in await q.list_users(call.ctx.pool)])


@route(
    "POST",
    "/api/v1/users",
    scope="admin",
    body=UserCreate,
    response=UserOut,
    status=201,
    errors=(409,),
    summary="Create a user",
)
async def create_user(call: Call[None, UserCreate]) -> UserOut:
    body = call.body
    return _out(await call.request.app[AUTH_SERVICE_KEY].create_user(body.name, body.role, body.password))


@route("GET", "/api/v1/users/{name}", scope="admin", response=UserOut, errors=(404,), summary="One user")
async def get_user(call: Call[None, None]) -> UserOut:
    row = await q.get_user(call.ctx.pool, call.path["name"])
    if row is None:
        raise NotFoundError(f"no user {call.path['name']!r}", details={"name": call.path["name"]})
    return _out(row)


@route(
    "PATCH",
    "/api/v1/users/{name}",
    scope="admin",
    body=UserPatch,
    response=UserOut,
    errors=(404, 409),
    summary="Change a user's role or password (a new password revokes their sessions)",
)
async def patch_user(call: Call[None, UserPatch]) -> UserOut:
    service = call.request.app[AUTH_SERVICE_KEY]
    return _out(
        await service.update_user(call.path["name"], role=call.body.role, password=call.body.password)
    )


@route(
    "DELETE",
    "/api/v1/users/{name}",
    scope="admin",
    status=204,
    errors=(404, 409),
    summary="Delete a user (not the last admin)",
)
async def delete_user(call: Call[None, None]) -> None:
    await call.request.app[AUTH_SERVICE_KEY].delete_user(call.path["name"])
