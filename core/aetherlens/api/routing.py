"""Route declaration: one decorator that validates input, enforces the scope and feeds the OpenAPI document.

A route is declared once, with pydantic types for its query, body and response::

    @route("GET", "/api/v1/users/{name}", scope="admin", response=UserOut, summary="One user")
    async def get_user(call: Call[None, None]) -> UserOut: ...

The same types validate requests (unknown fields, wrong types and malformed JSON become a 400 naming
the field) and generate the OpenAPI document, so the spec and the code cannot disagree. ``scope=None``
declares a public route, ``scope="any"`` any authenticated caller.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeVar

import orjson
import pydantic
from aiohttp import web
from pydantic import BaseModel, ConfigDict, TypeAdapter

from aetherlens.api.context import CTX_KEY, ApiContext
from aetherlens.auth.principal import SCOPES, Principal
from aetherlens.errors import ValidationError, describe_validation_error, validation_message

Scope = Literal["read", "ingest", "write", "control", "admin", "any"] | None
RateLimit = Literal["ip", "principal", "none"]
_PATH_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


class ApiModel(BaseModel):
    """Base of request/response models: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class Call[Q, B]:
    """Everything a handler gets: validated query and body, path parameters, the caller and the context."""

    request: web.Request
    ctx: ApiContext
    principal: Principal | None
    query: Q
    body: B
    path: dict[str, str]

    @property
    def user(self) -> Principal:
        """The authenticated caller (only None on public routes)."""
        assert self.principal is not None, "route declared public but reads the principal"
        return self.principal


HandlerFn = Callable[[Call[Any, Any]], Awaitable[Any]]
F = TypeVar("F", bound=HandlerFn)


class Guard(Protocol):
    """Authenticates and rate-limits a request for a route (implemented in ``aetherlens.api.security``)."""

    async def admit(self, request: web.Request, spec: RouteSpec) -> Principal | None: ...


GUARD_KEY = web.AppKey("aetherlens_guard", Guard)


@dataclass(slots=True)
class RouteSpec:
    method: str
    path: str
    handler: HandlerFn
    scope: Scope
    summary: str
    description: str = ""
    tags: tuple[str, ...] = ()
    query: type[Any] | None = None
    body: Any = None  # a pydantic model class or any type a TypeAdapter accepts
    body_required: bool = True  # False: an empty body is allowed and arrives as None
    # Documented in OpenAPI but not parsed: for handlers that read the body themselves (ingest keeps a
    # batch's good metrics when some are bad, which one whole-body validation could not).
    body_doc: Any = None
    response: Any = None
    status: int = 200
    rate_limit: RateLimit = "principal"
    content_type: str = "application/json"  # of the success response, for the OpenAPI document
    errors: tuple[int, ...] = ()  # extra documented error statuses (404, 409, ...)
    operation_id: str = ""
    path_params: tuple[str, ...] = field(default=())
    path_patterns: dict[str, str] = field(default_factory=dict)  # name -> aiohttp regex, when given
    body_adapter: TypeAdapter[Any] | None = None
    body_doc_adapter: TypeAdapter[Any] | None = None
    response_adapter: TypeAdapter[Any] | None = None

    @property
    def public(self) -> bool:
        return self.scope is None


class RouteTable:
    def __init__(self) -> None:
        self.specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        scope: Scope,
        summary: str,
        description: str = "",
        tags: Iterable[str] = (),
        query: type[Any] | None = None,
        body: Any = None,
        body_required: bool = True,
        body_doc: Any = None,
        response: Any = None,
        status: int = 200,
        rate_limit: RateLimit | None = None,
        content_type: str = "application/json",
        errors: Iterable[int] = (),
    ) -> Callable[[F], F]:
        if scope is not None and scope != "any" and scope not in SCOPES:
            raise ValueError(f"route {method} {path}: unknown scope {scope!r}")
        if body is not None and body_doc is not None:
            raise ValueError(f"route {method} {path}: give body (parsed) or body_doc (documented), not both")
        if query is not None and not (isinstance(query, type) and issubclass(query, BaseModel)):
            raise TypeError(f"route {method} {path}: query must be a pydantic model")

        def register(fn: F) -> F:
            spec = RouteSpec(
                method=method.upper(),
                path=path,
                handler=fn,
                scope=scope,
                summary=summary,
                description=description or (fn.__doc__ or "").strip(),
                tags=tuple(tags) or (_default_tag(path),),
                query=query,
                body=body,
                body_required=body_required,
                body_doc=body_doc,
                response=response,
                status=status,
                rate_limit=rate_limit or ("none" if scope is None else "principal"),
                content_type=content_type,
                errors=tuple(errors),
                operation_id=fn.__name__,
                path_params=tuple(name for name, _ in _PATH_PARAM.findall(path)),
                path_patterns={name: regex for name, regex in _PATH_PARAM.findall(path) if regex},
                body_adapter=TypeAdapter(body) if body is not None else None,
                body_doc_adapter=TypeAdapter(body_doc) if body_doc is not None else None,
                response_adapter=TypeAdapter(response) if response is not None else None,
            )
            for existing in self.specs:
                if (existing.method, existing.path) == (spec.method, spec.path):
                    raise ValueError(f"route {method} {path} declared twice")
            self.specs.append(spec)
            return fn

        return register


