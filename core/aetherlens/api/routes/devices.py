"""Device registry routes: GET/POST /devices, GET/PATCH/DELETE /devices/{id}, POST /devices/{id}/control."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aetherlens.api.context import ApiContext
from aetherlens.api.routing import Call, route
from aetherlens.api.schemas.devices import (
    ControlRequest,
    ControlResult,
    DeviceCreate,
    DeviceList,
    DeviceOut,
    DevicePatch,
)
from aetherlens.collect.registry import DeviceRegistry
from aetherlens.errors import ConflictError, NotFoundError, PluginError


class NotControllableError(ConflictError):
    code = "not_controllable"


def _registry(ctx: ApiContext) -> DeviceRegistry:
    """The collector's registry, so a change here reaches ingest at once (a deleted device's metrics are
    refused or re-register it); an app without a collector has no id cache to keep in step."""
    registry = getattr(ctx.collector, "registry", None)
    if isinstance(registry, DeviceRegistry):
        return registry
    return DeviceRegistry(ctx.pool, auto_register=ctx.settings.collector.auto_register_devices)


@route("GET", "/api/v1/devices", scope="read", response=DeviceList, summary="List devices")
async def list_devices(call: Call[None, None]) -> dict[str, Any]:
    return {"items": [d.as_dict() for d in await _registry(call.ctx).list_all()]}


@route(
    "POST",
    "/api/v1/devices",
    scope="write",
    body=DeviceCreate,
    response=DeviceOut,
    status=201,
    errors=(409,),
    summary="Register a device",
)
async def create_device(call: Call[None, DeviceCreate]) -> dict[str, Any]:
    body = call.body
    device = await _registry(call.ctx).create(
        device_id=body.id,
        name=body.name,
        type=body.type,
        room=body.room,
        source=body.source if body.source is not None else "api",
        tags=body.tags,
    )
    return device.as_dict()


@route("GET", "/api/v1/devices/{id}", scope="read", response=DeviceOut, errors=(404,), summary="One device")
async def get_device(call: Call[None, None]) -> dict[str, Any]:
    return (await _registry(call.ctx).get(call.path["id"])).as_dict()


@route(
    "PATCH",
    "/api/v1/devices/{id}",
    scope="write",
    body=DevicePatch,
    response=DeviceOut,
    errors=(404,),
    summary="Change some fields of a device",
)
async def patch_device(call: Call[None, DevicePatch]) -> dict[str, Any]:
    changes = {name: getattr(call.body, name) for name in call.body.model_fields_set}
    device = await _registry(call.ctx).update(call.path["id"], changes)
    return device.as_dict()


@route("DELETE", "/api/v1/devices/{id}", scope="write", status=204, errors=(404,), summary="Remove a device")
async def delete_device(call: Call[None, None]) -> None:
    await _registry(call.ctx).delete(call.path["id"])


@route(
    "POST",
    "/api/v1/devices/{id}/control",
    scope="control",
    body=ControlRequest,
    response=ControlResult,
    errors=(404, 409),
    summary="Switch a device on or off",
    description=(
        "Asks the plugin named by the device's `source` to switch it; 409 `not_controllable` when no "
        "running plugin with device control can."
    ),
)
async def control_device(call: Call[None, ControlRequest]) -> dict[str, Any]:
    device_id = call.path["id"]
    # 404 before 409: an unknown device is not an "uncontrollable" one.
    device = await _registry(call.ctx).get(device_id)
    plugin_id = device.source
    supervisor = call.ctx.supervisor
    control = getattr(supervisor, "control_device", None)
    status_of = getattr(supervisor, "status_of", None)
    if control is None or status_of is None or not plugin_id:
        raise NotControllableError(
            f"device {device_id!r} cannot be switched: no plugin offers control for it",
            details={"device_id": device_id},
        )
    try:
        status = status_of(plugin_id)
    except NotFoundError:
        status = {}
    if "device.control" not in (status.get("capabilities") or ()):
        raise NotControllableError(
            f"device {device_id!r} cannot be switched: its source {plugin_id!r} is not a plugin with "
            "device control",
            details={"device_id": device_id, "plugin": plugin_id},
        )
    try:
        result = await control(plugin_id, device_id, call.body.action)
    except PluginError as exc:  # not running, refused, timed out: the switch did not happen
        raise NotControllableError(
            f"device {device_id!r} cannot be switched now: {exc.message}",
            details={"device_id": device_id, "plugin": plugin_id},
        ) from None
    state = result.get("state") if isinstance(result, Mapping) else None
    if state is None:
        raise PluginError(
            f"plugin {plugin_id!r} answered the control request without a state",
            details={"plugin": plugin_id},
        )
    return {"state": str(state)}
