"""The Home Assistant WebSocket API over aiohttp: connect, authenticate, commands, subscriptions.

One ``Connection`` is one authenticated WebSocket. A reader task routes answers to the command that
asked (by ``id``) and subscription events to a queue; when the socket closes, every waiter gets
``Disconnected``. Where HA is reached (a URL + token, or the Supervisor proxy inside the add-on) is an
``Endpoint``; the token is never logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp

log = logging.getLogger(__name__)

SUPERVISOR_API: Final = "http://supervisor/core/api"
SUPERVISOR_WS: Final = "ws://supervisor/core/websocket"
COMMAND_TIMEOUT: Final = 60.0  # a month of history for many entities can take a while to serialise
MAX_MESSAGE: Final = 64 * 1024 * 1024  # HA answers history and registries in one message
# An entity id no integration creates: asking the history stream for it costs HA an empty lookup.
RECORDER_BARRIER_ENTITY: Final = "sensor.aetherlens_recorder_barrier"


class HAError(Exception):
    """Talking to Home Assistant failed; the message says what, never the token."""


class Disconnected(HAError):
    """The WebSocket closed (HA restarting, the proxy answering 502, the network)."""


class AuthFailed(HAError):
    """HA refused the token."""


class CommandFailed(HAError):
    def __init__(self, command: str, code: str, message: str) -> None:
        super().__init__(f"{command} failed: {code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Endpoint:
    """Where HA is: REST base (``.../api``), WebSocket URL, token, and which mode chose them."""

    api_url: str
    ws_url: str
    token: str = field(repr=False)
    mode: str  # "url" or "supervisor"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Endpoint:
        """``url`` + ``token`` from the config, or with both omitted the Supervisor proxy with
        ``SUPERVISOR_TOKEN``. ``supervisor_api_url`` / ``supervisor_ws_url`` move the proxy (tests)."""
        env = os.environ if env is None else env
        url = str(config.get("url") or "").rstrip("/")
        token = str(config.get("token") or "")
        if url or token:
            if not (url and token):
                missing = "token" if url else "url"
                raise HAError(f"'{missing}' is required when '{'url' if url else 'token'}' is set")
            scheme, rest = url.split("://", 1)
            ws = f"{'wss' if scheme == 'https' else 'ws'}://{rest}"
            return cls(f"{url}/api", f"{ws}/api/websocket", token, "url")
        supervisor_token = env.get("SUPERVISOR_TOKEN", "")
        if not supervisor_token:
            raise HAError(
                "no 'url' and 'token' configured and SUPERVISOR_TOKEN is not set "
                "(outside the add-on, set url and token)"
            )
        return cls(
            str(config.get("supervisor_api_url") or SUPERVISOR_API).rstrip("/"),
            str(config.get("supervisor_ws_url") or SUPERVISOR_WS),
            supervisor_token,
            "supervisor",
        )

    @property
    def where(self) -> str:
        """For logs and health: the address without the token."""
        return self.ws_url if self.mode == "url" else f"Supervisor proxy ({self.ws_url})"


class Connection:
    """One authenticated WebSocket to HA. Use ``async with await Connection.open(...)``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, ha_version: str) -> None:
        self._ws = ws
        self.ha_version = ha_version
        self._ids = itertools.count(1)
        self.last_id = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        # Subscriptions whose events one caller consumes itself (not the main event stream).
        self._listeners: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read(), name="ha-ws-reader")
        self.closed = asyncio.Event()

    @classmethod
    async def open(
        cls, session: aiohttp.ClientSession, endpoint: Endpoint, timeout: float = 20.0
    ) -> Connection:
        try:
            ws = await session.ws_connect(
                endpoint.ws_url,
                heartbeat=30,
                max_msg_size=MAX_MESSAGE,
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
            )
        except aiohttp.WSServerHandshakeError as exc:  # e.g. 502 from the proxy while HA restarts
            raise Disconnected(
                f"WebSocket handshake with {endpoint.where} failed: HTTP {exc.status}"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise Disconnected(f"cannot reach {endpoint.where}: {type(exc).__name__}: {exc}") from exc
        try:
            async with asyncio.timeout(timeout):
                first = await ws.receive_json()
                if first.get("type") != "auth_required":
                    raise HAError(f"unexpected first message from {endpoint.where}: {first.get('type')!r}")
                await ws.send_json({"type": "auth", "access_token": endpoint.token})
                answer = await ws.receive_json()
        except (TypeError, ValueError, aiohttp.ClientError, TimeoutError) as exc:
            await ws.close()
            raise Disconnected(
                f"{endpoint.where} closed during authentication: {type(exc).__name__}"
            ) from exc
        except BaseException:
            await ws.close()
            raise
        if answer.get("type") != "auth_ok":
            await ws.close()
            raise AuthFailed(
                f"{endpoint.where} refused the token ({answer.get('type')}: {answer.get('message', '')})"
            )
        return cls(ws, str(answer.get("ha_version", "")))

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._reader.cancel()
        try:
            await self._reader
        except asyncio.CancelledError:
            # The reader's own cancellation is expected; ours (the plugin stopping) must go on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        finally:
            # Not waiting for HA's close frame: a stopping plugin must not hang on a dead peer.
            await self._close_ws()

    async def _close_ws(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await self._ws.close()

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = msg.json()
                except ValueError:
                    log.warning("Home Assistant sent a message that is not JSON; ignored")
                    continue
                # HA may coalesce several messages into one JSON array.
                for item in data if isinstance(data, list) else [data]:
                    self._route(item)
        finally:
            self.closed.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(Disconnected("the WebSocket to Home Assistant closed"))
            self._waiting.clear()
            self.events.put_nowait(None)  # wakes the consumer: the stream ended

    def _route(self, item: Mapping[str, Any]) -> None:
        kind = item.get("type")
        if kind == "event":
            listener = self._listeners.get(int(item.get("id", -1)))
            (listener or self.events).put_nowait(dict(item))
        elif kind == "result":
            future = self._waiting.pop(int(item.get("id", -1)), None)
            if future is not None and not future.done():
                future.set_result(item)

    async def command(
        self,
        kind: str,
        timeout: float = COMMAND_TIMEOUT,
        listener: asyncio.Queue[dict[str, Any]] | None = None,
        **payload: Any,
    ) -> Any:
        """Send one command; its ``result`` on success, ``CommandFailed`` on an error answer. With
        ``listener``, the events of the subscription the command makes go to that queue (registered
        before sending, so none can slip into the main stream); ``unlisten`` ends that."""
        if self.closed.is_set():
            raise Disconnected("the WebSocket to Home Assistant closed")
        ident = self.last_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        if listener is not None:
            self._listeners[ident] = listener
        try:
            await self._ws.send_json({"id": ident, "type": kind, **payload})
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            self._waiting.pop(ident, None)
            raise Disconnected(f"sending {kind} failed: {exc}") from exc
        try:
            async with asyncio.timeout(timeout):
                answer = await future
        except TimeoutError as exc:
            self._waiting.pop(ident, None)
            raise HAError(f"{kind}: no answer within {timeout:.0f} s") from exc
        if not answer.get("success"):
            error = answer.get("error") or {}
            raise CommandFailed(kind, str(error.get("code", "?")), str(error.get("message", "")))
        return answer.get("result")

    async def unlisten(self, subscription: int) -> None:
        """End a subscription made with a ``listener``."""
        self._listeners.pop(subscription, None)
        await self.command("unsubscribe_events", subscription=subscription)

    async def wait_for_recorder(self, timeout: float = COMMAND_TIMEOUT) -> bool:
        """Wait until HA's recorder has committed every state change fired so far; False when that
        could not be confirmed within ``timeout``.

        HA offers no command for this, but ``history/stream`` does it on its way (its frontend's answer
        to the same gap): it sends the history it has, waits for the recorder to commit what is queued,
        then sends what that added. Asked for an entity that never has states, both sends are the empty
        event, so the second event means the recorder is in step with the state machine."""
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # A day back, not "now": HA refuses a start after its own clock, which may run behind ours.
        start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        await self.command(
            "history/stream",
            listener=events,
            start_time=start,
            entity_ids=[RECORDER_BARRIER_ENTITY],
            include_start_time_state=False,
            significant_changes_only=False,
            minimal_response=True,
            no_attributes=True,
        )
        subscription = self.last_id
        try:
            async with asyncio.timeout(timeout):
                for _ in range(2):
                    await events.get()
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(HAError):
                await self.unlisten(subscription)
        return True

    async def next_event(self) -> dict[str, Any]:
        """The next subscription event; ``Disconnected`` once the socket closed."""
        item = await self.events.get()
        if item is None:
            self.events.put_nowait(None)
            raise Disconnected("the WebSocket to Home Assistant closed")
        return item

    def pending_events(self) -> list[dict[str, Any]]:
        """Events already received, without waiting (to batch a burst into one emit)."""
        out: list[dict[str, Any]] = []
        while not self.events.empty():
            item = self.events.get_nowait()
            if item is None:
                self.events.put_nowait(None)
                break
            out.append(item)
        return out
