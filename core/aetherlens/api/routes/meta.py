"""The API describing itself: GET /api/v1/openapi.json and the docs page (served locally, no CDN)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from aetherlens.api.observe import DOCS_CSP
from aetherlens.api.openapi import OPENAPI_KEY
from aetherlens.api.routing import Call, route

_STATIC = resources.files("aetherlens.api") / "static"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


@route(
    "GET",
    "/api/v1/openapi.json",
    scope=None,
    summary="This OpenAPI 3.1 document",
    tags=["meta"],
    content_type="application/json",
)
async def get_openapi(call: Call[None, None]) -> web.StreamResponse:
    return web.json_response(call.request.app[OPENAPI_KEY])


def _static(name: str) -> web.Response:
    data = (_STATIC / name).read_bytes()
    suffix = name[name.rindex(".") :]
    response = web.Response(body=data, content_type=_TYPES[suffix], charset="utf-8")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["Cache-Control"] = "no-cache"
    return response


@route(
    "GET",
    "/api/v1/docs",
    scope=None,
    summary="Human-readable API reference",
    tags=["meta"],
    content_type="text/html",
)
async def get_docs(call: Call[None, None]) -> web.StreamResponse:
    return _static("docs.html")


@route(
    "GET",
    "/api/v1/docs/docs.js",
    scope=None,
    summary="Docs page script",
    tags=["meta"],
    content_type="text/javascript",
)
async def get_docs_script(call: Call[None, None]) -> web.StreamResponse:
    return _static("docs.js")


@route(
    "GET",
    "/api/v1/docs/docs.css",
    scope=None,
    summary="Docs page style",
    tags=["meta"],
    content_type="text/css",
)
async def get_docs_style(call: Call[None, None]) -> web.StreamResponse:
    return _static("docs.css")
