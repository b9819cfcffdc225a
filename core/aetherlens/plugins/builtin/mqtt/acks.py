"""Acknowledging QoS 1 messages to the broker only once the core has taken their readings.

paho (under aiomqtt) acknowledges a message the moment it arrives, so readings still waiting in the
plugin's queue (the core's write queue full, say) would be lost with the process: the broker thinks
they were delivered. With manual acknowledgement the broker keeps every message until the core took
what it said, and sends it again to the same persistent session after a crash or a reconnect. The
broker's in-flight window (mosquitto's ``max_inflight_messages``, 20 by default) then also carries
the core's backpressure back to the broker.

Acknowledgements go out in the order the messages came, as MQTT 3.1.1 (4.6) asks of a receiver. A
message of the connection before the current one cannot be acknowledged any more (its packet id
belongs to that connection): the broker sends it again, so its readings may arrive twice, at a new
time. At least once, never lost.

aiomqtt does not expose paho's manual acknowledgement yet (empicano/aiomqtt#345): ``enable`` and the
acknowledgement itself reach paho's own public ``manual_ack_set`` / ``ack`` through the aiomqtt
client's paho client, in this module only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import aiomqtt


def enable(client: aiomqtt.Client) -> None:
    """Call before connecting: messages a persistent session holds arrive right after the CONNACK."""
    client._client.manual_ack_set(True)  # private: see the module docstring


@dataclass(slots=True, eq=False)
class Delivery:
    """One received message and how many of its readings the core has not taken yet."""

    client: aiomqtt.Client
    mid: int
    qos: int
    remaining: int


class AckQueue:
    def __init__(self) -> None:
        self._pending: deque[Delivery] = deque()
        self._current: aiomqtt.Client | None = None
        self.acknowledged = 0

    def connected(self, client: aiomqtt.Client) -> None:
        """A new connection: what the old one received can no longer be acknowledged."""
        self._current = client

    def received(self, client: aiomqtt.Client, message: aiomqtt.Message, readings: int) -> Delivery:
        delivery = Delivery(client, message.mid, message.qos, readings)
        self._pending.append(delivery)
        self._release()
        return delivery

    def taken(self, deliveries: Iterable[Delivery]) -> None:
        """The core took one reading of each of these (a delivery appears once per reading)."""
        for delivery in deliveries:
            delivery.remaining -= 1
        self._release()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def _release(self) -> None:
        while self._pending and self._pending[0].remaining <= 0:
            delivery = self._pending.popleft()
            if delivery.qos > 0 and delivery.client is self._current:
                delivery.client._client.ack(delivery.mid, delivery.qos)
                self.acknowledged += 1
