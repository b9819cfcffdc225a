"""WebSocket /api/v1/stream and credentials: a revoked key, a logged-out session or an expired token loses
its socket at once (close 4401); stream logins spend the per-IP budget of HTTP logins, and sockets still
waiting to authenticate are capped per IP."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from aetherlens.api.security import STORE_KEY
from aetherlens.api.stream import CLOSE_RATE_LIMITED, CLOSE_UNAUTHORIZED
from aetherlens.auth import queries as q
from aetherlens.auth.tokens import decode_access_token, issue_access_token

from .conftest import Api, MakeApi

METRIC = {"time": "2026-01-01T00:00:00+00:00", "device_id": "p1", "metric_type": "power", "value": 1.0}


async def _receive_json(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await ws.receive(timeout=20)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msg.json()


async def _subscribed(api: Api, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await api.client.ws_connect("/api/v1/stream")
    await ws.send_json({"type": "auth", "token": token})
    assert await _receive_json(ws) == {"type": "auth_ok"}
    await ws.send_json({"type": "subscribe", "topics": ["metrics"]})
    assert (await _receive_json(ws))["type"] == "subscribed"
    return ws


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Wait (bounded) for the server to close the socket; fail on any event delivered meanwhile."""
    msg = await ws.receive(timeout=20)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
    return ws.close_code


async def _still_open(api: Api, ws: aiohttp.ClientWebSocketResponse) -> None:
    api.ctx.stream.publish("metrics", METRIC)
    assert await _receive_json(ws) == {"type": "metric", "data": METRIC}


async def test_deleting_an_api_key_closes_its_stream(make_api: MakeApi) -> None:
    api = await make_api()
    admin = await api.headers("admin")
    doomed = await api.auth.create_key("doomed", ["read"])
    ws = await _subscribed(api, doomed.key)
    other = await _subscribed(api, await api.key(["read"], name="other"))

    resp = await api.client.delete(f"/api/v1/auth/api-keys/{doomed.id}", headers=admin)
    assert resp.status == 204
    assert await _closed(ws) == CLOSE_UNAUTHORIZED
    await _still_open(api, other)  # only the revoked credential's socket goes


async def test_a_key_revoked_by_another_process_closes_its_stream(make_api: MakeApi) -> None:
    # The CLI revokes in the database; this core learns of it through NOTIFY aetherlens_auth.
    api = await make_api()
    doomed = await api.auth.create_key("doomed", ["read"])
    ws = await _subscribed(api, doomed.key)
    assert await q.revoke_key(api.pool, doomed.id)
    assert await _closed(ws) == CLOSE_UNAUTHORIZED


async def test_logout_closes_the_sessions_stream(make_api: MakeApi) -> None:
    api = await make_api()
    await api.auth.create_user("vera", "viewer", "vera-password-123")
    tokens = await api.login("vera", "vera-password-123")
    ws = await _subscribed(api, tokens["access_token"])
    admin_ws = await _subscribed(api, await api.token("admin"))  # another session of another user

    resp = await api.client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert resp.status == 204
    assert await _closed(ws) == CLOSE_UNAUTHORIZED
    await _still_open(api, admin_ws)


async def test_password_change_closes_the_users_streams(make_api: MakeApi) -> None:
    api = await make_api()
    await api.auth.create_user("vera", "viewer", "vera-password-123")
    tokens = await api.login("vera", "vera-password-123")
    ws = await _subscribed(api, tokens["access_token"])
    await api.auth.update_user("vera", role=None, password="a-new-password-456")
    assert await _closed(ws) == CLOSE_UNAUTHORIZED


async def test_an_expiring_access_token_loses_its_stream(make_api: MakeApi) -> None:
    # A token of a live session that expires a few seconds from now: the socket opens, then closes
    # when `exp` passes, without any credential change to trigger it.
    api = await make_api()
    store = api.app[STORE_KEY]
    claims = decode_access_token(store.secret, (await api.login())["access_token"])
    ttl = 60  # the shortest auth.access_token_ttl allowed; issued so that 6 s of it remain
    short = issue_access_token(
        store.secret,
        user_id=claims.user_id,
        user_name=claims.user_name,
        session_id=claims.session_id,
        ttl=ttl,
        now=time.time() - ttl + 6,
    )
    ws = await _subscribed(api, short)
    assert await _closed(ws) == CLOSE_UNAUTHORIZED


async def test_failed_stream_logins_spend_the_per_ip_budget(make_api: MakeApi) -> None:
    api = await make_api(api={"rate_limit": {"login_per_minute": 3}})
    good = await api.key(["read"])
    for _ in range(3):
        ws = await api.client.ws_connect("/api/v1/stream")
        await ws.send_json({"type": "auth", "token": "al_00000000_" + "x" * 43})
        assert await _closed(ws) == CLOSE_UNAUTHORIZED
        await ws.close()

    # The budget is spent: the next stream connection is refused before the upgrade ...
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.client.ws_connect("/api/v1/stream")
    assert refused.value.status == 429
    resp = await api.client.get("/api/v1/stream")
    assert resp.status == 429 and "Retry-After" in resp.headers
    assert (await resp.json())["error"]["code"] == "rate_limited"
    # ... and it is the same budget HTTP uses: a bad bearer token now gets 429, not 401.
    resp = await api.client.get("/api/v1/devices", headers={"Authorization": "Bearer nope"})
    assert resp.status == 429
    # Good credentials over HTTP are unaffected (failures are what is counted).
    resp = await api.client.get("/api/v1/devices", headers={"Authorization": f"Bearer {good}"})
    assert resp.status == 200


async def test_a_pending_socket_over_the_budget_is_not_evaluated(make_api: MakeApi) -> None:
    # Sockets opened while budget remained: once it is spent, their auth messages are refused (4429)
    # without looking at the token, so parallel sockets cannot multiply the guesses.
    api = await make_api(api={"rate_limit": {"login_per_minute": 1}})
    good = await api.key(["read"])
    first = await api.client.ws_connect("/api/v1/stream")
    second = await api.client.ws_connect("/api/v1/stream")
    await first.send_json({"type": "auth", "token": "wrong"})
    assert await _closed(first) == CLOSE_UNAUTHORIZED
    await second.send_json({"type": "auth", "token": good})
    assert await _closed(second) == CLOSE_RATE_LIMITED


async def test_unauthenticated_sockets_are_capped_per_ip(make_api: MakeApi) -> None:
    api = await make_api(api={"rate_limit": {"stream_pending_per_ip": 2}})
    token = await api.key(["read"])
    waiting = [await api.client.ws_connect("/api/v1/stream") for _ in range(2)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.client.ws_connect("/api/v1/stream")
    assert refused.value.status == 429

    # Authenticating one frees its place.
    await waiting[0].send_json({"type": "auth", "token": token})
    assert await _receive_json(waiting[0]) == {"type": "auth_ok"}
    third = await api.client.ws_connect("/api/v1/stream")
    await third.send_json({"type": "auth", "token": token})
    assert await _receive_json(third) == {"type": "auth_ok"}
    for ws in (*waiting, third):
        await ws.close()
