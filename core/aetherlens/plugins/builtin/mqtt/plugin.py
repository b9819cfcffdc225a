"""The ``mqtt`` plugin: subscribe (QoS 1), map each message to readings, push them with ``emit``.

One task keeps the broker connection (reconnecting with backoff: 1 s doubling to ``reconnect_max``)
and turns messages into metrics; another hands them to the core in batches. The session is
persistent (``clean_session=False`` with a stable client id), so QoS 1 messages published while the
plugin is reconnecting wait at the broker instead of being lost; and a message is acknowledged to the
broker only once the core took its readings (``acks``), so a crash loses none either. A message that
does not fit its mapping is counted (``malformed`` in the health) and logged with its topic; it never
ends the plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aiomqtt

from aetherlens.plugins.builtin.mqtt import acks, discovery, presets
from aetherlens.plugins.builtin.mqtt.mapping import (
    Malformed,
    NoValue,
    Reading,
    Subscription,
    check_filter,
    check_template,
    matches,
    split_path,
)
from aetherlens.plugins.sdk import BasePlugin, Emit, emit_until_taken

BATCH_MAX: Final = 1000
QUEUE_MAX: Final = 20_000
QOS: Final = 1


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Broker:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"'{url}' is not mqtt://host[:port] or mqtts://host[:port]")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls)


Handler = Callable[[str, bytes], list[Reading] | None]


class MqttPlugin(BasePlugin):
    capabilities = ("metrics.push",)

    def validate_config(self, config: dict[str, Any]) -> list[str]:
        key = f"plugins.{self.plugin_id}.config"
        problems: list[str] = []
        try:
            Broker.parse(str(config.get("broker", "")))
        except ValueError as exc:
            problems.append(f"{key}.broker: {exc}")
        for i, item in enumerate(config.get("subscriptions") or []):
            try:
                check_filter(str(item["topic"]))
            except ValueError as exc:
                problems.append(f"{key}.subscriptions[{i}].topic: {exc}")
            try:
                check_template(str(item["device_id"]))
            except ValueError as exc:
                problems.append(f"{key}.subscriptions[{i}].device_id: {exc}")
            if item.get("path"):
                try:
                    split_path(str(item["path"]))
                except ValueError as exc:
                    problems.append(f"{key}.subscriptions[{i}].path: {exc}")
        if not config.get("presets") and not config.get("subscriptions"):
            problems.append(f"{key}: give 'presets' or 'subscriptions' (or both); nothing would be read")
        if config.get("ca_file") and not str(config["broker"]).startswith("mqtts://"):
            problems.append(f"{key}.ca_file: only used with an mqtts:// broker")
        return problems

    async def setup(self) -> None:
        self.broker = Broker.parse(self.config["broker"])
        self.subscriptions = [Subscription.from_config(s) for s in self.config.get("subscriptions") or []]
        chosen = set(self.config.get("presets") or [])
        self.prefix = str(self.config.get("discovery_prefix") or "homeassistant")
        self.filters: list[str] = [s.topic for s in self.subscriptions]
        self.handlers: list[tuple[str, Handler]] = []
        if "shelly_gen2" in chosen:
            self.filters += presets.SHELLY_FILTERS
            self.handlers += [(f, presets.shelly_gen2) for f in presets.SHELLY_FILTERS]
        if "tasmota" in chosen:
            self.filters += presets.TASMOTA_FILTERS
            self.handlers += [(f, presets.tasmota) for f in presets.TASMOTA_FILTERS]
        self.discovery = "ha_discovery" in chosen
        if self.discovery:
            self.filters += discovery.filters(self.prefix)
        self.filters = list(dict.fromkeys(self.filters))
        self.sensors: dict[str, discovery.Sensor] = {}  # config topic -> sensor
        self.client_id = self.config.get("client_id") or self._stable_client_id()
        self.queue: asyncio.Queue[tuple[dict[str, Any], acks.Delivery]] = asyncio.Queue(QUEUE_MAX)
        self.acks = acks.AckQueue()
        self.connected = False
        self.subscribed = False
        self.connections = 0
        self.messages = 0
        self.readings = 0
        self.malformed = 0
        self.malformed_topics: Counter[str] = Counter()
        self.ignored: dict[str, str] = {}
        self.delivered = 0
        self.rejected = 0
        self.last_error: str | None = None

    def _stable_client_id(self) -> str:
        # A persistent session needs the same id on every connection of this instance, and a different
        # one from every other instance and core: made once, kept in the instance's state folder.
        path = self.state_dir / "client_id"
        if path.exists():
            return path.read_text().strip()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        made = f"aetherlens-{self.plugin_id}-{uuid.uuid4().hex[:12]}"
        path.write_text(made)
        return made

    def _tls(self) -> ssl.SSLContext | None:
        if not self.broker.tls:
            return None
        return ssl.create_default_context(cafile=self.config.get("ca_file") or None)

    # -- the push path -----------------------------------------------------------------------------------
    async def run(self, emit: Emit) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._connection())
            group.create_task(self._deliver(emit))

    async def _deliver(self, emit: Emit) -> None:
        while True:
            items = [await self.queue.get()]
            while len(items) < BATCH_MAX and not self.queue.empty():
                items.append(self.queue.get_nowait())
            batch = [metric for metric, _ in items]
            # Waits while the core's write queue is full; resends what the core refused.
            result, refusal = await emit_until_taken(emit, batch, self.log)
            if refusal is not None:
                self.last_error = refusal
            # Taken (accepted or rejected for its content, which a resend would not change): the
            # broker may forget these messages now.
            self.acks.taken(delivery for _, delivery in items)
            self.delivered += result.accepted
            self.rejected += len(result.rejected)
            for rejection in result.rejected[:3]:
                item = batch[int(rejection["index"])]
                self.log.warning(
                    "the core rejected %s %s: %s", item["device_id"], item["metric_type"], rejection["reason"]
                )

    async def _connection(self) -> None:
        delay = 1.0
        ceiling = float(self.config.get("reconnect_max") or 60)
        while True:
            try:
                client = aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.config.get("username"),
                    password=self.config.get("password"),
                    identifier=self.client_id,
                    clean_session=False,
                    keepalive=int(self.config.get("keepalive") or 60),
                    tls_context=self._tls(),
                    logger=self.log,
                )
                acks.enable(client)
                self.acks.connected(client)
                async with client:
                    self.connected = True
                    self.connections += 1
                    delay = 1.0
                    self.log.info(
                        "connected to %s:%s as %s", self.broker.host, self.broker.port, self.client_id
                    )
                    for topic_filter in self.filters:
                        await client.subscribe(topic_filter, qos=QOS)
                    for topic in {s.state_topic for s in self.sensors.values()}:
                        await client.subscribe(topic, qos=QOS)
                    self.subscribed = True
                    async for message in client.messages:
                        await self._on_message(client, message)
            except aiomqtt.MqttError as exc:
                # The broker went away, refused us or never answered: wait and try again, for ever.
                self.last_error = f"broker {self.broker.host}:{self.broker.port}: {exc}"
                self.log.warning("%s; reconnecting in %.0f s", self.last_error, delay)
            finally:
                self.connected = self.subscribed = False
            await asyncio.sleep(delay)
            delay = min(ceiling, delay * 2)

    async def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        self.messages += 1
        received = time.time()
        readings: list[Reading] = []
        try:
            readings = await self._readings(client, topic, payload)
        except NoValue:
            pass
        except Malformed as exc:
            self._malformed(topic, str(exc), payload)
        except Exception as exc:  # a mapping bug must not end the plugin: count it like bad input
            self._malformed(topic, f"{type(exc).__name__}: {exc}", payload)
        # A message without readings is done at once (in its turn: acknowledgements keep their order).
        delivery = self.acks.received(client, message, len(readings))
        for reading in readings:
            self.readings += 1
            # Waits when the core is slow (queue full): the broker then holds the rest (QoS 1).
            await self.queue.put(
                (
                    self.metric(
                        reading.device_id, reading.metric_type, reading.value, reading.unit, time=received
                    ),
                    delivery,
                )
            )

    def _malformed(self, topic: str, reason: str, payload: bytes) -> None:
        self.malformed += 1
        self.malformed_topics[topic] += 1
        self.log.warning("malformed payload on %s: %s (payload %r)", topic, reason, payload[:120])

    async def _readings(self, client: aiomqtt.Client, topic: str, payload: bytes) -> list[Reading]:
        if self.discovery and discovery.is_config_topic(topic, self.prefix):
            await self._on_discovery(client, topic, payload)
            return []
        out: list[Reading] = []
        for sensor in self.sensors.values():
            if sensor.state_topic == topic:
                with contextlib.suppress(NoValue):
                    out.append(sensor.reading(payload))
        for subscription in self.subscriptions:
            if matches(topic, subscription.topic):
                out += subscription.readings(topic, payload)
        seen: set[Handler] = set()
        for topic_filter, handler in self.handlers:
            if handler not in seen and matches(topic, topic_filter):
                seen.add(handler)
                out += handler(topic, payload) or []
        return out

    async def _on_discovery(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        try:
            sensor = discovery.parse_config(topic, payload)
        except discovery.Ignored as exc:
            if self.ignored.get(topic) != str(exc):
                self.log.info("ignoring discovered sensor %s: %s", topic, exc)
            self.ignored[topic] = str(exc)
            self.sensors.pop(topic, None)
            return
        if sensor is None:  # an empty config removes the sensor
            removed = self.sensors.pop(topic, None)
            if removed is not None:
                self.log.info("discovered sensor %s removed", topic)
                if all(s.state_topic != removed.state_topic for s in self.sensors.values()):
                    with contextlib.suppress(aiomqtt.MqttError):
                        await client.unsubscribe(removed.state_topic)
            return
        self.ignored.pop(topic, None)
        known = any(s.state_topic == sensor.state_topic for s in self.sensors.values())
        if self.sensors.get(topic) != sensor:
            self.log.info(
                "discovered %s: %s of %s from %s",
                topic,
                sensor.metric_type,
                sensor.device_id,
                sensor.state_topic,
            )
        self.sensors[topic] = sensor
        if not known:
            await client.subscribe(sensor.state_topic, qos=QOS)

    async def get_health(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "subscribed": self.subscribed,
            "connections": self.connections,
            "messages": self.messages,
            "readings": self.readings,
            "delivered": self.delivered,
            "rejected": self.rejected,
            "malformed": self.malformed,
            "malformed_topics": dict(self.malformed_topics.most_common(10)),
            "discovered_sensors": len(self.sensors),
            "ignored_sensors": len(self.ignored),
            "queued": self.queue.qsize(),
            "unacknowledged": self.acks.waiting,
            "acknowledged": self.acks.acknowledged,
            "last_error": self.last_error,
        }
