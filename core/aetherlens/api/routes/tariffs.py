"""Tariff routes: GET/POST /tariffs, GET/PUT/DELETE /tariffs/{id}, POST /tariffs/import (OpenEI URDB).

Tariff definitions are validated by the cost engine's model (aetherlens.costs.tariff), whose TariffError
names the bad field; the body is taken as a JSON object here and handed over whole so that there is one
validator, not two that could disagree.
"""

from __future__ import annotations

from typing import Any

from aetherlens.api.routing import Call, route
from aetherlens.api.schemas.costs import ImportQuery, TariffId, TariffList, TariffOut
from aetherlens.costs import service

_DEFINITION_HELP = (
    "A tariff in the format of docs/TARIFFS.md (the same document `import-tariff` reads as YAML)."
)


# Declared before /tariffs/{id} so the literal path is matched first.
@route(
    "POST",
    "/api/v1/tariffs/import",
    scope="write",
    query=ImportQuery,
    body=Any,
    response=TariffId,
    status=201,
    summary="Import an OpenEI URDB rate",
    description=(
        'Body: a URDB rate object, a list of them, or an API answer `{"items": [...]}` (`label` picks one). '
        "URDB has no time zone or holidays: `timezone` (default site.timezone) and `holidays` give them."
    ),
)
async def import_tariff(call: Call[ImportQuery, Any]) -> dict[str, Any]:
    q = call.query
    tariff_id = await service.import_urdb(
        call.ctx.pool,
        call.body,
        q.timezone or call.ctx.settings.site.timezone,
        q.holidays,
        q.label,
        name=q.name,
    )
    return {"id": tariff_id}


@route("GET", "/api/v1/tariffs", scope="read", response=TariffList, summary="List stored tariffs")
async def list_tariffs(call: Call[None, None]) -> dict[str, Any]:
    return {"items": await service.list_tariffs(call.ctx.pool)}


@route(
    "POST",
    "/api/v1/tariffs",
    scope="write",
    body=dict[str, Any],
    response=TariffOut,
    status=201,
    errors=(409,),
    summary="Store a tariff",
    description=_DEFINITION_HELP + " The first tariff stored becomes the active one.",
)
async def create_tariff(call: Call[None, dict[str, Any]]) -> dict[str, Any]:
    tariff_id = await service.create_tariff(call.ctx.pool, call.body)
    return await service.get_tariff(call.ctx.pool, tariff_id)


@route("GET", "/api/v1/tariffs/{id}", scope="read", response=TariffOut, errors=(404,), summary="One tariff")
async def get_tariff(call: Call[None, None]) -> dict[str, Any]:
    return await service.get_tariff(call.ctx.pool, call.path["id"])


@route(
    "PUT",
    "/api/v1/tariffs/{id}",
    scope="write",
    body=dict[str, Any],
    response=TariffOut,
    errors=(404,),
    summary="Replace a tariff's definition",
    description=_DEFINITION_HELP,
)
async def replace_tariff(call: Call[None, dict[str, Any]]) -> dict[str, Any]:
    return await service.update_tariff(call.ctx.pool, call.path["id"], call.body)


@route("DELETE", "/api/v1/tariffs/{id}", scope="write", status=204, errors=(404,), summary="Delete a tariff")
async def delete_tariff(call: Call[None, None]) -> None:
    await service.delete_tariff(call.ctx.pool, call.path["id"])
