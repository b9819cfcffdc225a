"""The WebSocket stream ``/api/v1/stream``: authentication, subscriptions, and a sender per socket that
drains that client's queue of the hub (``aetherlens.api.stream``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from aetherlens.api.context import CTX_KEY
from aetherlens.api.security import PRINCIPAL_KEY, SECURITY_KEY
from aetherlens.api.stream import (
    AUTH_TIMEOUT,
    CLOSE_BAD_MESSAGE,
    CLOSE_SLOW_CONSUMER,
    CLOSE_UNAUTHORIZED,
    TOPICS,
    StreamHub,
    _Client,
)
from aetherlens.auth.principal import Principal
from aetherlens.errors import AuthenticationError

__all__ = ["CLOSE_BAD_MESSAGE", "CLOSE_SLOW_CONSUMER", "CLOSE_UNAUTHORIZED", "StreamHub", "stream_handler"]

log = logging.getLogger("aetherlens.api.stream")


async def _sender(ws: web.WebSocketResponse, client: _Client) -> None:
    while True:
        payload = await client.queue.get()
        if payload is None:
            code = CLOSE_SLOW_CONSUMER if client.dropped else 1001
            message = b"consumer too slow" if client.dropped else b"server shutting down"
            await ws.close(code=code, message=message)
            return
        await ws.send_str(payload.decode())


async def stream_handler(request: web.Request) -> web.StreamResponse:
    hub = request.app[CTX_KEY].stream
    security = request.app[SECURITY_KEY]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)

    principal = await _authenticate(ws, security)
    if principal is None:
        return ws
    request[PRINCIPAL_KEY] = principal
    await ws.send_json({"type": "auth_ok"})

    client = hub._add()
    sender = asyncio.create_task(_sender(ws, client))
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                await ws.send_json({"type": "error", "message": "messages must be JSON"})
                continue
            if isinstance(data, dict) and data.get("type") == "subscribe":
                topics = data.get("topics")
                if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
                    await ws.send_json({"type": "error", "message": "'topics' must be a list of strings"})
                    continue
                unknown = [t for t in topics if t not in TOPICS]
                if unknown:
                    await ws.send_json(
                        {
                            "type": "error",
                            "message": f"unknown topic(s): {', '.join(unknown)}; known: {', '.join(TOPICS)}",
                        }
                    )
                    continue
                client.topics.update(topics)
                await ws.send_json({"type": "subscribed", "topics": sorted(client.topics)})
            elif (
                isinstance(data, dict)
                and data.get("type") == "unsubscribe"
                and isinstance(data.get("topics"), list)
            ):
                client.topics.difference_update(t for t in data["topics"] if isinstance(t, str))
                await ws.send_json({"type": "subscribed", "topics": sorted(client.topics)})
            else:
                await ws.send_json(
                    {"type": "error", "message": "expected {'type': 'subscribe', 'topics': [...]}"}
                )
    finally:
        hub._remove(client)
        if not sender.done():
            sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await sender
    return ws


async def _authenticate(ws: web.WebSocketResponse, security: Any) -> Principal | None:
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT)
    except TimeoutError:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"authenticate first")
        return None
    token = None
    if msg.type == WSMsgType.TEXT:
        with contextlib.suppress(orjson.JSONDecodeError):
            data = orjson.loads(msg.data)
            if isinstance(data, dict) and data.get("type") == "auth" and isinstance(data.get("token"), str):
                token = data["token"]
    if token is None:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"first message must be {type: auth, token}")
        return None
    try:
        principal: Principal = security.store.authenticate(token)
    except AuthenticationError:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"invalid token")
        return None
    if not principal.allows("read"):
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"the token lacks the 'read' scope")
        return None
    return principal
