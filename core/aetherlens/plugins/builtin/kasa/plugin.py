"""The ``kasa`` plugin: TP-Link Kasa plugs and strips on the local network, read and switched with
python-kasa (what Home Assistant's tplink integration uses).

Every poll updates all devices at once, each under its own timeout (``timeout``, shorter than the
manifest's, which would kill the process): a dead or hanging device is skipped for that poll with its
error in the health, and the others' readings are returned. python-kasa has no push for these devices,
so this plugin is polled. Discovery (when configured) runs beside the polls, on the one segment its
target names (see ``scope``), and what it finds joins the polled devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from kasa import Credentials, Device, Discover

from aetherlens.plugins.builtin.kasa.channels import Channel, readings
from aetherlens.plugins.builtin.kasa.connection import Target
from aetherlens.plugins.builtin.kasa.link import Link, describe
from aetherlens.plugins.builtin.kasa.scope import ScopeError, Segment, segment_of
from aetherlens.plugins.sdk import BasePlugin, MetricLike

log = logging.getLogger(__name__)

ACTIONS = ("on", "off", "toggle")


class KasaPlugin(BasePlugin):
    capabilities = ("metrics.collect", "device.discover", "device.control")

    # -- configuration ---------------------------------------------------------------------------------
    def validate_config(self, config: dict[str, Any]) -> list[str]:
        prefix = f"plugins.{self.plugin_id}.config"
        problems = []
        seen: dict[str, int] = {}
        for index, item in enumerate(config.get("devices") or []):
            key = f"{item.get('host')}:{item.get('port') or ''}"
            if key in seen:
                problems.append(
                    f"config key '{prefix}.devices.{index}.host': {item.get('host')!r} is listed twice"
                )
            seen[key] = index
            if item.get("transport") == "klap" and not (item.get("username") or config.get("username")):
                problems.append(
                    f"config key '{prefix}.devices.{index}.username': the klap transport needs the TP-Link "
                    f"account's username and password (here or in '{prefix}.username')"
                )
        ids = [item["id"] for item in config.get("devices") or [] if item.get("id")]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            problems.append(f"config key '{prefix}.devices': id {dup!r} is given to more than one device")
        discovery = config.get("discovery") or {}
        if discovery.get("enabled"):
            target = discovery.get("target")
            if not target:
                problems.append(
                    f"config key '{prefix}.discovery.target': discovery needs the broadcast address of the "
                    "local segment (e.g. 192.168.1.255); it never broadcasts beyond it"
                )
            else:
                try:
                    segment_of(str(target))
                except ScopeError as exc:
                    problems.append(f"config key '{prefix}.discovery.target': {exc}")
        elif not config.get("devices"):
            problems.append(f"config of '{prefix}': list 'devices' or enable 'discovery' (nothing to read)")
        return problems

    async def setup(self) -> None:
        self.timeout = float(self.config.get("timeout", 5))
        self.links: dict[str, Link] = {}
        for item in self.config.get("devices") or []:
            target = Target.from_config(item, self.config)
            self.links[target.address] = Link(target)
        discovery = self.config.get("discovery") or {}
        self.segment: Segment | None = None
        self.discovery_rounds = 0
        self.discovery_error: str | None = None
        self.discovered_once = asyncio.Event()
        self._discovery: asyncio.Task[None] | None = None
        if discovery.get("enabled") and discovery.get("target"):
            self.segment = segment_of(str(discovery["target"]))
            self._discovery = asyncio.create_task(self._discover_forever(discovery))
        else:
            self.discovered_once.set()
        log.info("reading %d Kasa device(s)%s", len(self.links), self._discovery_note())

    def _discovery_note(self) -> str:
        if self.segment is None:
            return ""
        return f", discovering on {self.segment.target} ({self.segment.network})"

    async def teardown(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
        await asyncio.gather(*(link.drop() for link in self.links.values()))

    # -- polling ---------------------------------------------------------------------------------------
    async def collect_metrics(self) -> Sequence[MetricLike]:
        links = list(self.links.values())
        results = await asyncio.gather(*(self._read(link) for link in links), return_exceptions=True)
        metrics: list[MetricLike] = []
        failed: list[str] = []
        for link, result in zip(links, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation, MemoryError: not a device's failure
                failed.append(f"{link.target.address}: {describe(result)}")
                # Said once when a device goes down (its health keeps the count), not on every poll.
                level = logging.WARNING if link.health.consecutive_errors == 1 else logging.DEBUG
                log.log(level, "kasa device %s skipped this poll: %s", link.target.address, describe(result))
                continue
            metrics.extend(result)
        if links and len(failed) == len(links):
            # Nothing answered: a failed poll (counted in `plugins status` with this as last_error),
            # not an empty success; one device down among others stays in its own health only.
            raise ConnectionError("no Kasa device answered: " + "; ".join(failed))
        return metrics

    @contextlib.asynccontextmanager
    async def _hold(self, link: Link) -> AsyncIterator[None]:
        """One device's turn, waiting for the lock included, within ``timeout``: a poll, a switch or
        a discovery request then never outlasts the manifest's limit, whatever the device does."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            async with asyncio.timeout_at(deadline):
                await link.lock.acquire()
        except TimeoutError as exc:  # busy with a call that has not timed out yet
            link.health.failed(describe(exc))
            raise
        try:
            async with asyncio.timeout_at(deadline):
                yield
        except TimeoutError as exc:
            await link.drop()  # still under the lock: a late answer must not meet the next request
            link.health.failed(describe(exc))
            raise
        finally:
            link.lock.release()

    async def _read(self, link: Link) -> list[MetricLike]:
        async with self._hold(link):
            await link.refresh(self.timeout)
            found: list[MetricLike] = []
            for channel in link.channels():
                for metric_type, value, unit in readings(channel):
                    found.append(self.metric(channel.device_id, metric_type, value, unit))
            return found

    # -- devices ---------------------------------------------------------------------------------------
    async def discover_devices(self) -> list[dict[str, Any]]:
        # The core asks right after the start: let the first discovery round finish and reach every
        # device not yet heard from, so the names are the devices' own.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._discovery_wait() + 1):
                await self.discovered_once.wait()
        # Not heard from yet: never connected, or found by discovery and not read since (its
        # channels and names are known only after a first update).
        silent = [link for link in self.links.values() if link.device is None or link.known_base is None]
        await asyncio.gather(*(self._contact(link) for link in silent))
        return [
            {"id": channel.device_id, "name": channel.name, "type": "plug"}
            for link in self.links.values()
            for channel in link.channels()
        ]

    async def _contact(self, link: Link) -> None:
        with contextlib.suppress(Exception):  # recorded in its health; the others still answer
            async with self._hold(link):
                await link.refresh(self.timeout)

    # -- switching -------------------------------------------------------------------------------------
    async def control_device(self, device_id: str, action: str) -> dict[str, Any]:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: use on, off or toggle")
        link, index = self._find(device_id)
        async with self._hold(link):
            # Fresh state first: toggle acts on what the device is, not on the last poll.
            device = await link.refresh(self.timeout)
            socket = self._socket(device, index, device_id)
            turn_on = not socket.is_on if action == "toggle" else action == "on"
            try:
                await (socket.turn_on() if turn_on else socket.turn_off())
            except Exception as exc:
                await link.drop()
                link.health.failed(describe(exc))
                raise
            # The state returned is the one the device reports after switching.
            device = await link.refresh(self.timeout)
            socket = self._socket(device, index, device_id)
            state = "on" if socket.is_on else "off"
        log.info("switched %s %s (now %s)", device_id, action, state)
        return {"state": state}

    def _find(self, device_id: str) -> tuple[Link, int | None]:
        for link in self.links.values():
            base = link.known_base or link.target.device_id
            if base is None:
                continue
            if device_id == base:
                if link.outlets:
                    raise ValueError(
                        f"{device_id!r} is a power strip: switch its outlets ({base}_0 ... "
                        f"{base}_{link.outlets - 1}) one by one"
                    )
                return link, None
            head, _, tail = device_id.rpartition("_")
            if head == base and tail.isdigit() and int(tail) < link.outlets:
                return link, int(tail)
        raise ValueError(f"{device_id!r} is not a Kasa plug or outlet this plugin knows")

    @staticmethod
    def _socket(device: Device, index: int | None, device_id: str) -> Device:
        if index is None:
            if device.children:
                raise ValueError(f"{device_id!r} is now a power strip: switch its outlets one by one")
            return device
        if index >= len(device.children):
            raise ValueError(f"{device_id!r}: the strip has no outlet {index} any more")
        return device.children[index]

    # -- discovery -------------------------------------------------------------------------------------
    def _discovery_wait(self) -> int:
        return int((self.config.get("discovery") or {}).get("wait", 3))

    async def _discover_forever(self, discovery: dict[str, Any]) -> None:
        interval = float(discovery.get("interval", 300))
        while True:
            try:
                await self._discover_once(discovery)
                self.discovery_error = None
            except Exception as exc:  # the listed devices are polled regardless; next round retries
                self.discovery_error = describe(exc)
                log.warning("kasa discovery on %s failed: %s", discovery.get("target"), self.discovery_error)
            finally:
                self.discovery_rounds += 1
                self.discovered_once.set()
            await asyncio.sleep(interval)

    async def _discover_once(self, discovery: dict[str, Any]) -> None:
        assert self.segment is not None
        username = self.config.get("username")
        credentials = Credentials(username, self.config.get("password") or "") if username else None
        port = discovery.get("port")
        wait = self._discovery_wait()
        async with asyncio.timeout(wait + self.timeout + 5):
            found = await Discover.discover(
                target=self.segment.target,
                discovery_timeout=wait,
                port=port,
                credentials=credentials,
                timeout=max(1, int(self.timeout)),
            )
        added = False
        for host, device in found.items():
            if not self.segment.holds(host):
                # Never poll an address outside the configured segment, whatever answered.
                log.warning("ignoring a discovery answer from %s: outside %s", host, self.segment.network)
                await device.disconnect()
                continue
            target = Target(
                host=host,
                port=port if port != 9999 else None,
                username=username,
                password=self.config.get("password"),
                transport="auto",
                discovered=True,
            )
            mac = (device.mac or "").lower()
            if target.address in self.links or any(mac and link.mac == mac for link in self.links.values()):
                await device.disconnect()  # listed in the config (or found before): polled already
                continue
            # The discovered object already knows its transport; the first poll updates it.
            link = Link(target, device=device, params=device.config.connection_type)
            self.links[target.address] = link
            log.info("discovered a Kasa device at %s (%s)", host, device.model)
            added = True
        if added and self.discovered_once.is_set():
            # Found after the core's first question: it asks again and registers the names.
            self.devices_changed()

    # -- health ----------------------------------------------------------------------------------------
    async def get_health(self) -> dict[str, Any]:
        health = await super().get_health()
        health["devices"] = {link.key: link.health_record() for link in self.links.values()}
        if self.segment is not None:
            health["discovery"] = {
                "target": self.segment.target,
                "rounds": self.discovery_rounds,
                "last_error": self.discovery_error,
            }
        return health

    def channels(self) -> list[Channel]:
        return [channel for link in self.links.values() for channel in link.channels()]
