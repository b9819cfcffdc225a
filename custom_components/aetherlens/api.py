"""Typed async client of the AetherLens core's REST API and WebSocket stream.

All I/O of the integration lives here (the python-elgato / python-wled shape): no Home Assistant
imports, an aiohttp session given by the caller (HA's shared one), answers as frozen dataclasses and
one exception hierarchy. Routes and shapes: docs/API.md and the outside contract.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NoReturn
from urllib.parse import urlsplit

import aiohttp

_LOGGER = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
STREAM_TOPICS: Final = ("metrics", "costs", "alerts")
STREAM_IDLE_TIMEOUT: Final = 300.0  # seconds without any message before the stream counts as dead

# WebSocket close codes of /api/v1/stream (docs/API.md).
CLOSE_AUTH_FAILED: Final = 4401
CLOSE_TOO_SLOW: Final = 4408
CLOSE_RATE_LIMITED: Final = 4429


class AetherLensError(Exception):
    """Any failure talking to the core; `code` is the core's error code when it sent one."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class AetherLensConnectionError(AetherLensError):
    """The core cannot be reached, timed out, or said it is temporarily unavailable (502/503/504)."""


class AetherLensAuthError(AetherLensError):
    """The API key was refused (401) or lacks a scope the integration needs (403)."""


class AetherLensNotFoundError(AetherLensError):
    """404: an unknown object, or a route this core does not serve (an older core)."""


# --------------------------------------------------------------------------------------------- answers


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise AetherLensError(f"expected an ISO 8601 time, got {value!r}")
    return datetime.fromisoformat(value)


def _required_time(value: Any, name: str) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise AetherLensError(f"answer has no {name}")
    return parsed


