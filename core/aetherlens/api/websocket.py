"""The WebSocket stream ``/api/v1/stream``: authentication, subscriptions, and a sender per socket that
drains that client's queue of the hub (``aetherlens.api.stream``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import orjson
from aiohttp import WSMsgType, web

from aetherlens.api.context import CTX_KEY
from aetherlens.api.security import PRINCIPAL_KEY, SECURITY_KEY, Security
from aetherlens.api.stream import (
    AUTH_TIMEOUT,
    CLOSE_BAD_MESSAGE,
    CLOSE_GOING_AWAY,
    CLOSE_RATE_LIMITED,
    CLOSE_SLOW_CONSUMER,
    CLOSE_UNAUTHORIZED,
    TOPICS,
    StreamClient,
    StreamHub,
)
from aetherlens.auth.principal import Principal
from aetherlens.auth.store import CredentialStore
from aetherlens.errors import AuthenticationError

__all__ = [
    "CLOSE_BAD_MESSAGE",
    "CLOSE_RATE_LIMITED",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_UNAUTHORIZED",
    "StreamHub",
    "stream_handler",
]

log = logging.getLogger("aetherlens.api.stream")
CLOSE_TIMEOUT = 10.0  # seconds the closing handshake may take


async def _sender(ws: web.WebSocketResponse, client: StreamClient) -> None:
    """Drain the client's queue into the socket; returns at the sentinel (the handler then closes)."""
    while True:
        item = await client.queue.get()
        if item is None:
            return
        # A write batch is one queue item but, by contract, one message per metric.
        for payload in item if isinstance(item, tuple) else (item,):
            if client.closing:  # revoked (or dropped) while this batch was being sent
                break
            await ws.send_str(payload.decode())


async def _reader(ws: web.WebSocketResponse, client: StreamClient) -> None:
    """Handle the client's messages (subscribe/unsubscribe) until it closes."""
    async for msg in ws:
        if msg.type != WSMsgType.TEXT or client.closing:
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


def _watch_credential(
    client: StreamClient, principal: Principal, store: CredentialStore
) -> Callable[[], None]:
    """Close the socket with 4401 as soon as its credential stops being valid: revoked (API key deleted,
    session logged out, password changed, user deleted: the store notifies every change, its own and
    other processes' via NOTIFY) or expired (JWT ``exp``, key ``expires_at``: a timer). Returns the
    function that stops watching."""
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None

    def check() -> None:
        nonlocal timer
        if client.closing:
            return
        if not store.is_current(principal):
            client.close(CLOSE_UNAUTHORIZED, "credential revoked or expired")
            return
        if principal.expires_at is not None and timer is None:

            def expire() -> None:
                nonlocal timer
                timer = None
                check()  # re-arms itself if the clock has not quite reached the expiry yet

            timer = loop.call_later(max(0.0, principal.expires_at - time.time()), expire)

    store.add_listener(check)
    check()

    def stop() -> None:
        store.remove_listener(check)
        if timer is not None:
            timer.cancel()

    return stop


async def stream_handler(request: web.Request) -> web.StreamResponse:
    hub = request.app[CTX_KEY].stream
    security = request.app[SECURITY_KEY]
    # Before the upgrade: an address over its failed-auth budget, or with too many sockets still
    # waiting to authenticate, gets a 429 envelope and no socket.
    with security.stream_admission(request):
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        principal = await _authenticate(ws, request, security)
    if principal is None:
        return ws
    request[PRINCIPAL_KEY] = principal
    await ws.send_json({"type": "auth_ok"})

    client = hub.add()
    unwatch = _watch_credential(client, principal, security.store)
    sender = asyncio.create_task(_sender(ws, client))
    reader = asyncio.create_task(_reader(ws, client))
    closing = asyncio.create_task(client.closed.wait())
    try:
        await asyncio.wait({sender, reader, closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        unwatch()
        hub.remove(client)
        # Both tasks end before the close: ws.close() then reads the client's closing reply itself
        # (with a receive still pending in the reader, aiohttp would drop the connection without
        # waiting for it, and the client could see 1006 instead of our code).
        tasks = (sender, reader, closing)
        for task in tasks:
            task.cancel()
        for task in tasks:
            # A send to a vanished client fails with a ConnectionError: the socket is going anyway.
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        code = client.close_code if client.close_code is not None else CLOSE_GOING_AWAY
        # Bounded: a client that does not read never lets the close frame drain; then the connection
        # is dropped (aiohttp closes the transport when the close is cancelled).
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(
                ws.close(code=code, message=client.close_reason.encode()[:120]), timeout=CLOSE_TIMEOUT
            )
    return ws


async def _authenticate(
    ws: web.WebSocketResponse, request: web.Request, security: Security
) -> Principal | None:
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
        security.failed_stream_auth(request)
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"first message must be {type: auth, token}")
        return None
    if security.ip_wait(request) > 0:
        # Budget spent (by this address's other sockets meanwhile): the token is not even looked at,
        # as an HTTP login over the limit is not.
        await ws.close(code=CLOSE_RATE_LIMITED, message=b"too many failed attempts from this address")
        return None
    try:
        principal = security.store.authenticate(token)
    except AuthenticationError:
        security.failed_stream_auth(request)
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"invalid token")
        return None
    if not principal.allows("read"):
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"the token lacks the 'read' scope")
        return None
    return principal
