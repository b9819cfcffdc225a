"""Plugin routes: GET /plugins, GET /plugins/{id}, POST /plugins/{id}/restart, PUT /plugins/{id}/config.

Status comes from the running supervisor when there is one (live), else from the ``plugins`` table (the
supervisor's last persisted report). Secrets are stored Fernet-encrypted (aetherlens.plugin_secrets)
and never appear in an answer: only their names do, with the value shown as ``********``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aetherlens import plugin_secrets as box
from aetherlens.api.context import ApiContext
from aetherlens.api.routing import Call, route
from aetherlens.api.schemas.plugins import PluginConfigIn, PluginDetail, PluginList, PluginOut
from aetherlens.db.queries import plugins as q
from aetherlens.errors import NotFoundError, ValidationError


def _from_row(row: q.PluginRow) -> dict[str, Any]:
    status = dict(row.status) if isinstance(row.status, Mapping) else {}
    status.pop("config", None)
    return {**status, "id": row.id, "enabled": row.enabled}


def _instances(ctx: ApiContext) -> Mapping[str, Any]:
    """Plugin instance id -> the discovered plugin it runs (``plugins.<instance>.plugin``)."""
    found: Mapping[str, Any] = getattr(ctx.supervisor, "instances", None) or {}
    return found


def _schema(ctx: ApiContext, plugin_id: str) -> Mapping[str, Any] | None:
    plugin = _instances(ctx).get(plugin_id)
    manifest = getattr(plugin, "manifest", None)
    schema: Mapping[str, Any] | None = getattr(manifest, "config_schema", None)
    return schema


async def _status(ctx: ApiContext, plugin_id: str) -> dict[str, Any]:
    supervisor = ctx.supervisor
    status_of = getattr(supervisor, "status_of", None)
    if status_of is not None:
        try:
            return dict(status_of(plugin_id))
        except NotFoundError:
            pass
    row = await q.get_plugin(ctx.pool, plugin_id)
    if row is None:
        raise NotFoundError(f"plugin {plugin_id!r} not found", details={"plugin_id": plugin_id})
    return _from_row(row)


async def _detail(ctx: ApiContext, plugin_id: str) -> dict[str, Any]:
    status = await _status(ctx, plugin_id)
    row = await q.get_plugin(ctx.pool, plugin_id)
    names: list[str] = []
    plain: dict[str, Any] = {}
    if row is not None:
        plain = row.config
        names = sorted(box.decrypt(ctx.settings, await q.secrets_blob(ctx.pool, plugin_id)))
    return {**status, "config": box.merge(plain, dict.fromkeys(names, box.REDACTED)), "secrets": names}


@route("GET", "/api/v1/plugins", scope="read", response=PluginList, summary="Plugins and their health")
async def list_plugins(call: Call[None, None]) -> dict[str, Any]:
    supervisor = call.ctx.supervisor
    if supervisor is not None:
        return {"items": [dict(item) for item in supervisor.status()]}
    return {"items": [_from_row(row) for row in await q.list_plugins(call.ctx.pool)]}


@route(
    "GET", "/api/v1/plugins/{id}", scope="read", response=PluginDetail, errors=(404,), summary="One plugin"
)
async def get_plugin(call: Call[None, None]) -> dict[str, Any]:
    return await _detail(call.ctx, call.path["id"])


@route(
    "POST",
    "/api/v1/plugins/{id}/restart",
    scope="admin",
    response=PluginOut,
    status=202,
    errors=(404,),
    summary="Restart a plugin's process",
    description="Without a supervisor in this process, the request goes to the one listening on the database",
)
async def restart_plugin(call: Call[None, None]) -> dict[str, Any]:
    plugin_id = call.path["id"]
    status = await _status(call.ctx, plugin_id)  # 404 for an unknown plugin
    supervisor = call.ctx.supervisor
    if supervisor is not None:
        await supervisor.restart(plugin_id)
        return await _status(call.ctx, plugin_id)
    await q.request_restart(call.ctx.pool, plugin_id)
    return status


@route(
    "PUT",
    "/api/v1/plugins/{id}/config",
    scope="admin",
    body=PluginConfigIn,
    response=PluginDetail,
    errors=(404,),
    summary="Replace a plugin's config (secrets encrypted at rest, never echoed)",
)
async def put_plugin_config(call: Call[None, PluginConfigIn]) -> dict[str, Any]:
    ctx, plugin_id, body = call.ctx, call.path["id"], call.body
    await _status(ctx, plugin_id)  # 404 for an unknown plugin
    plain, secrets = box.split(body.config, _schema(ctx, plugin_id))
    stored = box.decrypt(ctx.settings, await q.secrets_blob(ctx.pool, plugin_id))
    for key, value in secrets.items():
        if value == box.REDACTED:  # the client sent back what GET showed: keep the stored secret
            if key not in stored:
                raise ValidationError(
                    f"config key '{key}' is {box.REDACTED} but no secret is stored for it; send the value",
                    details={"field": f"body.config.{key}"},
                )
            secrets[key] = stored[key]
    supervisor = ctx.supervisor
    discovered = _instances(ctx)
    check_config = getattr(supervisor, "check_config", None)
    if check_config is not None and plugin_id in discovered:
        # Always against the manifest, also while the plugin is (or is being) disabled: what is stored now
        # is what it starts with when enabled, so a key its schema forbids is a 400 here, not a refusal later.
        check_config(plugin_id, box.merge(plain, secrets))
    if supervisor is not None and plugin_id in discovered:
        if body.enabled is False:
            unload = getattr(supervisor, "unload", None)
            if unload is not None:
                await unload(plugin_id)
        else:
            # Validates against the manifest first: a bad config is a 400 and leaves the running plugin alone.
            await supervisor.reconfigure(plugin_id, box.merge(plain, secrets))
    await q.set_plugin_config(
        ctx.pool, plugin_id, config=plain, secrets=box.encrypt(ctx.settings, secrets), enabled=body.enabled
    )
    return await _detail(ctx, plugin_id)
