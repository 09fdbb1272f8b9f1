"""The MQTT southbound: measures published on ``/<apikey>/<device_id>/attrs``.

A paho-mqtt client (MQTT 5, QoS 1) runs its network loop in its own thread and hands
messages to the event loop in bursts. Acknowledgements are manual: a message is
acknowledged only after the agent committed it, and the session is persistent
(``clean_start`` off, a session expiry), so the MQTT broker re-sends whatever was not
acknowledged when this node, the broker or the connection went down. Reconnection is
paho's, with exponential back-off. Topics follow the FIWARE IoT Agent for JSON:
``/<apikey>/<device_id>/attrs`` and ``/json/<apikey>/<device_id>/attrs`` carry a JSON
object (or array) of measures; ``.../attrs/<name>`` carries one raw value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from urbanstack.ingest.agent import DeviceMessage, IngestAgent, IngestOutcome
from urbanstack.ingest.paho_tables import share_property_tables
from urbanstack.ngsild.model import now_timestamp
from urbanstack.store.base import EntityStore

LOGGER = logging.getLogger(__name__)
TOPICS = ("/+/+/attrs", "/+/+/attrs/+", "/json/+/+/attrs", "/json/+/+/attrs/+")
SESSION_EXPIRY_S = 7 * 24 * 3600


def parse_topic(topic: str) -> tuple[str, str, str | None] | None:
    """(apikey, device id, single attribute or None) of a southbound topic, else None."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "":
        return None
    rest = parts[2:] if parts[1] == "json" and len(parts) >= 5 else parts[1:]
    if len(rest) == 3 and rest[2] == "attrs":
        return rest[0], rest[1], None
    if len(rest) == 4 and rest[2] == "attrs" and rest[3]:
        return rest[0], rest[1], rest[3]
    return None


def single_value(payload: bytes) -> Any:
    """The value of a single-attribute message: its text (the mapping converts it)."""
    return payload.decode("utf-8", "replace").strip()


class MqttSouthbound:
    """Subscribes to the device topics and feeds the agent; see the module docstring."""

    def __init__(
        self,
        agent: IngestAgent,
        url: str,
        *,
        client_id: str,
        receive_maximum: int = 2000,
        shared_group: str = "",
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, not {url!r}")
        self.agent = agent
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.tls = parts.scheme == "mqtts"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.client_id = client_id
        self.receive_maximum = receive_maximum
        self.shared_group = shared_group
        self.reconnect = (reconnect_min_s, reconnect_max_s)
        self.connected = threading.Event()
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: deque[tuple[int, mqtt.MQTTMessage]] = deque()
        self._drain_scheduled = False
        self._lock = threading.Lock()
        self._generation = 0  # connections so far: a message id is only valid in its own

    async def start(self) -> None:
        """Connect in the background (retrying with back-off) and start receiving."""
        self._loop = asyncio.get_running_loop()
        share_property_tables()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        client.reconnect_delay_set(int(max(1, self.reconnect[0])), int(self.reconnect[1]))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = self.receive_maximum
        client.connect_async(
            self.host, self.port, keepalive=30, clean_start=False, properties=properties
        )
        client.loop_start()
        self._client = client

    async def stop(self) -> None:
        """Disconnect (unacknowledged messages stay with the MQTT broker's session)."""
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, client.loop_stop)

    # --- paho's thread

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            LOGGER.warning("MQTT connection to %s:%d refused: %s", self.host, self.port, reason)
            return
        with self._lock:
            self._generation += 1
        prefix = f"$share/{self.shared_group}/" if self.shared_group else ""
        client.subscribe([(prefix + topic, 1) for topic in TOPICS])
        self.connected.set()
        LOGGER.info("MQTT southbound connected to %s:%d", self.host, self.port)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        if self._client is not None:
            LOGGER.warning("MQTT southbound disconnected (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._inbox.append((self._generation, message))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: we are shutting down
            self._loop.call_soon_threadsafe(self._drain)

    # --- the event loop

    def _drain(self) -> None:
        with self._lock:
            items = list(self._inbox)
            self._inbox.clear()
            self._drain_scheduled = False
        arrival = now_timestamp()  # one burst, one arrival time: formatting it is not free
        for generation, message in items:
            self._submit(generation, message, arrival)

    def _submit(self, generation: int, message: mqtt.MQTTMessage, arrival: str) -> None:
        parsed = parse_topic(message.topic)
        if parsed is None:
            self._ack(generation, message, None)
            return
        apikey, device_id, attribute = parsed
        payload: Any = message.payload
        if attribute is not None:
            payload = {attribute: single_value(message.payload)}

        def done(outcome: IngestOutcome | BaseException) -> None:
            self._ack(generation, message, outcome)

        self.agent.submit(DeviceMessage(apikey, device_id, payload, "MQTT", arrival, done))

    def _ack(
        self,
        generation: int,
        message: mqtt.MQTTMessage,
        outcome: IngestOutcome | BaseException | None,
    ) -> None:
        if isinstance(outcome, BaseException):
            return  # not written: the broker re-sends it after the next reconnection
        client = self._client
        if client is None or message.qos == 0 or generation != self._generation:
            return  # that connection is gone: the broker re-sends the message
        client.ack(message.mid, message.qos)


MQTT_LOCK = "mqtt-southbound"
ELECTION_RETRY_S = 5.0


async def run_when_elected(
    southbound: MqttSouthbound, store: EntityStore, retry: float = ELECTION_RETRY_S
) -> None:
    """Start ``southbound`` once this process holds the store-wide MQTT lock: with several
    API processes one of them, always with the same client id (hence the same persistent
    session), receives the device messages; another takes over if it goes away."""
    while not await store.try_lock(MQTT_LOCK):
        await asyncio.sleep(retry)
    await southbound.start()
