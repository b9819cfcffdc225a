"""The coordinator: polls the core, merges the live stream into its data, emits alert events."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .api import (
    AetherLensAuthError,
    AetherLensClient,
    AetherLensError,
    AlertEvent,
    AlertRule,
    AlertTransition,
    CloudAccount,
    CostEvent,
    CostSummary,
    Device,
    DeviceCost,
    Info,
    MetricEvent,
    MetricValue,
    StreamEvent,
    Tariff,
    TariffComparison,
)
from .const import (
    CONF_SCAN_INTERVAL,
    DEFAULT_SCAN_INTERVAL,
    DOMAIN,
    EVENT_ALERT,
    ISSUE_API_VERSION,
    ISSUE_NO_TARIFF,
    LOGGER,
    SUPPORTED_API_VERSION,
)

if TYPE_CHECKING:
    from . import AetherLensConfigEntry

# Options that hide things (stored as exclusions, so devices and accounts that appear later are shown).
OPT_EXCLUDED_DEVICES = "excluded_devices"
OPT_EXCLUDED_CLOUD = "excluded_cloud_accounts"

MAX_REMEMBERED_EVENTS = 2000

# Stream state -> the state of the `aetherlens_alert` event (CONTRACT.md).
EVENT_STATES = {"firing": "fired", "resolved": "resolved", "acknowledged": "acknowledged"}


@dataclass(slots=True)
class AetherLensData:
    """Everything the entities show, from one poll plus the stream's updates since."""

    info: Info
    devices: dict[str, Device]
    metrics: dict[str, dict[str, MetricValue]]
    summary: CostSummary
    costs_today: dict[str, DeviceCost]
    costs_cycle: dict[str, DeviceCost]
    tariff: Tariff | None
    comparison: list[TariffComparison] | None
    cloud: dict[str, CloudAccount] | None
    alerts: dict[str, AlertRule]
    open_events: dict[str, AlertEvent] = field(default_factory=dict)  # alert id -> its open event
    recent_events: list[AlertEvent] = field(default_factory=list)  # as polled, newest first

    @property
    def day_start(self) -> datetime:
        """Start of the local day the costs of today count from."""
        if self.summary.day_start is not None:
            return self.summary.day_start
        # Older core without `day_start`: the local midnight of the core's zone.
        now = dt_util.now(ZoneInfo(self.info.timezone))
        return now.replace(hour=0, minute=0, second=0, microsecond=0)

    @property
    def month_start(self) -> datetime:
        """Start of the local calendar month."""
        return self.day_start.replace(day=1)

    @property
    def cloud_month_start(self) -> datetime:
        """Start of the month a cloud account's month to date covers: clouds bill UTC days, and the
        core's summary counts them so (docs/API.md)."""
        return datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def device_identifier(instance_id: str, device_id: str) -> str:
    return f"{instance_id}_{device_id}"


def cloud_identifier(instance_id: str, account_key: str) -> str:
    return f"{instance_id}_cloud_{account_key}"


