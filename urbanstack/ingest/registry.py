"""Provisioning use cases (``/iot/services``, ``/iot/devices``) and the cached look-ups
the data path makes for every message.

Groups and devices are store records (kind ``iot-group`` keyed by API key, kind
``iot-device`` keyed by tenant and device id) in the default tenant, so any API node
finds a device from the API key and device id a message carries. Look-ups are cached
for a few seconds; this node's own changes invalidate its cache at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from urbanstack.broker.announcements import PROCESS_ID, RECORD
from urbanstack.broker.caller import Caller
from urbanstack.ingest.provisioning import (
    Device,
    Group,
    device_items,
    device_key,
    parse_device,
    parse_groups,
    patch_device,
    patch_group,
)
from urbanstack.ngsild.errors import AlreadyExists, BadRequestData, ResourceNotFound
from urbanstack.store.base import EntityStore, Keep, RecordChange

GROUPS = "iot-group"
DEVICES = "iot-device"
CACHE_TTL_S = 5.0
_MISSING = object()


def _group_not_found(apikey: str) -> ResourceNotFound:
    return ResourceNotFound(f"No service group with apikey {apikey!r}")


def _device_not_found(device_id: str) -> ResourceNotFound:
    return ResourceNotFound(f"No device {device_id!r}")


class DeviceRegistry:
    """Service groups and devices: provisioning operations and cached look-ups."""

    def __init__(self, store: EntityStore, ttl: float = CACHE_TTL_S) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._announcing: set[asyncio.Task[None]] = set()

    # --- cache

    async def _cached(self, kind: str, key: str) -> Any | None:
        now = time.monotonic()
        hit = self._cache.get((kind, key))
        if hit is not None and hit[0] > now:
            return None if hit[1] is _MISSING else hit[1]
        record = await self.store.get_record(kind, key)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[(kind, key)] = (now + self.ttl, _MISSING if record is None else record)
        return record

    def _remember(self, kind: str, key: str, record: Any | None, *, announce: bool = True) -> None:
        """Cache what this node just wrote; other nodes are told (unless ``announce`` is
        off: changes such as counters, which no other node's cache depends on)."""
        value = _MISSING if record is None else record
        self._cache[(kind, key)] = (time.monotonic() + self.ttl, value)
        if announce and self.store.shared_by_processes:
            message = {"origin": PROCESS_ID, "kind": kind, "key": key}
            task = asyncio.get_running_loop().create_task(self.store.announce(RECORD, message))
            self._announcing.add(task)
            task.add_done_callback(self._announcing.discard)

    def forget_key(self, kind: str, key: str) -> None:
        """Drop a cached record another process changed (an announcement)."""
        self._cache.pop((kind, key), None)

    def forget_all(self) -> None:
        """Drop every cached record (announcements from other processes may be lost)."""
        self._cache.clear()

    # --- look-ups for the data path

    async def group(self, apikey: str) -> Group | None:
        """The service group of an API key (cached)."""
        return await self._cached(GROUPS, apikey)

    async def device(self, service: str | None, device_id: str) -> Device | None:
        """A tenant's device (cached)."""
        return await self._cached(DEVICES, device_key(service, device_id))

    async def autoprovision(self, group: Group, device_id: str, transport: str) -> Device:
        """The device record created for an unknown device of ``group`` (which allows it)."""
        raw = {"device_id": device_id, "apikey": group["apikey"], "transport": transport}
        device = parse_device(raw, group, group["service"], group["subservice"])
        key = device_key(group["service"], device_id)

        def apply(current: Any | None) -> Any:
            return Keep() if current is not None else device

        [stored] = await self.store.change_records(DEVICES, [RecordChange(key, apply)])
        self._remember(DEVICES, key, stored)
        return stored

    # --- service groups

    async def create_groups(self, caller: Caller, body: Any, subservice: str) -> list[Group]:
        """POST /iot/services: every group or none (AlreadyExists for a taken apikey)."""
        groups = parse_groups(body, caller.tenant, subservice)

        def create(group: Group) -> RecordChange:
            def apply(current: Any | None) -> Any:
                if current is not None:
                    raise AlreadyExists(f"A service group with apikey {group['apikey']!r} exists")
                return group

            return RecordChange(group["apikey"], apply)

        await self.store.change_records(GROUPS, [create(g) for g in groups])
        for group in groups:
            self._remember(GROUPS, group["apikey"], group)
        return groups

    async def list_groups(self, caller: Caller, limit: int, offset: int) -> tuple[list[Group], int]:
        """GET /iot/services: the tenant's groups, by apikey."""
        groups = await self.tenant_groups(caller)
        return groups[offset : offset + limit], len(groups)

    async def _all(self, kind: str, prefix: str) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        while True:
            page, total = await self.store.list_records(kind, 1000, len(found), prefix)
            found += page
            if not page or len(found) >= total:
                return found

    async def get_group(self, caller: Caller, apikey: str) -> Group:
        """One of the tenant's groups by apikey, or ResourceNotFound."""
        group = await self.store.get_record(GROUPS, apikey)
        if group is None or group.get("service") != caller.tenant:
            raise _group_not_found(apikey)
        return group

    async def update_group(self, caller: Caller, apikey: str, body: Any) -> Group:
        """PUT /iot/services?apikey=: replace the members the body gives."""

        def apply(current: Any | None) -> Any:
            if current is None or current.get("service") != caller.tenant:
                raise _group_not_found(apikey)
            return patch_group(current, body)

        [group] = await self.store.change_records(GROUPS, [RecordChange(apikey, apply)])
        self._remember(GROUPS, apikey, group)
        return group

    async def delete_group(self, caller: Caller, apikey: str) -> None:
        """DELETE /iot/services?apikey=: the group goes; its devices stay provisioned."""

        def apply(current: Any | None) -> Any:
            if current is None or current.get("service") != caller.tenant:
                raise _group_not_found(apikey)
            return None

        await self.store.change_records(GROUPS, [RecordChange(apikey, apply)])
        self._remember(GROUPS, apikey, None)

    # --- devices

    async def create_devices(self, caller: Caller, body: Any, subservice: str) -> list[Device]:
        """POST /iot/devices: every device or none (AlreadyExists for a taken id)."""
        devices = []
        for raw in device_items(body):
            group = None
            if isinstance(raw.get("apikey"), str):
                group = await self.group(raw["apikey"])
                if group is None or group.get("service") != caller.tenant:
                    raise BadRequestData(f"No service group with apikey {raw['apikey']!r}")
            else:
                group = await self._only_group(caller)
            devices.append(parse_device(raw, group, caller.tenant, subservice))

        def create(device: Device) -> RecordChange:
            def apply(current: Any | None) -> Any:
                if current is not None:
                    raise AlreadyExists(f"Device {device['device_id']!r} exists")
                return device

            return RecordChange(device_key(caller.tenant, device["device_id"]), apply)

        await self.store.change_records(DEVICES, [create(d) for d in devices])
        for device in devices:
            self._remember(DEVICES, device_key(caller.tenant, device["device_id"]), device)
        return devices

    async def _only_group(self, caller: Caller) -> Group | None:
        groups = await self.tenant_groups(caller)
        return groups[0] if len(groups) == 1 else None

    async def tenant_groups(self, caller: Caller) -> list[Group]:
        """Every service group of the caller's tenant."""
        return [g for _, g in await self._all(GROUPS, "") if g.get("service") == caller.tenant]

    async def list_devices(
        self, caller: Caller, limit: int, offset: int
    ) -> tuple[list[Device], int]:
        """GET /iot/devices: the tenant's devices, by device id."""
        page, total = await self.store.list_records(
            DEVICES, limit, offset, device_key(caller.tenant, "")
        )
        return [device for _, device in page], total

    async def get_device(self, caller: Caller, device_id: str) -> Device:
        """One device of the tenant, or ResourceNotFound."""
        device = await self.store.get_record(DEVICES, device_key(caller.tenant, device_id))
        if device is None:
            raise _device_not_found(device_id)
        return device

    async def update_device(self, caller: Caller, device_id: str, body: Any) -> Device:
        """PUT /iot/devices/{id}: replace the members the body gives."""
        key = device_key(caller.tenant, device_id)
        current = await self.store.get_record(DEVICES, key)
        if current is None:
            raise _device_not_found(device_id)
        apikey = body.get("apikey") if isinstance(body, dict) else None
        group = await self.group(apikey or current["apikey"])

        def apply(stored: Any | None) -> Any:
            if stored is None:
                raise _device_not_found(device_id)
            updated = patch_device(stored, body, group)
            for kept in ("status", "last_seen", "measures", "rejected"):
                if kept in stored:
                    updated[kept] = stored[kept]
            return updated

        [device] = await self.store.change_records(DEVICES, [RecordChange(key, apply)])
        self._remember(DEVICES, key, device)
        return device

    async def delete_device(self, caller: Caller, device_id: str) -> None:
        """DELETE /iot/devices/{id}: unprovision (the entity and its history stay)."""
        key = device_key(caller.tenant, device_id)

        def apply(current: Any | None) -> Any:
            if current is None:
                raise _device_not_found(device_id)
            return None

        await self.store.change_records(DEVICES, [RecordChange(key, apply)])
        self._remember(DEVICES, key, None)

    def forget(self, service: str | None, device_id: str, record: Device | None) -> None:
        """Refresh this node's cached copy of a device after the agent saved its counters
        or status (not announced: other nodes' caches do not use them)."""
        self._remember(DEVICES, device_key(service, device_id), record, announce=False)

    async def all_devices(self) -> list[tuple[str, Device]]:
        """Every device of every tenant (the health check's sweep)."""
        return await self._all(DEVICES, "")
