"""The MQTT client of the southbound, in a child process of its own.

paho-mqtt decodes every packet in Python (reads, PUBLISH decoding, message objects) and its
network thread took a third of the server's interpreter lock at 5,000 measures a second,
competing with the API and the writer. Here it runs in a child process: received messages
go to the parent in batches over a pipe, and the parent sends back, in batches, the ids of
the messages it committed, which the child acknowledges (PUBACK). Nothing is acknowledged
that the parent did not commit, so the guarantees of :mod:`urbanstack.ingest.mqtt` hold
whichever process stops: the MQTT broker re-sends what was not acknowledged.

Parent → child: ``("ack", [(generation, mid, qos), ...])`` and ``("stop",)``.
Child → parent: ``("connection", generation)`` (on CONNACK: acks of that connection's
messages count), ``("connected", generation)`` (once subscribed), ``("disconnected", reason)``
and ``("messages", [(generation, mid, qos, topic, payload), ...])``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

#: the forwarder waits this long after the first message of a batch for more to join it
FORWARD_GATHER_S = 0.001
TOPICS = ("/+/+/attrs", "/+/+/attrs/+", "/json/+/+/attrs", "/json/+/+/attrs/+")
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True)
class ClientConfig:
    """How the child connects (everything picklable)."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None = field(repr=False)
    client_id: str
    receive_maximum: int
    shared_group: str
    reconnect_min_s: float
    reconnect_max_s: float
    log_level: int = logging.WARNING
    #: the CPUs to run on (the parent's, before it pinned its serving threads), or None
    cpus: frozenset[int] | None = None


def run_client(config: ClientConfig, to_parent: Connection, from_parent: Connection) -> None:
    """The child process's entry point: receive, forward, acknowledge, until told to stop
    or until the parent goes away."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from urbanstack.ingest.paho_tables import share_property_tables

    # the parent decides when this process ends (stop message or its end of the pipe), not
    # the Ctrl-C or SIGTERM sent to the whole process group
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if config.cpus:  # started from a thread pinned to one CPU: run on all of them again
        os.sched_setaffinity(0, config.cpus)
    logging.basicConfig(level=config.log_level, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("urbanstack.ingest.mqtt")
    share_property_tables()
    send_lock = threading.Lock()
    pending: list[tuple[int, int, int, str, bytes]] = []
    pending_lock = threading.Lock()
    have_messages = threading.Event()
    connections = 0
    generation = 0  # the current connection's number; 0 while disconnected
    stopping = threading.Event()

    def send(item: Any) -> None:
        try:
            with send_lock:
                to_parent.send(item)
        except OSError:  # the parent is gone; the main loop notices and stops
            pass

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=config.client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls:
        client.tls_set()
    client.reconnect_delay_set(int(max(1, config.reconnect_min_s)), int(config.reconnect_max_s))

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        nonlocal generation, connections
        if reason.is_failure:
            log.warning("MQTT connection to %s:%d refused: %s", config.host, config.port, reason)
            return
        with pending_lock:
            connections += 1
            generation = connections
        # before any message of this connection is forwarded: a resumed session's queued
        # messages come right after CONNACK, before the SUBACK, and their acks must count
        send(("connection", generation))
        prefix = f"$share/{config.shared_group}/" if config.shared_group else ""
        client.subscribe([(prefix + topic, 1) for topic in TOPICS])
        log.info("MQTT southbound connected to %s:%d", config.host, config.port)

    def on_subscribe(
        client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.warning("MQTT broker refused the device topics: %s", failed)
            return
        with pending_lock:
            current = generation
        send(("connected", current))  # subscribed: from now on measures reach us

    def on_disconnect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        nonlocal generation
        with pending_lock:  # acks of this connection stop here, before paho reconnects
            generation = 0
        send(("disconnected", str(reason)))
        if not stopping.is_set():
            log.warning("MQTT southbound disconnected (%s); reconnecting", reason)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with pending_lock:
            pending.append((generation, message.mid, message.qos, message.topic, message.payload))
        have_messages.set()

    def forward() -> None:
        while not stopping.is_set():
            have_messages.wait()
            stopping.wait(FORWARD_GATHER_S)
            with pending_lock:
                batch = pending[:]
                pending.clear()
                have_messages.clear()
            if batch:
                send(("messages", batch))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    properties.ReceiveMaximum = config.receive_maximum
    client.connect_async(
        config.host, config.port, keepalive=30, clean_start=False, properties=properties
    )
    # paho's own network thread (loop_start, which runs loop_forever retrying the first
    # connection): only then does paho hand packets queued by other threads (our PUBACKs)
    # to that thread; with a thread of our own it wrote them to the socket from the calling
    # thread, concurrently with the network thread's writes
    client.loop_start()
    network: threading.Thread | None = client._thread  # paho names no public handle
    forwarder = threading.Thread(target=forward, name="mqtt-forward", daemon=True)
    forwarder.start()
    exit_code = 0
    try:
        while True:
            try:
                if not from_parent.poll(1.0):
                    if network is not None and not network.is_alive():  # paho's loop died
                        log.error("the MQTT network loop stopped; the client process ends")
                        exit_code = 1
                        break
                    continue
                item = from_parent.recv()
            except (EOFError, OSError):
                break  # the parent is gone: so is everything it did not acknowledge
            if item[0] == "stop":
                break
            # under the lock: on_disconnect cannot end the connection halfway through, and
            # no PUBACK of an ended connection reaches the next one
            with pending_lock:
                for gen, mid, qos in item[1]:
                    if gen == generation and qos > 0:
                        client.ack(mid, qos)
    finally:
        stopping.set()
        have_messages.set()
        client.disconnect()
        if network is not None:
            network.join(10)
    if exit_code:
        sys.exit(exit_code)
