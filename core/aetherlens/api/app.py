"""The aiohttp application factory: middlewares, the credential store, every declared route, the
OpenAPI document, the docs page and the WebSocket stream."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from aiohttp import web

from aetherlens.api import routes as routes_package
from aetherlens.api.context import CTX_KEY, ApiContext
from aetherlens.api.errors import error_middleware
from aetherlens.api.observe import make_observe_middleware
from aetherlens.api.openapi import OPENAPI_KEY, SPECS_KEY, build_document
from aetherlens.api.routing import API_ROUTES, GUARD_KEY, RouteTable, make_handler
from aetherlens.api.security import AUTH_SERVICE_KEY, SECURITY_KEY, STORE_KEY, Security
from aetherlens.api.websocket import stream_handler
from aetherlens.auth.keys import signing_secret
from aetherlens.auth.service import AuthService
from aetherlens.auth.store import CredentialStore


def load_route_modules() -> None:
    """Import every module of ``aetherlens.api.routes`` so its ``@route`` declarations register."""
    for info in sorted(pkgutil.iter_modules(routes_package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{routes_package.__name__}.{info.name}")


def create_app(ctx: ApiContext, *, extra_routes: Iterable[RouteTable] = ()) -> web.Application:
    settings = ctx.settings
    load_route_modules()
    app = web.Application(
        client_max_size=settings.api.max_body_bytes,
        middlewares=[make_observe_middleware(settings.api.cors_origins), error_middleware],
    )
    store = CredentialStore(ctx.pool, signing_secret(settings))
    security = Security(settings, store)
    app[CTX_KEY] = ctx
    app[STORE_KEY] = store
    app[SECURITY_KEY] = security
    app[GUARD_KEY] = security
    app[AUTH_SERVICE_KEY] = AuthService(ctx.pool, store, settings)

    specs = [*API_ROUTES.specs, *(s for table in extra_routes for s in table.specs)]
    for spec in specs:
        app.router.add_route(spec.method, spec.path, make_handler(spec), name=spec.operation_id)
    app[SPECS_KEY] = specs
    app[OPENAPI_KEY] = build_document(specs, version=ctx.version)
    app.router.add_get("/api/v1/stream", stream_handler, name="stream")

    async def start_store(app: web.Application) -> None:
        await store.start()

    async def stop(app: web.Application) -> None:
        await ctx.stream.close()
        await store.stop()

    app.on_startup.append(start_store)
    app.on_cleanup.append(stop)
    return app