def _num(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AetherLensError(f"expected a number, got {value!r}")
    return float(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Info:
    """`GET /api/v1/info`."""

    instance_id: str
    version: str
    currency: str
    timezone: str
    api_version: int | None
    capabilities: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Info:
        api_version = data.get("api_version")
        return cls(
            instance_id=str(data["instance_id"]),
            version=str(data["version"]),
            currency=str(data["currency"]),
            timezone=str(data["timezone"]),
            api_version=int(api_version) if api_version is not None else None,
            capabilities=dict(data.get("capabilities") or {}),
        )


@dataclass(frozen=True, slots=True)
class Device:
    """One item of `GET /api/v1/devices`."""

    id: str
    name: str
    type: str
    room: str | None
    source: str | None
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Device:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            type=str(data.get("type") or "other"),
            room=_str(data.get("room")),
            source=_str(data.get("source")),
            tags=dict(data.get("tags") or {}),
        )


@dataclass(frozen=True, slots=True)
class MetricValue:
    """The latest value of one series (`/metrics/current`, or a `metric` stream event)."""

    value: float
    unit: str
    time: datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricValue:
        value = _num(data["value"])
        if value is None:
            raise AetherLensError("metric without a value")
        return cls(value=value, unit=str(data.get("unit") or ""), time=_required_time(data["time"], "time"))


@dataclass(frozen=True, slots=True)
class CostSummary:
    """`GET /api/v1/costs/summary`: numbers are None while unknown (no tariff, no readings)."""

    currency: str
    today: float | None
    month_to_date: float | None
    projected_month: float | None
    current_price: float | None
    current_period: str | None
    carbon_today_kg: float | None
    tariff_id: str | None
    day_start: datetime | None
    cycle_start: datetime | None
    cycle_end: datetime | None
    previous_cycle_start: datetime | None
    # False for a core from before `tariff_id` was added: "no tariff" cannot be told from "not said".
    has_tariff_field: bool = True

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CostSummary:
        return cls(
            has_tariff_field="tariff_id" in data,
            currency=str(data["currency"]),
            today=_num(data.get("today")),
            month_to_date=_num(data.get("month_to_date")),
            projected_month=_num(data.get("projected_month")),
            current_price=_num(data.get("current_price")),
            current_period=_str(data.get("current_period")),
            carbon_today_kg=_num(data.get("carbon_today_kg")),
            tariff_id=_str(data.get("tariff_id")),
            day_start=_time(data.get("day_start")),
            cycle_start=_time(data.get("cycle_start")),
            cycle_end=_time(data.get("cycle_end")),
            previous_cycle_start=_time(data.get("previous_cycle_start")),
        )


@dataclass(frozen=True, slots=True)
class DeviceCost:
    """One item of `GET /api/v1/costs/devices`."""

    device_id: str
    kwh: float | None
    cost: float | None
    carbon_kg: float | None
    estimated: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceCost:
        return cls(
            device_id=str(data["device_id"]),
            kwh=_num(data.get("kwh")),
            cost=_num(data.get("cost")),
            carbon_kg=_num(data.get("carbon_kg")),
            estimated=bool(data.get("estimated", False)),
        )


@dataclass(frozen=True, slots=True)
class CostPoint:
    """One point of `GET /api/v1/costs/history`."""

    time: datetime
    kwh: float | None
    cost: float | None
    carbon_kg: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CostPoint:
        return cls(
            time=_required_time(data["time"], "time"),
            kwh=_num(data.get("kwh")),
            cost=_num(data.get("cost")),
            carbon_kg=_num(data.get("carbon_kg")),
        )


@dataclass(frozen=True, slots=True)
class CostChange:
    """A series whose hourly cost history changed: `device_id` None = the site."""

    device_id: str | None
    start: datetime


@dataclass(frozen=True, slots=True)
class CostChanges:
    """`GET /api/v1/costs/changes?since=`."""

    revision: int
    changes: tuple[CostChange, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CostChanges:
        return cls(
            revision=int(data["revision"]),
            changes=tuple(
                CostChange(device_id=_str(c.get("device_id")), start=_required_time(c["from"], "from"))
                for c in data.get("changes") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class Tariff:
    """One tariff (`GET /api/v1/tariffs/{id}`); `periods` = the period labels of its definition."""

    id: str
    name: str
    currency: str
    active: bool
    periods: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tariff:
        definition = data.get("definition") or {}
        periods = definition.get("periods") or {}
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            currency=str(data.get("currency") or definition.get("currency") or ""),
            active=bool(data.get("active", False)),
            periods=tuple(str(p) for p in periods),
        )


@dataclass(frozen=True, slots=True)
class TariffComparison:
    """One row of `GET /api/v1/costs/comparison` (cheapest first)."""

    tariff_id: str
    name: str
    total: float | None
    currency: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TariffComparison:
        return cls(
            tariff_id=str(data["tariff_id"]),
            name=str(data.get("name") or data["tariff_id"]),
            total=_num(data.get("total")),
            currency=str(data.get("currency") or ""),
        )


@dataclass(frozen=True, slots=True)
class CloudAccount:
    """One item of `GET /api/v1/cloud-costs/summary`."""

    provider: str
    account: str
    currency: str
    month_to_date: float | None
    forecast_month: float | None
    budget: float | None
    estimated_today: float | None

    @property
    def key(self) -> str:
        """Stable identity of the account inside one core."""
        return f"{self.provider}:{self.account}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CloudAccount:
        return cls(
            provider=str(data["provider"]),
            account=str(data["account"]),
            currency=str(data.get("currency") or ""),
            month_to_date=_num(data.get("month_to_date")),
            forecast_month=_num(data.get("forecast_month")),
            budget=_num(data.get("budget")),
            estimated_today=_num(data.get("estimated_today")),
        )


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One item of `GET /api/v1/alerts`."""

    id: str
    name: str
    enabled: bool
    device_id: str | None
    severity: str
    condition: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertRule:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            enabled=bool(data.get("enabled", True)),
            device_id=_str(data.get("device_id")),
            severity=str(data.get("severity") or "warning"),
            condition=dict(data.get("condition") or {}),
        )


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert event (`GET /api/v1/alerts/events`); open = not resolved."""

    id: str
    alert_id: str
    device_id: str | None
    severity: str
    value: float | None
    message: str | None
    triggered_at: datetime | None
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertEvent:
        return cls(
            id=str(data.get("id") or data.get("event_id")),
            alert_id=str(data["alert_id"]),
            device_id=_str(data.get("device_id")),
            severity=str(data.get("severity") or "warning"),
            value=_num(data.get("value")),
            message=_str(data.get("message")),
            triggered_at=_time(data.get("triggered_at")),
            resolved_at=_time(data.get("resolved_at")),
            acknowledged_at=_time(data.get("acknowledged_at")),
            acknowledged_by=_str(data.get("acknowledged_by")),
        )


# ------------------------------------------------------------------------------------- stream events


@dataclass(frozen=True, slots=True)
class MetricEvent:
    """`{"type":"metric","data":{"time","device_id","metric_type","value","unit"}}`."""

    device_id: str
    metric_type: str
    metric: MetricValue


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """`{"type":"alert","data":{...}}`: one transition of an alert (firing / resolved / acknowledged)."""

    alert_id: str
    event_id: str
    name: str
    device_id: str | None
    severity: str
    state: Literal["firing", "resolved", "acknowledged"]
    value: float | None
    message: str | None
    time: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertTransition:
        state = data.get("state")
        if state not in ("firing", "resolved", "acknowledged"):
            raise AetherLensError(f"alert event with unknown state {state!r}")
        return cls(
            alert_id=str(data["alert_id"]),
            event_id=str(data["event_id"]),
            name=str(data.get("name") or data["alert_id"]),
            device_id=_str(data.get("device_id")),
            severity=str(data.get("severity") or "warning"),
            state=state,
            value=_num(data.get("value")),
            message=_str(data.get("message")),
            time=_time(data.get("time")),
        )


@dataclass(frozen=True, slots=True)
class Subscribed:
    """`{"type":"subscribed","topics":[...]}`: the stream is open and delivering these topics."""

    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CostEvent:
    """`{"type":"cost","data":<the /costs/summary object>}` after each pricing run."""

    summary: CostSummary


type StreamEvent = MetricEvent | AlertTransition | CostEvent | Subscribed


def parse_stream_message(message: Mapping[str, Any]) -> StreamEvent | None:
    """One stream message as an event; None for messages that are no event (subscribed, error...)."""
    kind = message.get("type")
    if kind == "subscribed":
        return Subscribed(tuple(str(t) for t in message.get("topics") or ()))
    data = message.get("data")
    if not isinstance(data, Mapping):
        return None
    if kind == "metric":
        return MetricEvent(
            device_id=str(data["device_id"]),
            metric_type=str(data["metric_type"]),
            metric=MetricValue.from_json(data),
        )
    if kind == "alert":
        return AlertTransition.from_json(data)
    if kind == "cost":
        return CostEvent(CostSummary.from_json(data))
    return None


# ---------------------------------------------------------------------------------------------- client


def normalize_url(url: str) -> str:
    """`host:port` or `http(s)://host:port[/]` → `scheme://host:port` (no trailing slash)."""
    url = url.strip()
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("times sent to the core need an offset")
    return value.isoformat()


class AetherLensClient:
    """The core's API over the caller's aiohttp session."""

    def __init__(
        self,
        url: str,
        api_key: str,
        session: aiohttp.ClientSession,
        *,
        request_timeout: float = 10.0,
    ) -> None:
        self.url = normalize_url(url)
        self._api_key = api_key
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            async with self._session.request(
                method,
                f"{self.url}{API_PREFIX}{path}",
                params=params,
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                text = await response.text()
                status = response.status
        except TimeoutError as err:
            raise AetherLensConnectionError(f"timeout talking to {self.url}") from err
        except aiohttp.ClientError as err:
            raise AetherLensConnectionError(f"cannot reach {self.url}: {err}") from err
        if status < 400:
            if not text:
                return None
            try:
                return json.loads(text)
            except ValueError as err:
                raise AetherLensError(f"{path}: answer is not JSON") from err
        code, message = _error_of(text, status)
        error_cls: type[AetherLensError] = AetherLensError
        if status in (401, 403):
            error_cls = AetherLensAuthError
        elif status == 404:
            error_cls = AetherLensNotFoundError
        elif status in (502, 503, 504):
            error_cls = AetherLensConnectionError
        raise error_cls(f"{method} {path}: {status} {message}", code=code, status=status)

    async def _get(self, path: str, **params: str | None) -> Any:
        return await self._request(
            "GET", path, params={k: v for k, v in params.items() if v is not None} or None
        )

    async def info(self) -> Info:
        return Info.from_json(await self._get("/info"))

    async def devices(self) -> list[Device]:
        return [Device.from_json(d) for d in (await self._get("/devices"))["items"]]

    async def current_metrics(self) -> dict[str, dict[str, MetricValue]]:
        """Latest value per device and metric type."""
        answer = await self._get("/metrics/current")
        result: dict[str, dict[str, MetricValue]] = {}
        for device in answer["devices"]:
            result[str(device["device_id"])] = {
                str(kind): MetricValue.from_json(value)
                for kind, value in (device.get("metrics") or {}).items()
                if value.get("value") is not None
            }
        return result

    async def cost_summary(self) -> CostSummary:
        return CostSummary.from_json(await self._get("/costs/summary"))

    async def device_costs(self, start: datetime, end: datetime | None = None) -> dict[str, DeviceCost]:
        """Each device's share of the site bill over `[start, end)` (end None = now)."""
        answer = await self._get("/costs/devices", **{"from": _iso(start), "to": _opt_iso(end)})
        return {item.device_id: item for item in map(DeviceCost.from_json, answer["items"])}

    async def cost_history(
        self,
        start: datetime,
        end: datetime,
        *,
        device_id: str | None = None,
        resolution: Literal["hour", "day"] = "hour",
    ) -> list[CostPoint]:
        """Cost history of a device, or of the site when `device_id` is None."""
        answer = await self._get(
            "/costs/history",
            **{"from": _iso(start), "to": _iso(end), "device_id": device_id, "resolution": resolution},
        )
        return [CostPoint.from_json(p) for p in answer["points"]]

    async def cost_changes(self, since: int) -> CostChanges:
        """Series whose hourly cost history changed after revision `since` (0 = everything)."""
        return CostChanges.from_json(await self._get("/costs/changes", since=str(since)))

    async def comparison(self, start: datetime, end: datetime) -> list[TariffComparison]:
        """Every stored tariff priced over `[start, end)`, cheapest first."""
        answer = await self._get("/costs/comparison", **{"from": _iso(start), "to": _iso(end)})
        return [TariffComparison.from_json(row) for row in answer]

    async def bill(
        self,
        start: datetime | str,
        end: datetime | str,
        *,
        tariff_id: str | None = None,
        device_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """The bill JSON (one object per billing cycle), passed through unchanged."""
        answer = await self._get(
            "/costs/bill",
            **{
                "from": start if isinstance(start, str) else _iso(start),
                "to": end if isinstance(end, str) else _iso(end),
                "tariff_id": tariff_id,
                "device_id": device_id,
            },
        )
        if not isinstance(answer, list):
            raise AetherLensError("/costs/bill: answer is not a list")
        return answer

    async def tariff(self, tariff_id: str) -> Tariff:
        return Tariff.from_json(await self._get(f"/tariffs/{tariff_id}"))

    async def cloud_accounts(self) -> list[CloudAccount] | None:
        """Cloud accounts with their month's figures; None when this core does not serve the route."""
        try:
            answer = await self._get("/cloud-costs/summary")
        except AetherLensNotFoundError:
            return None
        return [CloudAccount.from_json(item) for item in answer["items"]]

    async def alerts(self) -> list[AlertRule]:
        return [AlertRule.from_json(a) for a in (await self._get("/alerts"))["items"]]

    async def alert_events(self, *, limit: int = 200) -> list[AlertEvent]:
        """The newest alert events, newest first."""
        answer = await self._get("/alerts/events", limit=str(limit))
        return [AlertEvent.from_json(e) for e in answer["items"]]

    async def acknowledge(self, event_id: str) -> AlertEvent:
        return AlertEvent.from_json(await self._request("POST", f"/alerts/events/{event_id}/ack"))

    async def stream(
        self, topics: Sequence[str] = STREAM_TOPICS, *, idle_timeout: float = STREAM_IDLE_TIMEOUT
    ) -> AsyncIterator[StreamEvent]:
        """Connect to `/api/v1/stream`, authenticate, subscribe and yield events until it closes.

        Raises AetherLensAuthError when the key is refused (close 4401) and AetherLensConnectionError
        when the socket cannot be opened or ends; the caller decides about reconnecting.
        """
        ws_url = f"{self.url.replace('http', 'ws', 1)}{API_PREFIX}/stream"
        try:
            # No aiohttp heartbeat: its timer can outlive a task cancelled mid-handshake. A socket
            # that delivers nothing for `idle_timeout` counts as dead instead (the core streams
            # every committed write batch, so a live core with readings is never that quiet).
            async with self._session.ws_connect(ws_url, autoclose=True) as socket:
                await socket.send_json({"type": "auth", "token": self._api_key})
                first = await asyncio.wait_for(socket.receive(), self._timeout.total)
                if (
                    first.type is not aiohttp.WSMsgType.TEXT
                    or json.loads(first.data).get("type") != "auth_ok"
                ):
                    _raise_closed(socket.close_code, "authentication")
                await socket.send_json({"type": "subscribe", "topics": list(topics)})
                while True:
                    try:
                        message = await socket.receive(timeout=idle_timeout)
                    except TimeoutError as err:
                        raise AetherLensConnectionError(
                            f"the stream of {self.url} sent nothing for {idle_timeout:.0f} s"
                        ) from err
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        break
                    try:
                        event = parse_stream_message(json.loads(message.data))
                    except (AetherLensError, ValueError, KeyError, TypeError) as err:
                        # One malformed message must not end the stream for every other value.
                        _LOGGER.debug("skipping a stream message this client cannot read: %s", err)
                        continue
                    if event is not None:
                        yield event
                _raise_closed(socket.close_code, "stream")
        except TimeoutError as err:
            raise AetherLensConnectionError(f"timeout on the stream of {self.url}") from err
        except aiohttp.WSServerHandshakeError as err:
            if err.status in (401, 403):
                raise AetherLensAuthError(f"stream refused: {err.status}", status=err.status) from err
            raise AetherLensConnectionError(f"stream refused: {err.status}", status=err.status) from err
        except aiohttp.ClientError as err:
            raise AetherLensConnectionError(f"stream of {self.url}: {err}") from err


def _opt_iso(value: datetime | None) -> str | None:
    return None if value is None else _iso(value)


def _raise_closed(close_code: int | None, during: str) -> NoReturn:
    if close_code == CLOSE_AUTH_FAILED:
        raise AetherLensAuthError(f"{during}: the core refused the API key (close {close_code})")
    raise AetherLensConnectionError(f"{during}: the stream closed (code {close_code})")


def _error_of(text: str, status: int) -> tuple[str | None, str]:
    try:
        error = json.loads(text)["error"]
        return str(error.get("code")), str(error.get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, text[:200] or f"HTTP {status}"