class AetherLensCoordinator(DataUpdateCoordinator[AetherLensData]):
    """Polls the core (costs, devices, alerts, and live values while the stream is down)."""

    config_entry: AetherLensConfigEntry

    def __init__(self, hass: HomeAssistant, entry: AetherLensConfigEntry, client: AetherLensClient) -> None:
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=DOMAIN,
            update_interval=timedelta(seconds=entry.options.get(CONF_SCAN_INTERVAL, DEFAULT_SCAN_INTERVAL)),
        )
        self.client = client
        self._tariff_cache: tuple[str | None, Tariff | None] = (None, None)
        self._comparison_cache: tuple[tuple[Any, ...], list[TariffComparison] | None] = ((), None)
        self._emitted: dict[str, set[str]] = {}  # alert event id -> transitions already announced
        self._baseline_done = False
        self._transitions = 0  # count of alert transitions taken from the stream
        self._transition_seq: dict[str, int] = {}  # alert id -> number of its last stream transition

    # ------------------------------------------------------------------------------- exposure

    @property
    def instance_id(self) -> str:
        return self.data.info.instance_id

    def exposed_devices(self) -> dict[str, Device]:
        excluded = set(self.config_entry.options.get(OPT_EXCLUDED_DEVICES, ()))
        return {k: v for k, v in self.data.devices.items() if k not in excluded}

    def exposed_cloud(self) -> dict[str, CloudAccount]:
        excluded = set(self.config_entry.options.get(OPT_EXCLUDED_CLOUD, ()))
        return {k: v for k, v in (self.data.cloud or {}).items() if k not in excluded}

    # -------------------------------------------------------------------------------- polling

    async def _async_update_data(self) -> AetherLensData:
        transitions_before = self._transitions
        try:
            data = await self._fetch()
        except AetherLensAuthError as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth", translation_placeholders={}
            ) from err
        except AetherLensError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="update_failed",
                translation_placeholders={"error": str(err)},
            ) from err
        if self.data is not None:
            # Live values pushed after this poll started are newer than what it read.
            data.metrics = _newest(data.metrics, self.data.metrics)
            # Alerts the stream moved while this poll was under way: the stream's word is newer.
            for alert_id, seq in self._transition_seq.items():
                if seq > transitions_before:
                    if alert_id in self.data.open_events:
                        data.open_events[alert_id] = self.data.open_events[alert_id]
                    else:
                        data.open_events.pop(alert_id, None)
        self._track_alert_events(data)
        self._update_issues(data)
        self._remove_stale_devices(data)
        return data

    async def _fetch(self) -> AetherLensData:
        client = self.client
        info = await client.info()
        devices = {d.id: d for d in await client.devices()}
        metrics = await client.current_metrics()
        summary = await client.cost_summary()
        now = dt_util.utcnow()
        provisional = AetherLensData(
            info=info,
            devices=devices,
            metrics=metrics,
            summary=summary,
            costs_today={},
            costs_cycle={},
            tariff=None,
            comparison=None,
            cloud=None,
            alerts={},
        )
        day_start = provisional.day_start
        provisional.costs_today = await client.device_costs(day_start, now)
        if summary.cycle_start is not None:
            provisional.costs_cycle = (
                provisional.costs_today
                if summary.cycle_start == day_start
                else await client.device_costs(summary.cycle_start, now)
            )
        provisional.tariff = await self._tariff(summary.tariff_id)
        provisional.comparison = await self._comparison(summary)
        cloud = await client.cloud_accounts()
        provisional.cloud = None if cloud is None else {a.key: a for a in cloud}
        provisional.alerts = {a.id: a for a in await client.alerts()}
        provisional.recent_events = await client.alert_events()
        for event in reversed(provisional.recent_events):  # oldest first: the newest open one wins
            if event.is_open:
                provisional.open_events[event.alert_id] = event
        return provisional

    async def _tariff(self, tariff_id: str | None) -> Tariff | None:
        """The active tariff (for its period labels); fetched again only when it changes."""
        cached_id, cached = self._tariff_cache
        if tariff_id is None:
            return None
        if tariff_id == cached_id and cached is not None:
            return cached
        try:
            tariff = await self.client.tariff(tariff_id)
        except AetherLensAuthError:
            raise
        except AetherLensError as err:
            LOGGER.debug("cannot read tariff %s: %s", tariff_id, err)
            return None
        self._tariff_cache = (tariff_id, tariff)
        return tariff

    async def _comparison(self, summary: CostSummary) -> list[TariffComparison] | None:
        """Every stored tariff over the last full cycle; fetched again when the cycle or tariff moves."""
        if summary.previous_cycle_start is None or summary.cycle_start is None:
            return None
        key = (summary.tariff_id, summary.previous_cycle_start, summary.cycle_start)
        if key == self._comparison_cache[0]:
            return self._comparison_cache[1]
        try:
            rows = await self.client.comparison(summary.previous_cycle_start, summary.cycle_start)
        except AetherLensAuthError:
            raise
        except AetherLensError as err:
            LOGGER.debug("cannot compare tariffs: %s", err)
            return None
        self._comparison_cache = (key, rows)
        return rows

    def invalidate_caches(self) -> None:
        """Make the next poll read the tariff and the comparison again (the refresh action)."""
        self._tariff_cache = (None, None)
        self._comparison_cache = ((), None)

    # --------------------------------------------------------------------------------- stream

    @callback
    def handle_stream_event(self, event: StreamEvent) -> None:
        """Merge one pushed event into the data (without resetting the poll timer)."""
        if self.data is None:
            return
        if isinstance(event, MetricEvent):
            if event.device_id not in self.data.devices:
                # A device the core registered since the last poll: learn its name and entities.
                self.hass.async_create_task(self.async_request_refresh(), eager_start=True)
                return
            series = self.data.metrics.setdefault(event.device_id, {})
            current = series.get(event.metric_type)
            if current is None or current.time <= event.metric.time:
                series[event.metric_type] = event.metric
        elif isinstance(event, AlertTransition):
            self._apply_transition(event)
        elif isinstance(event, CostEvent):
            self.data.summary = event.summary
            # Per-device costs come with the next poll; ask for it now (debounced).
            self.hass.async_create_task(self.async_request_refresh(), eager_start=True)
        self.async_update_listeners()

    def _apply_transition(self, event: AlertTransition) -> None:
        data = self.data
        self._transitions += 1
        self._transition_seq[event.alert_id] = self._transitions
        if event.state == "firing":
            data.open_events[event.alert_id] = AlertEvent(
                id=event.event_id,
                alert_id=event.alert_id,
                device_id=event.device_id,
                severity=event.severity,
                value=event.value,
                message=event.message,
                triggered_at=event.time,
                resolved_at=None,
                acknowledged_at=None,
                acknowledged_by=None,
            )
        else:
            open_event = data.open_events.get(event.alert_id)
            if open_event is not None and open_event.id == event.event_id:
                if event.state == "resolved":
                    del data.open_events[event.alert_id]
                else:
                    data.open_events[event.alert_id] = replace(open_event, acknowledged_at=event.time)
        self._announce(
            event.event_id,
            event.state,
            {
                "alert_id": event.alert_id,
                "event_id": event.event_id,
                "name": event.name,
                "device_id": event.device_id,
                "severity": event.severity,
                "value": event.value,
                "message": event.message,
            },
        )

    @callback
    def stream_state_changed(self) -> None:
        """Stream lost or back: poll now, so a dead core turns entities unavailable without waiting a
        whole interval, and values missed while it was down are read. Not debounced: these are rare,
        and the debouncer's cooldown would hold the recovery back by seconds."""
        self.hass.async_create_task(self.async_refresh(), eager_start=True)

    # ---------------------------------------------------------------------------------- alerts

    def _announce(self, event_id: str, state: str, payload: dict[str, Any]) -> None:
        """Fire `aetherlens_alert` once per transition, whether the stream or a poll saw it."""
        seen = self._emitted.setdefault(event_id, set())
        if state in seen:
            return
        seen.add(state)
        self.hass.bus.async_fire(EVENT_ALERT, {**payload, "state": EVENT_STATES[state]})

    def _track_alert_events(self, data: AetherLensData) -> None:
        """Transitions the polls reveal (the stream's fallback, deduplicated against it). The first
        poll is the baseline: what was already true before the integration started is not announced."""
        for event in reversed(data.recent_events):  # oldest first, as they happened
            states = ["firing"]
            if event.acknowledged_at is not None:
                states.append("acknowledged")
            if event.resolved_at is not None:
                states.append("resolved")
            if not self._baseline_done:
                self._emitted.setdefault(event.id, set()).update(states)
                continue
            rule = data.alerts.get(event.alert_id)
            for state in states:
                self._announce(
                    event.id,
                    state,
                    {
                        "alert_id": event.alert_id,
                        "event_id": event.id,
                        "name": rule.name if rule else event.alert_id,
                        "device_id": event.device_id,
                        "severity": event.severity,
                        "value": event.value,
                        "message": event.message,
                    },
                )
        self._baseline_done = True
        # Bounded memory: forget the oldest announced events (far beyond the polled window).
        while len(self._emitted) > MAX_REMEMBERED_EVENTS:
            del self._emitted[next(iter(self._emitted))]

    # ----------------------------------------------------------------------- registry upkeep

    def _update_issues(self, data: AetherLensData) -> None:
        version = data.info.api_version
        if version is not None and version != SUPPORTED_API_VERSION:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                f"{ISSUE_API_VERSION}_{self.config_entry.entry_id}",
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key=ISSUE_API_VERSION,
                translation_placeholders={
                    "version": str(version),
                    "supported": str(SUPPORTED_API_VERSION),
                    "core_version": data.info.version,
                },
            )
        else:
            ir.async_delete_issue(self.hass, DOMAIN, f"{ISSUE_API_VERSION}_{self.config_entry.entry_id}")
        if data.summary.has_tariff_field and data.summary.tariff_id is None:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                f"{ISSUE_NO_TARIFF}_{self.config_entry.entry_id}",
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key=ISSUE_NO_TARIFF,
                translation_placeholders={"url": self.client.url},
            )
        else:
            ir.async_delete_issue(self.hass, DOMAIN, f"{ISSUE_NO_TARIFF}_{self.config_entry.entry_id}")

    def _remove_stale_devices(self, data: AetherLensData) -> None:
        """Devices deleted in the core (or hidden in the options) leave Home Assistant's registry."""
        instance = data.info.instance_id
        excluded_devices = set(self.config_entry.options.get(OPT_EXCLUDED_DEVICES, ()))
        excluded_cloud = set(self.config_entry.options.get(OPT_EXCLUDED_CLOUD, ()))
        keep = {instance}
        keep.update(device_identifier(instance, d) for d in data.devices if d not in excluded_devices)
        keep.update(cloud_identifier(instance, a) for a in data.cloud or {} if a not in excluded_cloud)
        registry = dr.async_get(self.hass)
        for device in dr.async_entries_for_config_entry(registry, self.config_entry.entry_id):
            ours = {ident for domain, ident in device.identifiers if domain == DOMAIN}
            if ours and not ours & keep:
                LOGGER.debug("removing device %s, gone from the core", device.name)
                registry.async_update_device(device.id, remove_config_entry_id=self.config_entry.entry_id)


def _newest(
    polled: dict[str, dict[str, MetricValue]], live: dict[str, dict[str, MetricValue]]
) -> dict[str, dict[str, MetricValue]]:
    for device_id, series in polled.items():
        for kind, value in live.get(device_id, {}).items():
            if kind not in series or series[kind].time < value.time:
                series[kind] = value
    return polled
