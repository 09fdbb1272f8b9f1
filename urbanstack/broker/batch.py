"""Batch operations (GS CIM 009 clause 5.6.7-5.6.10, 5.6.20): many entities, one transaction.

Each entity succeeds or fails on its own; the answer lists the successes and the
errors per entity id (the 207 ``BatchOperationResult``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from urbanstack.broker.caller import Caller
from urbanstack.broker.entities import (
    Broker,
    UpdateResult,
    append_change,
    create_change,
    delete_change,
    merge_change,
    parse_fragment,
    require_tenant,
)
from urbanstack.ngsild.errors import BadRequestData, NgsiLdError
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import Entity, now_timestamp, parse_entity, validate_entity_id
from urbanstack.store.base import EntityChange, Write

MAX_BATCH = 10_000


@dataclass
class BatchResult:
    """Ids that succeeded, ids newly created (upsert), and (id, error) failures."""

    success: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    errors: list[tuple[str | None, NgsiLdError]] = field(default_factory=list)


def _items(body: Any) -> list[Any]:
    if not isinstance(body, list):
        raise BadRequestData("A batch operation takes a JSON array")
    if not body:
        raise BadRequestData("A batch operation needs at least one element")
    if len(body) > MAX_BATCH:
        raise BadRequestData(f"A batch holds at most {MAX_BATCH} elements")
    return body


def _raw_id(item: Any) -> str | None:
    if isinstance(item, dict):
        value = item.get("id", item.get("@id"))
        return value if isinstance(value, str) else None
    return item if isinstance(item, str) else None


async def _run(
    broker: Broker,
    caller: Caller,
    body: Any,
    make_change: Callable[[Any], EntityChange],
    *,
    creates: bool = False,
    terms: TermMap | None = None,
) -> BatchResult:
    items = _items(body)
    if not creates:
        await require_tenant(broker, caller)
    result = BatchResult()
    changes: list[EntityChange] = []
    refused: dict[int, tuple[str | None, NgsiLdError]] = {}  # position -> error, in request order
    positions: list[int] = []
    for position, item in enumerate(items):
        try:
            changes.append(make_change(item))
            positions.append(position)
        except NgsiLdError as err:
            refused[position] = (_raw_id(item), err)
    if changes:
        outcomes = await broker.store.change_entities(caller.tenant, changes)
        for position, outcome in zip(positions, outcomes, strict=True):
            if outcome.error is not None:
                refused[position] = (outcome.entity_id, outcome.error)
            elif isinstance(outcome.result, UpdateResult) and outcome.result.not_updated:
                compact = terms.compact if terms is not None else str
                names = ", ".join(sorted({compact(i) for i, _ in outcome.result.not_updated}))
                error = BadRequestData(f"Attributes not overwritten (noOverwrite): {names}")
                refused[position] = (outcome.entity_id, error)
            else:
                result.success.append(outcome.entity_id)
                if outcome.old is None and outcome.new is not None:
                    result.created.append(outcome.entity_id)
    result.errors = [refused[p] for p in sorted(refused)]
    return result


async def batch_create(broker: Broker, caller: Caller, body: Any, terms: TermMap) -> BatchResult:
    """POST /entityOperations/create."""
    now = now_timestamp()
    return await _run(
        broker,
        caller,
        body,
        lambda item: create_change(parse_entity(item, terms, now)),
        creates=True,
    )


def _upsert_change(entity: Entity, *, replace: bool) -> EntityChange:
    fragment = {
        "type": entity["type"],
        "attrs": entity["attrs"],
        "modifiedAt": entity["modifiedAt"],
    }
    if "scope" in entity:
        fragment["scope"] = entity["scope"]
    update = append_change(entity["id"], fragment, overwrite=True)

    def apply(current: Entity | None) -> Any:
        if current is None:
            return Write(entity)
        if replace:
            entity["createdAt"] = current["createdAt"]
            return Write(entity)
        if "scope" in fragment:
            current["scope"] = fragment["scope"]
        return update.apply(current)

    return EntityChange(entity["id"], apply, expected=entity)


async def batch_upsert(
    broker: Broker, caller: Caller, body: Any, terms: TermMap, *, replace: bool = True
) -> BatchResult:
    """POST /entityOperations/upsert (``options=replace``, the default, or ``update``)."""
    now = now_timestamp()
    return await _run(
        broker,
        caller,
        body,
        lambda item: _upsert_change(parse_entity(item, terms, now), replace=replace),
        creates=True,
    )


async def batch_update(
    broker: Broker, caller: Caller, body: Any, terms: TermMap, *, overwrite: bool = True
) -> BatchResult:
    """POST /entityOperations/update (``options=noOverwrite`` keeps existing attributes)."""

    def make(item: Any) -> EntityChange:
        entity_id = validate_entity_id(_raw_id(item))
        fragment = parse_fragment(item, terms, entity_id, allow_null=False)
        return append_change(entity_id, fragment, overwrite=overwrite)

    return await _run(broker, caller, body, make, terms=terms)


async def batch_merge(broker: Broker, caller: Caller, body: Any, terms: TermMap) -> BatchResult:
    """POST /entityOperations/merge: merge-patch each entity."""

    def make(item: Any) -> EntityChange:
        entity_id = validate_entity_id(_raw_id(item))
        return merge_change(entity_id, parse_fragment(item, terms, entity_id, allow_null=True))

    return await _run(broker, caller, body, make)


async def batch_delete(broker: Broker, caller: Caller, body: Any) -> BatchResult:
    """POST /entityOperations/delete: the body is an array of entity ids."""

    def make(item: Any) -> EntityChange:
        if not isinstance(item, str):
            raise BadRequestData("entityOperations/delete takes an array of entity ids")
        return delete_change(validate_entity_id(item))

    return await _run(broker, caller, body, make)
