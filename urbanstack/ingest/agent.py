"""The ingestion agent: device messages in, entity updates out, in batches.

Southbound adapters (MQTT, HTTP) hand each message to :meth:`IngestAgent.submit`. The
agent gathers what arrives while the previous batch is being written, decodes every
message against its device's mappings (while that previous write runs: the store's
writer thread waits on the disk at every commit, time the event loop uses), and writes
the whole batch, after the previous one, with one ``change_entities`` call per tenant:
one transaction, one change per entity, every measure recorded as its own history
instance, so subscriptions and the temporal API see device data like any other update.
A message's completion callback runs only after that commit (MQTT acknowledges then), so
an accepted measure is never lost.
Rejected values go to a bounded dead-letter log; counts, last-seen times and the
``status`` attribute (online/offline after a silence) are kept per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from urbanstack.broker.caller import Caller
from urbanstack.broker.entities import Broker
from urbanstack.broker.temporal import keep_latest_instances
from urbanstack.ingest.measures import (
    DecodedMeasure,
    Rejected,
    Rejection,
    decode_measure,
    decode_payload,
    static_instances,
)
from urbanstack.ingest.provisioning import Device, Group, device_key
from urbanstack.ingest.registry import DEVICES, DeviceRegistry
from urbanstack.ngsild.errors import BadRequestData, NgsiLdError, ResourceNotFound
from urbanstack.ngsild.history import HistoryRow, history_row
from urbanstack.ngsild.jsonld import TermMap, core_term_map
from urbanstack.ngsild.model import Entity, Instance, now_timestamp, parse_entity_types, touch
from urbanstack.store.base import EntityChange, Keep, RecordChange, StoreError, Write

LOGGER = logging.getLogger(__name__)
DEAD_LETTERS = "iot-dead-letter"
STATUS = "status"
MAX_DEAD_VALUE = 200  # characters of a rejected value kept in the dead-letter log
STORE_RETRY_MAX_S = 30.0


@dataclass
class IngestOutcome:
    """What became of one message: values accepted, values rejected (with reasons), or
    ``error`` when the whole message was refused (unknown device, not JSON)."""

    entity_id: str | None = None
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    error: NgsiLdError | None = None
    #: the tenant once the apikey is known, and (tenant, device id) once the device is
    service: str | None = None
    device: tuple[str | None, str] | None = None


Done = Callable[[IngestOutcome | BaseException], None]


@dataclass
class DeviceMessage:
    """One message from a device, as a southbound adapter received it."""

    apikey: str
    device_id: str
    payload: Any  # bytes (MQTT, HTTP) or already-decoded JSON
    transport: str = "MQTT"
    arrival: str = field(default_factory=now_timestamp)
    done: Done | None = None


@dataclass
class _DeviceStats:
    service: str | None
    device_id: str
    measures: int = 0
    rejected: int = 0
    last_seen: str = ""
    online: bool = False


@dataclass
class _EntityBatch:
    """Everything one batch writes to one entity."""

    entity_id: str
    types: list[str]
    #: the static attributes and location, computed only when the entity must be created
    statics: Callable[[], dict[str, Instance]]
    attrs: dict[str, list[Instance]] = field(default_factory=dict)
    history: list[HistoryRow] = field(default_factory=list)
    messages: list[tuple[DeviceMessage, IngestOutcome]] = field(default_factory=list)


@dataclass
class _DecodedBatch:
    """A batch of messages decoded into entity changes, waiting to be written."""

    now: str
    outcomes: list[tuple[DeviceMessage, IngestOutcome]] = field(default_factory=list)
    by_tenant: dict[str | None, dict[str, _EntityBatch]] = field(default_factory=dict)


def _seconds_since(stamp: str, now: float) -> float:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return now - when.timestamp()


class IngestAgent:
    """Batches device messages into entity updates; see the module docstring."""

    def __init__(
        self,
        broker: Broker,
        registry: DeviceRegistry,
        *,
        max_batch: int = 5000,
        dead_letter_keep: int = 1000,
        offline_after_s: float = 600.0,
        stats_interval_s: float = 5.0,
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.max_batch = max_batch
        self.dead_letter_keep = dead_letter_keep
        self.offline_after_s = offline_after_s
        self.stats_interval_s = stats_interval_s
        self.terms: TermMap = core_term_map()
        self._queue: list[DeviceMessage] = []
        self._wake = asyncio.Event()
        self._stats: dict[tuple[str | None, str], _DeviceStats] = {}
        self._online: set[tuple[str | None, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # --- life cycle

    async def start(self) -> None:
        """Start the batch writer and the device-health loop."""
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="ingest-writer"),
            asyncio.create_task(self._health_loop(), name="ingest-health"),
        ]

    async def stop(self) -> None:
        """Write what is queued, save device counters, stop the loops."""
        self._stopping = True
        self._wake.set()
        others = self._tasks[1:]
        for task in others:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.save_stats()

    # --- the data path

    def submit(self, message: DeviceMessage) -> None:
        """Queue a message; its ``done`` callback runs once it is written (or refused)."""
        self._queue.append(message)
        self._wake.set()

    async def ingest(self, message: DeviceMessage) -> IngestOutcome:
        """Queue a message and wait until it is written (the HTTP southbound)."""
        future: asyncio.Future[IngestOutcome] = asyncio.get_running_loop().create_future()

        def done(result: IngestOutcome | BaseException) -> None:
            if future.done():
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        message.done = done
        self.submit(message)
        return await future

    async def _write_loop(self) -> None:
        writing: asyncio.Task[None] | None = None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                decoded = await self._decode(batch)
                if writing is not None:  # batches are written one after the other, in order
                    await writing
                writing = asyncio.create_task(self._write_batch(decoded))
            if self._stopping:
                if writing is not None:
                    await writing
                return

    async def _write_batch(self, batch: _DecodedBatch) -> None:
        delay = 0.1
        while True:
            try:
                await self._store(batch)
                break
            except StoreError as exc:
                if self._stopping:
                    for message, _ in batch.outcomes:
                        if message.done is not None:
                            message.done(exc)
                    return
                LOGGER.warning("ingestion batch not written (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_S)
        for message, outcome in batch.outcomes:
            if message.done is not None:
                try:
                    message.done(outcome)
                except Exception:
                    LOGGER.exception("ingestion completion callback failed")

    async def _resolve(
        self, message: DeviceMessage, outcome: IngestOutcome
    ) -> tuple[Group, Device]:
        group = await self.registry.group(message.apikey)
        if group is None:
            raise ResourceNotFound(f"No service group with apikey {message.apikey!r}")
        outcome.service = group["service"]
        device = await self.registry.device(group["service"], message.device_id)
        if device is None:
            if not group.get("autoprovision", True):
                raise ResourceNotFound(
                    f"Device {message.device_id!r} is not provisioned and its group does "
                    "not provision devices automatically"
                )
            device = await self.registry.autoprovision(group, message.device_id, message.transport)
        elif device["apikey"] != message.apikey:
            raise ResourceNotFound(f"Device {message.device_id!r} is not under this apikey")
        return group, device

    async def _decode(self, batch: list[DeviceMessage]) -> _DecodedBatch:
        """Each message's outcome so far, and the entity changes of the batch."""
        now = now_timestamp()
        decoded_batch = _DecodedBatch(now)
        for message in batch:
            outcome = IngestOutcome()
            decoded_batch.outcomes.append((message, outcome))
            try:
                group, device = await self._resolve(message, outcome)
                measures = decode_payload(message.payload)
            except NgsiLdError as exc:
                outcome.error = exc
                continue
            except Rejected as exc:
                outcome.error = BadRequestData(str(exc))
                outcome.device = (device["service"], device["device_id"])
                continue
            decoded = [
                decode_measure(m, device, group, message.arrival, self.terms) for m in measures
            ]
            self._add(decoded_batch.by_tenant, message, outcome, group, device, decoded, now)
        return decoded_batch

    async def _store(self, batch: _DecodedBatch) -> None:
        """Write a decoded batch (one transaction per tenant), then its dead letters and
        counts; a StoreError leaves the batch to be written again."""
        for tenant, entities in batch.by_tenant.items():
            await self._write_entities(tenant, entities, batch.now)
        await self._dead_letters(batch.outcomes)
        self._count(batch.outcomes)

    def _add(
        self,
        by_tenant: dict[str | None, dict[str, _EntityBatch]],
        message: DeviceMessage,
        outcome: IngestOutcome,
        group: Group,
        device: Device,
        decoded: list[DecodedMeasure],
        now: str,
    ) -> None:
        service = device["service"]
        entity_id = device["entity_name"]
        outcome.entity_id = entity_id
        outcome.device = (service, device["device_id"])
        entities = by_tenant.setdefault(service, {})
        target = entities.get(entity_id)
        if target is None:
            types = parse_entity_types(device["entity_type"], self.terms)
            terms = self.terms
            target = entities[entity_id] = _EntityBatch(
                entity_id, types, lambda: static_instances(device, group, now, terms)
            )
        target.messages.append((message, outcome))
        for measure in decoded:
            outcome.rejected += measure.rejected
            outcome.accepted += len(measure.attrs)
            for iri, inst in measure.attrs.items():
                target.attrs.setdefault(iri, []).append(inst)
                target.history.append(history_row(iri, inst, now))
        if outcome.accepted and (service, device["device_id"]) not in self._online:
            self._online.add((service, device["device_id"]))
            status = self._status_instance("online", decoded[-1].observed_at, now)
            iri = self.terms.expand(STATUS)
            target.attrs.setdefault(iri, []).append(status)
            target.history.append(history_row(iri, status, now))

    def _status_instance(self, value: str, observed_at: str, now: str) -> Instance:
        return {
            "type": "Property",
            "value": value,
            "observedAt": observed_at,
            "createdAt": now,
            "modifiedAt": now,
        }

    async def _write_entities(
        self, tenant: str | None, entities: dict[str, _EntityBatch], now: str
    ) -> None:
        changes = [
            EntityChange(
                target.entity_id,
                _upsert(target, now),
                history=target.history,
                shallow=True,
                store_view=False,
            )
            for target in entities.values()
            if target.attrs
        ]
        if not changes:
            return
        results = await self.broker.store.change_entities(tenant, changes)
        for result in results:
            if result.error is None:
                continue
            for _, outcome in entities[result.entity_id].messages:
                outcome.error = result.error
                outcome.accepted = 0

    async def _dead_letters(self, outcomes: list[tuple[DeviceMessage, IngestOutcome]]) -> None:
        entries = []
        for message, outcome in outcomes:
            if outcome.error is None and not outcome.rejected:
                continue
            base = {
                "at": message.arrival,
                "service": outcome.service,
                "apikey": message.apikey,
                "device_id": message.device_id,
                "transport": message.transport,
            }
            if outcome.error is not None:
                payload = message.payload
                if isinstance(payload, bytes):
                    payload = payload.decode("utf-8", "replace")
                entries.append(
                    base
                    | {
                        "attribute": None,
                        "value": _clip(payload),
                        "reason": outcome.error.detail,
                    }
                )
            for rejection in outcome.rejected:
                entries.append(
                    base
                    | {
                        "attribute": rejection.attribute,
                        "value": _clip(rejection.value),
                        "reason": rejection.reason,
                    }
                )
        if entries:
            try:
                await self.broker.store.append_log(DEAD_LETTERS, entries, self.dead_letter_keep)
            except StoreError:
                LOGGER.exception("dead letters not recorded: %d entries", len(entries))

    def _count(self, outcomes: list[tuple[DeviceMessage, IngestOutcome]]) -> None:
        for message, outcome in outcomes:
            if outcome.device is None:
                continue
            stats = self._stats.get(outcome.device)
            if stats is None:
                stats = self._stats[outcome.device] = _DeviceStats(*outcome.device)
            stats.rejected += len(outcome.rejected) + (outcome.error is not None)
            if outcome.accepted:
                stats.measures += 1
                stats.last_seen = max(stats.last_seen, message.arrival)
                stats.online = True

    async def save_stats(self) -> None:
        """Add this node's counters and last-seen times to the device records."""
        if not self._stats:
            return
        stats, self._stats = self._stats, {}

        def change(item: _DeviceStats) -> RecordChange:
            def apply(current: Any | None) -> Any:
                if current is None:
                    return Keep()
                updated = dict(current)
                updated["measures"] = current.get("measures", 0) + item.measures
                updated["rejected"] = current.get("rejected", 0) + item.rejected
                if item.last_seen > current.get("last_seen", ""):
                    updated["last_seen"] = item.last_seen
                    if item.online:
                        updated["status"] = "online"
                return updated

            return RecordChange(device_key(item.service, item.device_id), apply)

        try:
            records = await self.broker.store.change_records(
                DEVICES, [change(s) for s in stats.values()]
            )
        except StoreError:
            LOGGER.exception("device counters not saved; kept for the next round")
            for key, item in stats.items():
                self._stats.setdefault(key, item)
            return
        for item, record in zip(stats.values(), records, strict=True):
            self.registry.forget(item.service, item.device_id, record)

    # --- device health

    async def _health_loop(self) -> None:
        interval = max(0.05, min(self.stats_interval_s, self.offline_after_s / 2))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.save_stats()
                await self.mark_silent_offline()
            except Exception:
                LOGGER.exception("device health round failed")

    async def mark_silent_offline(self, now: float | None = None) -> int:
        """Turn ``status`` to offline on devices silent for ``offline_after_s``; how many."""
        now = time.time() if now is None else now
        silent = [
            device
            for _, device in await self.registry.all_devices()
            if device.get("status") == "online"
            and device.get("last_seen")
            and _seconds_since(device["last_seen"], now) >= self.offline_after_s
        ]
        if not silent:
            return 0
        stamp = now_timestamp()
        by_tenant: dict[str | None, list[EntityChange]] = {}
        iri = self.terms.expand(STATUS)
        for device in silent:
            status = self._status_instance("offline", stamp, stamp)
            by_tenant.setdefault(device["service"], []).append(
                EntityChange(
                    device["entity_name"],
                    _set_status(iri, status, stamp),
                    history=[history_row(iri, status, stamp)],
                )
            )
            self._online.discard((device["service"], device["device_id"]))
        for tenant, changes in by_tenant.items():
            await self.broker.store.change_entities(tenant, changes)

        def offline(device: Device) -> RecordChange:
            def apply(current: Any | None) -> Any:
                if current is None or current.get("last_seen") != device.get("last_seen"):
                    return Keep()  # removed, or seen again meanwhile
                return current | {"status": "offline"}

            return RecordChange(device_key(device["service"], device["device_id"]), apply)

        records = await self.broker.store.change_records(DEVICES, [offline(d) for d in silent])
        for device, record in zip(silent, records, strict=True):
            self.registry.forget(device["service"], device["device_id"], record)
        return len(silent)

    async def describe_device(self, caller: Caller, device_id: str) -> Device:
        """GET /iot/devices/{id}: the record with this node's counters not yet saved."""
        device = dict(await self.registry.get_device(caller, device_id))
        pending = self._stats.get((caller.tenant, device_id))
        if pending is not None:
            device["measures"] = device.get("measures", 0) + pending.measures
            device["rejected"] = device.get("rejected", 0) + pending.rejected
            if pending.last_seen > device.get("last_seen", ""):
                device["last_seen"] = pending.last_seen
                device["status"] = "online"
        return device

    async def provision_devices(self, caller: Caller, body: Any, subservice: str) -> list[Device]:
        """POST /iot/devices: record the devices, then create the entities they feed."""
        devices = await self.registry.create_devices(caller, body, subservice)
        for device in devices:
            await self.ensure_entity(device)
        return devices

    async def ensure_entity(self, device: Device) -> None:
        """Create the entity a newly provisioned device feeds (static attributes and
        location), or add those to the existing one."""
        group = await self.registry.group(device["apikey"]) or {}
        now = now_timestamp()
        statics = static_instances(device, group, now, self.terms)
        target = _EntityBatch(
            device["entity_name"],
            parse_entity_types(device["entity_type"], self.terms),
            lambda: statics,
        )
        target.attrs = {iri: [inst] for iri, inst in statics.items()}
        change = EntityChange(target.entity_id, _upsert(target, now), history=[])
        [result] = await self.broker.store.change_entities(device["service"], [change])
        if result.error is not None:
            raise result.error


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_DEAD_VALUE:
        return value[:MAX_DEAD_VALUE] + "…"
    if isinstance(value, (dict, list)):
        text = repr(value)
        return text if len(text) <= MAX_DEAD_VALUE else text[:MAX_DEAD_VALUE] + "…"
    return value


def _upsert(target: _EntityBatch, now: str) -> Callable[[Entity | None], Write]:
    def apply(current: Entity | None) -> Write:
        if current is None:
            current = {
                "id": target.entity_id,
                "type": list(target.types),
                "createdAt": now,
                "modifiedAt": now,
                "attrs": {iri: [dict(inst)] for iri, inst in target.statics().items()},
            }
        keep_latest_instances(current, target.attrs)
        touch(current, now)
        return Write(current)

    return apply


def _set_status(iri: str, status: Instance, now: str) -> Callable[[Entity | None], Any]:
    def apply(current: Entity | None) -> Any:
        if current is None:
            raise ResourceNotFound("The device's entity no longer exists")
        current["attrs"][iri] = [dict(status)]
        touch(current, now)
        return Write(current)

    return apply