def _default_tag(path: str) -> str:
    parts = [p for p in path.removeprefix("/api/v1").split("/") if p and not p.startswith("{")]
    return parts[0] if parts else "meta"


# The API's routes: every module in aetherlens.api.routes registers here at import.
API_ROUTES: Final = RouteTable()
route = API_ROUTES.route


def describe_errors(exc: pydantic.ValidationError, where: str) -> tuple[str, list[dict[str, Any]]]:
    """A readable message naming each bad field, plus the structured list for ``details``."""
    items = describe_validation_error(exc, where=where)
    return "invalid request: " + validation_message(items), list(items)


def _reject_nul(where: str, value: str) -> None:
    # PostgreSQL text cannot hold U+0000; refuse it at the edge with a clear message instead of
    # letting a query fail deep inside a handler.
    if "\x00" in value:
        raise ValidationError(
            f"'{where}' contains a NUL character, which is not allowed",
            details={"errors": [{"field": where, "type": "nul_character"}]},
        )


def _check_nul_tree(value: Any, where: str) -> None:
    if isinstance(value, str):
        _reject_nul(where, value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _reject_nul(where, k)
            _check_nul_tree(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_nul_tree(v, f"{where}.{i}")


def _parse_query(spec: RouteSpec, request: web.Request) -> Any:
    for key, value in request.query.items():
        _reject_nul(f"query.{key}", key + value)
    for key, value in request.match_info.items():
        _reject_nul(f"path.{key}", value)
    if spec.query is None:
        if request.query:
            names = ", ".join(sorted(set(request.query)))
            raise ValidationError(
                f"unknown query parameter(s): {names}",
                details={"errors": [{"field": f"query.{n}"} for n in request.query]},
            )
        return None
    model: type[BaseModel] = spec.query
    data: dict[str, Any] = {}
    for key in request.query:
        if key in data:
            continue
        values = request.query.getall(key)
        info = model.model_fields.get(key)
        is_list = info is not None and _is_list(info.annotation)
        data[key] = values if is_list else values[-1] if len(values) == 1 else values
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        message, items = describe_errors(exc, "query")
        raise ValidationError(message, details={"errors": items}) from None


def _is_list(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    if origin in (list, tuple, set, frozenset):
        return True
    return any(_is_list(a) for a in getattr(annotation, "__args__", ()) if a is not type(None))


async def _parse_body(spec: RouteSpec, request: web.Request) -> Any:
    if spec.body_adapter is None:
        return None
    raw = await request.read()  # aiohttp enforces client_max_size (api.max_body_bytes) -> 413
    if not raw:
        if not spec.body_required:
            return None
        raise ValidationError("request body is required (JSON)", details={"errors": [{"field": "body"}]})
    if b"\\u0000" in raw:  # only then can a decoded string hold NUL: find and name it
        with contextlib.suppress(orjson.JSONDecodeError):  # malformed JSON is reported precisely below
            _check_nul_tree(orjson.loads(raw), "body")
    try:
        # JSON-mode strict: "5" is not an int and 1 is not a string, while ISO strings still become
        # datetimes/UUIDs as the schema says.
        return spec.body_adapter.validate_json(raw, strict=True)
    except pydantic.ValidationError as exc:
        items = describe_validation_error(exc, where="body")
        bad_json = [i for i in items if i["type"] == "json_invalid"]
        if bad_json:
            raise ValidationError(
                f"request body is {bad_json[0]['message']}",
                details={"errors": [{"field": "body", "type": "json_invalid"}]},
            ) from None
        raise ValidationError(
            "invalid request: " + validation_message(items), details={"errors": items}
        ) from None


def serialize(spec: RouteSpec, value: Any) -> web.StreamResponse:
    if isinstance(value, web.StreamResponse):
        return value
    if spec.status == 204 or (value is None and spec.response_adapter is None):
        return web.Response(status=204)
    adapter = spec.response_adapter
    if adapter is None:
        body = orjson.dumps(value)
    else:
        if not isinstance(value, BaseModel) or not isinstance(value, spec.response):
            value = adapter.validate_python(value)
        body = adapter.dump_json(value)
    return web.Response(status=spec.status, body=body, content_type="application/json")


def make_handler(spec: RouteSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        principal = await request.app[GUARD_KEY].admit(request, spec)
        query = _parse_query(spec, request)
        body = await _parse_body(spec, request)
        call: Call[Any, Any] = Call(
            request=request,
            ctx=request.app[CTX_KEY],
            principal=principal,
            query=query,
            body=body,
            path=dict(request.match_info),
        )
        return serialize(spec, await spec.handler(call))

    handle.__name__ = spec.operation_id
    return handle
