"""Temporal use cases (GS CIM 009 clauses 5.6.11-5.6.16, 5.7.3-5.7.4): entity histories.

Writes go through the same :meth:`EntityStore.change_entities` path as every other
change, so a temporal POST is one transaction that records the given instances and keeps
the entity's current state at its latest instances (as Stellio does).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from urbanstack.broker.caller import Caller
from urbanstack.broker.entities import Broker, change_one, require_tenant
from urbanstack.ngsild.errors import BadRequestData, ResourceNotFound, TooManyResults
from urbanstack.ngsild.history import HistoryRow, TemporalEntity, history_row, parse_instance_id
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import (
    RESERVED_ENTITY_MEMBERS,
    Entity,
    Instance,
    merge_types,
    now_timestamp,
    parse_entity_types,
    parse_instance,
    parse_scope_value,
    touch,
    validate_entity_id,
    validate_name,
)
from urbanstack.ngsild.query import EntityQuery
from urbanstack.ngsild.temporal import TemporalQuery, to_micros
from urbanstack.store.base import Delete, EntityChange, Keep, TemporalPage, Write


def _not_found(entity_id: str) -> ResourceNotFound:
    return ResourceNotFound(f"Entity {entity_id!r} has no temporal representation")


# --- reads


async def retrieve_temporal(
    broker: Broker, caller: Caller, entity_id: str, query: TemporalQuery
) -> TemporalEntity:
    """GET /temporal/entities/{id}: the entity's history (an entity without recorded
    instances yet answers with no attributes); ResourceNotFound when it is unknown."""
    validate_entity_id(entity_id)
    await require_tenant(broker, caller)
    found = await broker.store.get_history(caller.tenant, entity_id, query)
    if found is not None:
        return found
    current = await broker.store.get_entity(caller.tenant, entity_id)
    if current is None:
        raise _not_found(entity_id)
    return TemporalEntity(entity_id, current["type"], {}, {} if query.aggregation else None)


async def query_temporal(
    broker: Broker, caller: Caller, query: EntityQuery, temporal: TemporalQuery
) -> tuple[TemporalPage, bool]:
    """GET /temporal/entities and POST /temporal/entityOperations/query: one page of
    histories of the entities selected on their current state; and whether more follow."""
    if temporal.time is None:
        raise BadRequestData("A temporal query needs timerel and timeAt")
    if query.is_unbounded:
        raise BadRequestData(
            "A temporal query needs at least one of id, idPattern, type, attrs, q, geometry "
            "or scopeQ"
        )
    if query.limit > broker.settings.max_limit:
        raise TooManyResults(
            f"limit {query.limit} is above the maximum of {broker.settings.max_limit}"
        )
    await require_tenant(broker, caller)
    probe = replace(query, limit=query.limit + 1) if query.limit else query
    page = await broker.store.query_history(caller.tenant, probe, temporal)
    more = bool(query.limit) and len(page.entities) > query.limit
    if more:
        page.entities = page.entities[: query.limit]
    return page, more


# --- writes


def parse_temporal_attributes(
    body: dict[str, Any], terms: TermMap, now: str
) -> dict[str, list[Instance]]:
    """The attributes of an EntityTemporal fragment: name -> one instance or a list of
    them (several per datasetId allowed: they are points in time)."""
    attrs: dict[str, list[Instance]] = {}
    for name, raw in body.items():
        if name in RESERVED_ENTITY_MEMBERS:
            continue
        iri = terms.expand(validate_name(name))
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise BadRequestData(f"Attribute {name!r} has no instances")
        for item in items:
            if not isinstance(item, dict):
                raise BadRequestData(f"Each instance of {name!r} must be an object")
        attrs[iri] = [parse_instance(item, terms, now, name) for item in items]
    return attrs


def _latest_per_dataset(instances: list[Instance]) -> dict[str | None, Instance]:
    """The most recent instance per datasetId (by observedAt; later in the list wins ties)."""
    latest: dict[str | None, Instance] = {}
    for inst in instances:
        key = inst.get("datasetId")
        best = latest.get(key)
        if best is None or inst.get("observedAt", "") >= best.get("observedAt", ""):
            latest[key] = inst
    return latest


def keep_latest_instances(entity: Entity, attrs: dict[str, list[Instance]]) -> None:
    """Keep each (attribute, datasetId) of ``entity`` at its most recent instance. The
    entity's instance lists are replaced, never changed in place (a shallow
    ``EntityChange`` shares them with the stored entity)."""
    entity_attrs = entity["attrs"]
    for iri, instances in attrs.items():
        existing = entity_attrs.get(iri)
        if (  # one reading of a one-instance attribute (a sensor's): the short way
            len(instances) == 1
            and existing is not None
            and len(existing) == 1
            and "datasetId" not in instances[0]
            and "datasetId" not in existing[0]
        ):
            inst, before = instances[0], existing[0]
            if before.get("observedAt", "") <= inst.get("observedAt", "\uffff"):
                inst["createdAt"] = before.get("createdAt", inst["createdAt"])
                entity_attrs[iri] = [inst]
            continue
        current = entity_attrs[iri] = list(existing or ())
        for dataset_id, inst in _latest_per_dataset(instances).items():
            index = next((i for i, c in enumerate(current) if c.get("datasetId") == dataset_id), -1)
            if index < 0:
                current.append(inst)
            elif current[index].get("observedAt", "") <= inst.get("observedAt", "\uffff"):
                inst["createdAt"] = current[index].get("createdAt", inst["createdAt"])
                current[index] = inst


def _history(attrs: dict[str, list[Instance]], now: str) -> list[HistoryRow]:
    return [history_row(iri, inst, now) for iri, items in attrs.items() for inst in items]


async def create_temporal(broker: Broker, caller: Caller, body: Any, terms: TermMap) -> bool:
    """POST /temporal/entities: record the instances; creates the entity (True) at its
    latest instances, or adds them to an existing one (False) whose types are merged."""
    if not isinstance(body, dict):
        raise BadRequestData("A temporal entity must be a JSON object")
    now = now_timestamp()
    entity_id = validate_entity_id(body.get("id", body.get("@id")))
    types = parse_entity_types(body.get("type", body.get("@type")), terms)
    scope = parse_scope_value(body["scope"]) if "scope" in body else None
    attrs = parse_temporal_attributes(body, terms, now)

    def apply(current: Entity | None) -> Write:
        if current is None:
            entity: Entity = {"id": entity_id, "type": types}
            if scope is not None:
                entity["scope"] = scope
            entity.update(createdAt=now, modifiedAt=now, attrs={})
            keep_latest_instances(entity, attrs)
            return Write(entity, True)
        merge_types(current, types)
        keep_latest_instances(current, attrs)
        touch(current, now)
        return Write(current, False)

    change = EntityChange(entity_id, apply, history=_history(attrs, now))
    return bool(await change_one(broker, caller, change, creates=True))


async def append_temporal_attrs(
    broker: Broker, caller: Caller, entity_id: str, body: Any, terms: TermMap
) -> None:
    """POST /temporal/entities/{id}/attrs: record more instances of an existing entity."""
    validate_entity_id(entity_id)
    if not isinstance(body, dict):
        raise BadRequestData("The body must be a JSON object of attributes")
    if body.get("id", entity_id) != entity_id:
        raise BadRequestData("The id in the body differs from the id in the URL")
    await require_tenant(broker, caller)
    now = now_timestamp()
    attrs = parse_temporal_attributes(body, terms, now)
    if not attrs:
        raise BadRequestData("The body has no attributes")

    def apply(current: Entity | None) -> Write:
        if current is None:
            raise ResourceNotFound(f"Entity {entity_id!r} does not exist")
        keep_latest_instances(current, attrs)
        touch(current, now)
        return Write(current)

    await change_one(broker, caller, EntityChange(entity_id, apply, history=_history(attrs, now)))


def _instance_number(instance_id: str) -> int:
    number = parse_instance_id(instance_id)
    if number is None:
        raise ResourceNotFound(f"No attribute instance {instance_id!r}")
    return number


async def update_temporal_instance(
    broker: Broker,
    caller: Caller,
    entity_id: str,
    attr_name: str,
    instance_id: str,
    body: Any,
    terms: TermMap,
) -> None:
    """PATCH /temporal/entities/{id}/attrs/{attrId}/{instanceId}: replace one recorded
    instance (its instanceId and creation time are kept)."""
    validate_entity_id(entity_id)
    iri = terms.expand(validate_name(attr_name))
    number = _instance_number(instance_id)
    if not isinstance(body, dict):
        raise BadRequestData("The body must be a JSON object")
    raw = body.get(attr_name, body)
    if isinstance(raw, list):
        if len(raw) != 1:
            raise BadRequestData("An instance update carries exactly one instance")
        raw = raw[0]
    if not isinstance(raw, dict):
        raise BadRequestData(f"The instance of {attr_name!r} must be an object")
    await require_tenant(broker, caller)
    now = now_timestamp()
    row = history_row(iri, parse_instance(raw, terms, now, attr_name), now)
    if not await broker.store.update_instance(caller.tenant, entity_id, iri, number, row):
        raise ResourceNotFound(f"No instance {instance_id!r} of {attr_name!r} in {entity_id!r}")


async def delete_temporal_instance(
    broker: Broker,
    caller: Caller,
    entity_id: str,
    attr_name: str,
    instance_id: str,
    terms: TermMap,
) -> None:
    """DELETE /temporal/entities/{id}/attrs/{attrId}/{instanceId}."""
    validate_entity_id(entity_id)
    iri = terms.expand(validate_name(attr_name))
    number = _instance_number(instance_id)
    await require_tenant(broker, caller)
    if not await broker.store.delete_instance(caller.tenant, entity_id, iri, number):
        raise ResourceNotFound(f"No instance {instance_id!r} of {attr_name!r} in {entity_id!r}")


async def delete_temporal_attribute(
    broker: Broker,
    caller: Caller,
    entity_id: str,
    attr_name: str,
    terms: TermMap,
    *,
    dataset_id: str | None = None,
    delete_all: bool = False,
) -> None:
    """DELETE /temporal/entities/{id}/attrs/{attrId}: an attribute's recorded instances
    (the default ones, one datasetId's, or all with ``deleteAll``); the current state
    of the entity is left as it is."""
    validate_entity_id(entity_id)
    iri = terms.expand(validate_name(attr_name))
    if dataset_id is not None:
        validate_entity_id(dataset_id, "datasetId")
    await require_tenant(broker, caller)
    if not await broker.store.delete_attribute_history(
        caller.tenant, entity_id, iri, dataset_id, delete_all
    ):
        raise ResourceNotFound(f"No recorded instances of {attr_name!r} in {entity_id!r}")


async def delete_temporal_entity(broker: Broker, caller: Caller, entity_id: str) -> None:
    """DELETE /temporal/entities/{id}: the entity and its whole history, in one change."""
    validate_entity_id(entity_id)
    await require_tenant(broker, caller)
    had_history = (
        await broker.store.get_history(
            caller.tenant, entity_id, TemporalQuery(attrs=frozenset(), last_n=1)
        )
        is not None
    )

    def apply(current: Entity | None) -> Delete | Keep:
        return Delete(True) if current is not None else Keep(False)

    deleted = await change_one(broker, caller, EntityChange(entity_id, apply, drop_history=True))
    if not deleted and not had_history:
        raise _not_found(entity_id)


# --- retention


async def prune_expired_history(broker: Broker, now: int | None = None) -> int:
    """Delete, in every tenant, the instances older than ``history_retention_days``
    (nothing when it is 0); returns the number of instances deleted."""
    days = broker.settings.history_retention_days
    if days <= 0:
        return 0
    current = now if now is not None else to_micros(now_timestamp())
    before = current - days * 86_400 * 1_000_000
    deleted = 0
    for tenant in await broker.store.tenants():
        deleted += await broker.store.prune_history(tenant, before)
    return deleted
