"""The MQTT southbound: measures published on ``/<apikey>/<device_id>/attrs``.

A paho-mqtt client (MQTT 5, QoS 1) runs in a child process (:mod:`.mqtt_process`), so
that decoding packets does not compete with the API for the interpreter lock; it hands
messages to this process in batches. Acknowledgements are manual: a message is
acknowledged only after the agent committed it, and the session is persistent
(``clean_start`` off, a session expiry), so the MQTT broker re-sends whatever was not
acknowledged when this node, the child, the broker or the connection went down. If the
child dies it is started again (with back-off). Reconnection is paho's, with exponential
back-off. Topics follow the FIWARE IoT Agent for JSON: ``/<apikey>/<device_id>/attrs`` and
``/json/<apikey>/<device_id>/attrs`` carry a JSON object (or array) of measures;
``.../attrs/<name>`` carries one raw value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import unquote, urlsplit

from urbanstack.ingest.agent import DeviceMessage, IngestAgent, IngestOutcome
from urbanstack.ingest.mqtt_process import ClientConfig, run_client
from urbanstack.ngsild.model import now_timestamp
from urbanstack.runtime import starting_cpus
from urbanstack.store.base import EntityStore

LOGGER = logging.getLogger(__name__)
#: seconds before starting a child that died, doubled each time up to the maximum (and back
#: to the minimum once a child got connected)
CHILD_RESTART_S = (0.5, 30.0)
#: seconds a child has to end after the stop message before it is killed
CHILD_STOP_S = 10.0


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
        self.config = ClientConfig(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            client_id=client_id,
            receive_maximum=receive_maximum,
            shared_group=shared_group,
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=reconnect_max_s,
            log_level=logging.getLogger("urbanstack").getEffectiveLevel(),
        )
        self.connected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._child: Any = None  # multiprocessing.Process
        self._acks_out: Connection | None = None
        self._acks: list[tuple[int, int, int]] = []
        self._generation = 0  # the child's connections: a message id is valid in its own
        self._children = 0  # children started: a new child starts its generations anew
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._connected_once = False
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        """``standby`` (not started: another process receives), ``connecting`` or
        ``subscribed`` (measures published from now on reach this node)."""
        if self._supervisor is None:
            return "standby"
        return "subscribed" if self.connected.is_set() else "connecting"

    async def start(self) -> None:
        """Start the child (connecting in the background, retrying with back-off)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._supervisor = asyncio.create_task(self._supervise(), name="mqtt-child")

    async def stop(self) -> None:
        """Stop the child (unacknowledged messages stay with the MQTT broker's session);
        one that does not end within :data:`CHILD_STOP_S` is killed."""
        self._stopping = True
        self._stop_requested.set()
        self._send_acks()
        if self._acks_out is not None:
            with contextlib.suppress(OSError):
                self._acks_out.send(("stop",))
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(supervisor), CHILD_STOP_S)
        except TimeoutError:
            LOGGER.warning("MQTT client process did not stop in %.0f s: killed", CHILD_STOP_S)
            if self._child is not None:
                self._child.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(supervisor, CHILD_STOP_S)
        except Exception:
            LOGGER.exception("MQTT client supervisor failed")

    async def _supervise(self) -> None:
        delay = CHILD_RESTART_S[0]
        while not self._stopping:
            try:
                connected_once = await self._run_child()
            except Exception:
                LOGGER.exception("MQTT client process could not run")
                connected_once = False
            if self._stopping:
                break
            if connected_once:
                delay = CHILD_RESTART_S[0]
            LOGGER.warning("MQTT client process ended; restarting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay)
            delay = min(delay * 2, CHILD_RESTART_S[1])

    async def _run_child(self) -> bool:
        """Run one child until it ends; True if it got connected meanwhile."""
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        messages_in, messages_out = context.Pipe(duplex=False)
        acks_in, acks_out = context.Pipe(duplex=False)
        try:
            child = context.Process(
                target=run_client,
                args=(replace(self.config, cpus=starting_cpus()), messages_out, acks_in),
                name="urbanstack-mqtt",
                daemon=True,
            )
            child.start()
            messages_out.close()
            acks_in.close()
            self._children += 1
            self._child, self._acks_out = child, acks_out
            self._connected_once = False
            ended = loop.create_future()
            reader = threading.Thread(
                target=self._read_child,
                args=(messages_in, self._children, child, ended),
                name="mqtt-child-reader",
                daemon=True,
            )
            reader.start()
            await ended
            return self._connected_once
        finally:
            self.connected.clear()
            self._acks_out = None
            self._acks.clear()
            for conn in (messages_in, messages_out, acks_in, acks_out):
                conn.close()

    # --- the reader thread

    def _read_child(
        self, conn: Connection, child_number: int, child: Any, ended: asyncio.Future[None]
    ) -> None:
        """Forward the child's items to the event loop until its pipe ends; then make sure
        the child ended too and settle ``ended``."""
        loop = self._loop
        assert loop is not None
        try:
            while True:
                item = conn.recv()
                with contextlib.suppress(RuntimeError):  # a closed loop: shutting down
                    loop.call_soon_threadsafe(self._from_child, child_number, item)
        except (EOFError, OSError):
            pass
        except Exception:
            LOGGER.exception("unreadable item from the MQTT client process: killing it")
            child.kill()
        child.join()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, ended)

    # --- the event loop

    def _from_child(self, child: int, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "messages":
            arrival = now_timestamp()  # one burst, one arrival time: formatting it is not free
            for generation, mid, qos, topic, payload in item[1]:
                self._submit((child, generation), mid, qos, topic, payload, arrival)
        elif kind == "connection" and child == self._children:
            self._generation = item[1]  # acks of this connection's messages count from now
        elif kind == "connected" and child == self._children:
            self._generation = item[1]
            self._connected_once = True
            self.connected.set()
        elif kind == "disconnected" and child == self._children:
            self.connected.clear()

    def _submit(
        self, origin: tuple[int, int], mid: int, qos: int, topic: str, payload: bytes, arrival: str
    ) -> None:
        parsed = parse_topic(topic)
        if parsed is None:
            self._ack(origin, mid, qos, None)
            return
        apikey, device_id, attribute = parsed
        body: Any = payload
        if attribute is not None:
            body = {attribute: single_value(payload)}

        def done(outcome: IngestOutcome | BaseException) -> None:
            self._ack(origin, mid, qos, outcome)

        self.agent.submit(DeviceMessage(apikey, device_id, body, "MQTT", arrival, done))

    def _ack(
        self,
        origin: tuple[int, int],
        mid: int,
        qos: int,
        outcome: IngestOutcome | BaseException | None,
    ) -> None:
        if isinstance(outcome, BaseException):
            return  # not written: the broker re-sends it after the next reconnection
        child, generation = origin
        if qos == 0 or child != self._children or generation != self._generation:
            return  # that connection is gone: the broker re-sends the message
        if not self._acks:
            assert self._loop is not None
            self._loop.call_soon(self._send_acks)
        self._acks.append((generation, mid, qos))

    def _send_acks(self) -> None:
        acks, self._acks = self._acks, []
        if acks and self._acks_out is not None:
            with contextlib.suppress(OSError):  # the child is gone: the broker re-sends
                self._acks_out.send(("ack", acks))


MQTT_LOCK = "mqtt-southbound"
ELECTION_RETRY_S = 5.0
LOCK_WATCH_S = 0.5


async def run_when_elected(
    southbound: MqttSouthbound,
    store: EntityStore,
    retry: float = ELECTION_RETRY_S,
    watch: float = LOCK_WATCH_S,
) -> None:
    """Run ``southbound`` while this process holds the store-wide MQTT lock: with several
    API processes one of them, always with the same client id (hence the same persistent
    session), receives the device messages; another takes over if it goes away. A process
    that loses the lock (its database connection dropped) stops receiving until elected
    again: the messages it did not acknowledge stay with the MQTT broker's session. (The
    database frees the lock a moment before the process hears of the loss; while both run,
    their shared client id leaves the MQTT broker one connection.)"""
    while True:
        while not await store.try_lock(MQTT_LOCK):
            await asyncio.sleep(retry)
        await southbound.start()
        while store.holds_lock(MQTT_LOCK):
            await asyncio.sleep(watch)
        LOGGER.warning("lost the MQTT lock: the MQTT receiver stops until elected again")
        await southbound.stop()
