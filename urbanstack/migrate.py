"""Copying a whole platform from one store to another (SQLite to PostgreSQL, typically).

Only the storage contract is used, so any backend can be the source or the target:
contexts, records (IoT provisioning), then per tenant the entities of every type, their
history, and the subscriptions. Progress is saved in a checkpoint file after every step,
so an interrupted run resumes where it stopped: entities are written whole (re-writing
one is harmless) and a type's history is first cleared on the target when a previous run
stopped in its middle, so no instance is copied twice. The run ends by comparing counts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urbanstack.ingest.registry import DEVICES, GROUPS
from urbanstack.ngsild.errors import AlreadyExists
from urbanstack.ngsild.model import Entity
from urbanstack.ngsild.query import EntityQuery
from urbanstack.ngsild.typeq import TypeName
from urbanstack.store.base import EntityChange, EntityStore, Keep, RecordChange, Write

PAGE = 500
RECORD_KINDS = (GROUPS, DEVICES)
Progress = Callable[[int], None]


@dataclass
class Checkpoint:
    """What a run has finished, saved as JSON after every step."""

    path: Path
    done: set[str] = field(default_factory=set)
    #: per "tenant|type" being copied, the entity ids whose history is on the target
    history: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text("utf-8"))
        return cls(path, set(data.get("done", [])), data.get("history", {}))

    def save(self) -> None:
        data = {"done": sorted(self.done), "history": self.history}
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(data), "utf-8")
        tmp.replace(self.path)

    def finish(self, step: str) -> None:
        self.done.add(step)
        self.save()


@dataclass
class Counts:
    """What a store holds, for the final comparison."""

    entities: dict[str, int] = field(default_factory=dict)  # "tenant|type" -> entities
    history: dict[str, int] = field(default_factory=dict)  # "tenant|type" -> instances
    subscriptions: dict[str, int] = field(default_factory=dict)  # tenant -> subscriptions
    contexts: int = 0
    records: dict[str, int] = field(default_factory=dict)  # kind -> records

    def differences(self, other: Counts) -> list[str]:
        """Human-readable mismatches between two stores' counts."""
        out = []
        for name in ("entities", "history", "subscriptions", "records"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for key in sorted(mine.keys() | theirs.keys()):
                if mine.get(key, 0) != theirs.get(key, 0):
                    out.append(f"{name} {key}: {mine.get(key, 0)} vs {theirs.get(key, 0)}")
        if self.contexts != other.contexts:
            out.append(f"contexts: {self.contexts} vs {other.contexts}")
        return out


def _key(tenant: str | None, entity_type: str) -> str:
    return f"{tenant or ''}|{entity_type}"


async def entity_types(store: EntityStore, tenant: str | None) -> dict[str, int]:
    """Entity type IRI -> number of entities."""
    rows = await store.discovery(tenant)
    return {r.entity_type: r.count for r in rows if r.attribute is None and r.entity_type}


async def count(store: EntityStore) -> Counts:
    """The counts :func:`migrate` compares."""
    counts = Counts(contexts=len(await store.list_contexts()))
    for kind in RECORD_KINDS:
        counts.records[kind] = (await store.list_records(kind, 1))[1]
    for tenant in await store.tenants():
        for entity_type, n in (await entity_types(store, tenant)).items():
            counts.entities[_key(tenant, entity_type)] = n
        for entity_type in await store.history_types(tenant):  # deleted entities' too
            counts.history[_key(tenant, entity_type)] = await store.count_history(
                tenant, entity_type
            )
        counts.subscriptions[tenant or ""] = (await store.list_subscriptions(tenant, 1, 0))[1]
    return counts


async def planned_items(source: EntityStore) -> int:
    """Entities plus history instances to copy (a progress bar's length)."""
    counts = await count(source)
    return sum(counts.entities.values()) + sum(counts.history.values())


def _write_whole(entity: Entity) -> Callable[[Entity | None], Write]:
    return lambda current: Write(entity)


async def _copy_entities(
    source: EntityStore, target: EntityStore, tenant: str | None, entity_type: str,
    progress: Progress,
) -> None:  # fmt: skip
    offset = 0
    while True:
        page = await source.query_entities(
            tenant, EntityQuery(types=TypeName(entity_type), limit=PAGE, offset=offset)
        )
        if page.entities:
            changes = [EntityChange(e["id"], _write_whole(e), history=[]) for e in page.entities]
            for result in await target.change_entities(tenant, changes):
                if result.error is not None:
                    raise result.error
            progress(len(page.entities))
        if len(page.entities) < PAGE:
            return
        offset += PAGE


async def _copy_history(
    source: EntityStore,
    target: EntityStore,
    tenant: str | None,
    entity_type: str,
    checkpoint: Checkpoint,
    copied: set[str],
    progress: Progress,
) -> None:
    key = _key(tenant, entity_type)
    started = key in checkpoint.history
    finished = set(checkpoint.history.get(key, []))
    checkpoint.history[key] = sorted(finished)
    checkpoint.save()
    cleared: set[str] = set()
    async for batch in source.export_history(tenant, entity_type):
        by_entity: dict[str, list[Any]] = {}
        for entity_id, row in batch:
            if entity_id in copied or entity_id in finished:
                continue
            by_entity.setdefault(entity_id, []).append(row)
        if not by_entity:
            progress(len(batch))
            continue
        for entity_id in by_entity:
            # an earlier run may have stopped inside this entity: start it again cleanly
            if started and entity_id not in cleared:
                await target.delete_history(tenant, entity_id)
            cleared.add(entity_id)
        # the types of entities deleted since (their history was kept) come with it
        types = await source.history_entity_types(tenant, list(by_entity))
        changes = [
            EntityChange(
                entity_id, lambda current: Keep(), history=rows, history_types=types.get(entity_id)
            )
            for entity_id, rows in by_entity.items()
        ]
        for result in await target.change_entities(tenant, changes):
            if result.error is not None:
                raise result.error
        progress(len(batch))
    finished |= cleared
    copied |= finished


async def _copy_records(source: EntityStore, target: EntityStore) -> None:
    for kind in RECORD_KINDS:
        offset = 0
        while True:
            page, total = await source.list_records(kind, PAGE, offset)
            if page:
                changes = [RecordChange(k, lambda current, r=rec: r) for k, rec in page]
                await target.change_records(kind, changes)
            offset += len(page)
            if not page or offset >= total:
                break


async def _copy_subscriptions(source: EntityStore, target: EntityStore, tenant: str | None) -> None:
    offset = 0
    while True:
        page, total = await source.list_subscriptions(tenant, PAGE, offset)
        for record in page:
            with contextlib.suppress(AlreadyExists):  # copied by an earlier run
                await target.create_subscription(tenant, record)
        offset += len(page)
        if not page or offset >= total:
            return


async def migrate(
    source: EntityStore,
    target: EntityStore,
    checkpoint: Checkpoint,
    progress: Progress = lambda n: None,
) -> list[str]:
    """Copy everything from ``source`` to ``target`` (both open), resuming from
    ``checkpoint``; the count mismatches found afterwards (empty when all is copied)."""
    if "contexts" not in checkpoint.done:
        for record in await source.list_contexts():
            await target.put_context(record)
        checkpoint.finish("contexts")
    if "records" not in checkpoint.done:
        await _copy_records(source, target)
        checkpoint.finish("records")
    for tenant in await source.tenants():
        types = await entity_types(source, tenant)
        copied: set[str] = set()
        for entity_type, n in sorted(types.items()):
            step = f"entities|{_key(tenant, entity_type)}"
            if step in checkpoint.done:
                progress(n)
            else:
                await _copy_entities(source, target, tenant, entity_type, progress)
                checkpoint.finish(step)
        for entity_type in sorted(types.keys() | (await source.history_types(tenant)).keys()):
            step = f"history|{_key(tenant, entity_type)}"
            if step in checkpoint.done:
                copied |= set(checkpoint.history.get(_key(tenant, entity_type), []))
                progress(await source.count_history(tenant, entity_type))
                continue
            await _copy_history(source, target, tenant, entity_type, checkpoint, copied, progress)
            checkpoint.history[_key(tenant, entity_type)] = sorted(copied)
            checkpoint.finish(step)
        step = f"subscriptions|{tenant or ''}"
        if step not in checkpoint.done:
            await _copy_subscriptions(source, target, tenant)
            checkpoint.finish(step)
    return (await count(source)).differences(await count(target))
