"""The ``homeassistant`` plugin: HA's power and energy sensors as AetherLens devices, pushed live.

One session = one authenticated WebSocket: load the registries, ``subscribe_entities`` (its first event
carries every entity's current state, sent by HA in the same step that starts the change stream, so no
change falls between a REST snapshot and a later subscription), wait until the recorder has committed
what happened before it, backfill from the recorder up to the subscription's start, hand over the
initial states, then every change as it comes. When the socket
closes (HA restarting, the Supervisor proxy answering 502), the next session starts after a backoff
and its backfill fills the gap from the watermarks. Nothing from Home Assistant is imported.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from aetherlens.plugins.builtin.homeassistant import mapping
from aetherlens.plugins.builtin.homeassistant.backfill import Progress, run_backfill
from aetherlens.plugins.builtin.homeassistant.client import (
    AuthFailed,
    CommandFailed,
    Connection,
    Endpoint,
    HAError,
)
from aetherlens.plugins.builtin.homeassistant.feed import Feed
from aetherlens.plugins.builtin.homeassistant.selection import Registries, Selection
from aetherlens.plugins.builtin.homeassistant.watermarks import WatermarkStore
from aetherlens.plugins.sdk import BasePlugin, Emit, PushError

log = logging.getLogger(__name__)

REGISTRY_EVENTS = ("entity_registry_updated", "device_registry_updated", "area_registry_updated")
DISCOVERY_WAIT = 20.0  # the core asks for devices once, right after the start: wait for the registries


class HomeAssistantPlugin(BasePlugin):
    capabilities = ("metrics.push", "device.discover")

    # -- configuration ---------------------------------------------------------------------------------
    def validate_config(self, config: dict[str, Any]) -> list[str]:
        problems = []
        prefix = f"plugins.{self.plugin_id}.config"
        try:
            Endpoint.from_config(config)
        except HAError as exc:
            problems.append(f"config of '{prefix}': {exc}")
        for entity_id, device_id in (config.get("devices") or {}).items():
            if not mapping.valid_device_id(str(device_id)):
                problems.append(
                    f"config key '{prefix}.devices.{entity_id}': {device_id!r} is not a valid device id "
                    "(letters, digits and _.:- , up to 128 characters)"
                )
        return problems

    async def setup(self) -> None:
        self.endpoint = Endpoint.from_config(self.config)
        self.selection = Selection.from_config(self.config)
        overrides = self.config.get("devices") or {}
        self.overrides: dict[str, str] = {str(k): str(v) for k, v in overrides.items()}
        self.backfill_days = float(self.config.get("backfill_days", 7))
        self.chunk_hours = float(self.config.get("backfill_chunk_hours", 24))
        self.reconnect_max = float(self.config.get("reconnect_max", 30))
        state_dir: Path | None = getattr(self, "state_dir", None)
        if state_dir is None:
            raise HAError("this plugin needs a state_dir for its watermarks (a core with the push path)")
        self.store = WatermarkStore(state_dir)
        self.store.load()
        self.feed = Feed(self.store)
        self.progress = Progress()
        self.registries = Registries({}, {}, {})
        self.attributes: dict[str, dict[str, Any]] = {}
        self.states: dict[str, Any] = {}
        self.session = aiohttp.ClientSession()
        self.connected = False
        self.connections = 0
        self.last_event: float | None = None
        self.last_error: str | None = None
        self.ha_version = ""
        self.ready = asyncio.Event()  # registries and the first states are in
        log.info("reading Home Assistant at %s", self.endpoint.where)

    async def teardown(self) -> None:
        await self.session.close()

    # -- the push path ---------------------------------------------------------------------------------
    async def run(self, emit: Emit) -> None:
        delay = 1.0
        while True:
            streaming = False
            try:
                async with await Connection.open(self.session, self.endpoint) as conn:
                    self.connected, self.connections = True, self.connections + 1
                    self.ha_version = conn.ha_version
                    log.info("connected to Home Assistant %s at %s", conn.ha_version, self.endpoint.where)
                    await self._stream(conn, emit)
                    streaming = True
            except AuthFailed as exc:
                self.last_error = str(exc)
                log.error("%s; retrying in %.0f s", exc, self.reconnect_max)
                delay = self.reconnect_max
            except (HAError, aiohttp.ClientError, OSError, TimeoutError, PushError) as exc:
                # PushError: the core did not take a batch; its watermarks did not move, so the next
                # session's backfill offers it again.
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.progress.state == "running":
                    self.progress.state = "interrupted"
                log.warning("Home Assistant connection lost (%s); reconnecting in %.1f s", exc, delay)
            finally:
                self.connected = False
            if streaming:
                delay = 1.0
            # Jitter keeps several cores (or instances) from reconnecting to one HA in lockstep.
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - not cryptographic
            delay = min(delay * 2, self.reconnect_max)

    async def _stream(self, conn: Connection, emit: Emit) -> None:
        await self._load_registries(conn)
        for event_type in REGISTRY_EVENTS:
            await conn.command("subscribe_events", event_type=event_type)
        entities_id = await self._subscribe_entities(conn)
        first = await conn.next_event()
        since = time.time()
        self._apply(first.get("event") or {}, feed=None)
        self.ready.set()
        await self._wait_for_recorder(conn)
        await run_backfill(conn, self.feed, emit, since, self.backfill_days, self.chunk_hours, self.progress)
        # The initial states (newer than the watermarks) after the history they follow.
        for entity_id, compressed in (first.get("event") or {}).get("a", {}).items():
            when = compressed.get("lu", compressed.get("lc"))
            if isinstance(when, int | float):
                self.feed.offer(entity_id, compressed.get("s"), float(when))
        await self.feed.flush(emit)
        while True:
            events = [await conn.next_event(), *conn.pending_events()]
            reloaded = False
            for event in events:
                if event.get("id") == entities_id:
                    self._apply(event.get("event") or {}, feed=self.feed)
                elif not reloaded:
                    # A registry change (a device paired, renamed, moved) comes before the states of
                    # its entities: reload at once, so the states after it in this burst already map
                    # to their device. One reload serves the whole burst, as it reads HA's registries
                    # as they are now, newer than every event received.
                    await self._load_registries(conn)
                    self._retrack()
                    reloaded = True
            self.last_event = time.time()
            await self.feed.flush(emit)

    async def _wait_for_recorder(self, conn: Connection) -> None:
        # The initial states move the watermarks to their time, so a change HA made just before the
        # subscription but its recorder had not committed yet (HA busy starting, say) would be skipped
        # for good: the backfill must not read the recorder before it caught up with the subscription.
        try:
            synced = await conn.wait_for_recorder()
        except CommandFailed as exc:  # no history integration: nothing to wait for or to backfill
            log.warning("cannot wait for the recorder (%s); backfilling from what it has", exc)
            return
        if not synced:
            log.warning("the recorder did not catch up within the wait; the backfill may miss a change")

    async def _subscribe_entities(self, conn: Connection) -> int:
        # The subscription's events carry the id of the command that made it.
        await conn.command("subscribe_entities")
        return conn.last_id

    async def _load_registries(self, conn: Connection) -> None:
        entities = await conn.command("config/entity_registry/list")
        devices = await conn.command("config/device_registry/list")
        areas = await conn.command("config/area_registry/list")
        self.registries = Registries.parse(entities or [], devices or [], areas or [])

    def _apply(self, event: Mapping[str, Any], feed: Feed | None) -> None:
        """Apply one ``subscribe_entities`` event (adds ``a``, changes ``c``, removals ``r``) to the
        state and attribute caches; with ``feed``, offer each new state to it."""
        attributes_changed = False
        offers: list[tuple[str, Any, Any]] = []
        for entity_id, compressed in (event.get("a") or {}).items():
            self.attributes[entity_id] = dict(compressed.get("a") or {})
            self.states[entity_id] = compressed.get("s")
            attributes_changed = True
            offers.append((entity_id, compressed.get("s"), compressed.get("lu", compressed.get("lc"))))
        for entity_id, diff in (event.get("c") or {}).items():
            plus, minus = diff.get("+") or {}, diff.get("-") or {}
            if plus.get("a") or minus.get("a"):
                attrs = self.attributes.setdefault(entity_id, {})
                attrs.update(plus.get("a") or {})
                for key in minus.get("a") or []:
                    attrs.pop(key, None)
                attributes_changed = True
            if "s" in plus:
                self.states[entity_id] = plus["s"]
            # An attribute-only change is the same reading at a new time; the recorder keeps such
            # rows too, so the live stream and a later backfill agree on every (time, entity).
            offers.append((entity_id, self.states.get(entity_id), plus.get("lu", plus.get("lc"))))
        for entity_id in event.get("r") or []:
            self.attributes.pop(entity_id, None)
            self.states.pop(entity_id, None)
            attributes_changed = True
        if attributes_changed:
            self._retrack()
        if feed is not None:
            for entity_id, state, when in offers:
                if isinstance(when, int | float) and state is not None:
                    feed.offer(entity_id, state, float(when))

    def _retrack(self) -> None:
        tracked: dict[str, mapping.Tracked] = {}
        for entity_id, attrs in self.attributes.items():
            if not self.selection.wants(entity_id, attrs, self.registries):
                continue
            item = mapping.track(entity_id, attrs, self.registries, self.overrides)
            if item is None:
                if self.selection.entities is not None and entity_id not in self.feed.tracked:
                    log.warning(
                        "%s is listed but its unit %r is not a power or energy unit; not read",
                        entity_id,
                        attrs.get("unit_of_measurement"),
                    )
                continue
            tracked[entity_id] = item
        result, warnings = mapping.separate_series(tracked, self.overrides)
        if set(result) != set(self.feed.tracked):
            for warning in warnings:
                log.warning("%s", warning)
            log.info("tracking %d Home Assistant entities", len(result))
        before = self._devices()
        self.feed.tracked = result
        # A device added, renamed or moved in HA while the core runs: the core asks for the devices
        # again (at the start it asks by itself, once `ready` lets discover_devices answer).
        if self.ready.is_set() and self._devices() != before:
            self.devices_changed()

    def _devices(self) -> dict[str, tuple[str, str | None]]:
        return {item.device_id: (item.device_name, item.room) for item in self.feed.tracked.values()}

    # -- devices and health ----------------------------------------------------------------------------
    async def discover_devices(self) -> list[dict[str, Any]]:
        try:
            async with asyncio.timeout(DISCOVERY_WAIT):
                await self.ready.wait()
        except TimeoutError:
            log.warning("device discovery: Home Assistant not reached within %.0f s", DISCOVERY_WAIT)
        devices: dict[str, dict[str, Any]] = {}
        for item in self.feed.tracked.values():
            devices.setdefault(
                item.device_id,
                {
                    "id": item.device_id,
                    "name": item.device_name,
                    "type": "other",
                    "room": item.room,
                    "source": self.plugin_id,
                },
            )
        return sorted(devices.values(), key=lambda d: str(d["id"]))

    async def get_health(self) -> dict[str, Any]:
        def iso(t: float | None) -> str | None:
            return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()

        return {
            "mode": self.endpoint.mode,
            "where": self.endpoint.where,
            "connected": self.connected,
            "connections": self.connections,
            "ha_version": self.ha_version,
            "last_event": iso(self.last_event),
            "last_reading": iso(self.feed.last_reading),
            "entities_tracked": len(self.feed.tracked),
            "readings_emitted": self.feed.emitted,
            "readings_rejected": self.feed.rejected,
            "skipped": dict(self.feed.skipped),
            "backfill": self.progress.as_dict(),
            "last_error": self.last_error,
        }
