"""Entity use cases (GS CIM 009 clauses 5.6 and 5.7): one function per operation.

Each takes the :class:`Broker`, the :class:`Caller` and already-parsed request
parts (a :class:`TermMap` for the request's @context), validates with
``ngsild/``, and makes exactly one store call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from urbanstack.broker.caller import Caller
from urbanstack.broker.contexts import ContextService
from urbanstack.broker.stream import ChangeStream
from urbanstack.broker.subscription_index import SubscriptionIndex
from urbanstack.ngsild.errors import (
    AlreadyExists,
    BadRequestData,
    NonexistentTenant,
    ResourceNotFound,
    TooManyResults,
)
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import (
    Entity,
    append_attributes,
    delete_attribute,
    merge_attributes,
    merge_instance,
    merge_types,
    now_timestamp,
    parse_attributes,
    parse_entity,
    parse_entity_types,
    parse_instance,
    parse_scope_value,
    touch,
    update_attributes,
    validate_entity_id,
    validate_name,
)
from urbanstack.ngsild.query import EntityQuery, QueryResult
from urbanstack.settings import Settings
from urbanstack.store.base import ChangeResult, Delete, EntityChange, EntityStore, Keep, Write


@dataclass
class Broker:
    """What every use case needs: the store, the context service, the settings, the
    subscription index and the live change stream."""

    store: EntityStore
    contexts: ContextService
    settings: Settings = field(default_factory=Settings)
    subscriptions: SubscriptionIndex = field(default_factory=SubscriptionIndex)
    stream: ChangeStream = field(default_factory=ChangeStream)


@dataclass
class UpdateResult:
    """Attributes updated and not updated (with reasons), as 207 answers list them."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)


def _only(result: ChangeResult) -> Any:
    if result.error is not None:
        raise result.error
    return result.result


async def require_tenant(broker: Broker, caller: Caller) -> None:
    """Refuse operations on a tenant no write has created (only creations create one)."""
    if caller.tenant is not None and not await broker.store.tenant_exists(caller.tenant):
        raise NonexistentTenant(f"Tenant {caller.tenant!r} does not exist")


async def change_one(
    broker: Broker, caller: Caller, change: EntityChange, *, creates: bool = False
) -> Any:
    """Apply one change (refusing unknown tenants unless it ``creates``); its result, or
    its NGSI-LD error raised."""
    if not creates:
        await require_tenant(broker, caller)
    results = await broker.store.change_entities(caller.tenant, [change])
    return _only(results[0])


def _not_found(entity_id: str) -> ResourceNotFound:
    return ResourceNotFound(f"Entity {entity_id!r} does not exist")


def create_change(entity: Entity) -> EntityChange:
    """The change creating ``entity``; refused with AlreadyExists if its id is taken."""

    def apply(current: Entity | None) -> Write:
        if current is not None:
            raise AlreadyExists(f"Entity {entity['id']!r} already exists")
        return Write(entity, entity["id"])

    return EntityChange(entity["id"], apply, expected=entity)


async def create_entity(broker: Broker, caller: Caller, body: Any, terms: TermMap) -> str:
    """POST /entities: validate and create one entity; returns its id."""
    entity = parse_entity(body, terms, now_timestamp())
    return await change_one(broker, caller, create_change(entity), creates=True)


async def retrieve_entity(broker: Broker, caller: Caller, entity_id: str) -> Entity:
    """GET /entities/{id}: the stored entity, or ResourceNotFound."""
    validate_entity_id(entity_id)
    entity = await broker.store.get_entity(caller.tenant, entity_id)
    if entity is None:
        raise _not_found(entity_id)
    return entity


async def retrieve_entity_view(broker: Broker, caller: Caller, entity_id: str) -> bytes:
    """GET /entities/{id} in the default representation: the stored view, or ResourceNotFound."""
    validate_entity_id(entity_id)
    view = await broker.store.get_entity_view(caller.tenant, entity_id)
    if view is None:
        raise _not_found(entity_id)
    return view


def delete_change(entity_id: str) -> EntityChange:
    """The change deleting an entity; ResourceNotFound if it does not exist."""

    def apply(current: Entity | None) -> Delete:
        if current is None:
            raise _not_found(entity_id)
        return Delete(entity_id)

    return EntityChange(entity_id, apply)


async def delete_entity(broker: Broker, caller: Caller, entity_id: str) -> None:
    """DELETE /entities/{id}."""
    validate_entity_id(entity_id)
    await change_one(broker, caller, delete_change(entity_id))


def replace_change(entity: Entity) -> EntityChange:
    """The change replacing every attribute of an existing entity (keeps createdAt)."""

    def apply(current: Entity | None) -> Write:
        if current is None:
            raise _not_found(entity["id"])
        entity["createdAt"] = current["createdAt"]
        return Write(entity)

    return EntityChange(entity["id"], apply)


async def replace_entity(
    broker: Broker, caller: Caller, entity_id: str, body: Any, terms: TermMap
) -> None:
    """PUT /entities/{id}: replace the whole entity (id in the body, if any, must match)."""
    validate_entity_id(entity_id)
    if isinstance(body, dict) and body.get("id", entity_id) != entity_id:
        raise BadRequestData("The id in the body differs from the id in the URL")
    entity = parse_entity(
        {**body, "id": entity_id} if isinstance(body, dict) else body, terms, now_timestamp()
    )
    await change_one(broker, caller, replace_change(entity))


def merge_change(entity_id: str, fragment: Entity) -> EntityChange:
    """The change merge-patching an entity (types and scope added, attributes merged)."""

    def apply(current: Entity | None) -> Write:
        if current is None:
            raise _not_found(entity_id)
        if "type" in fragment:
            merge_types(current, fragment["type"])
        if "scope" in fragment:
            current["scope"] = fragment["scope"]
        merge_attributes(current, fragment["attrs"])
        touch(current, fragment["modifiedAt"])
        return Write(current)

    return EntityChange(entity_id, apply)


def parse_fragment(body: Any, terms: TermMap, entity_id: str | None, *, allow_null: bool) -> Entity:
    """Validate a partial entity (merge, batch update): attributes plus optional type/scope."""
    if not isinstance(body, dict):
        raise BadRequestData("The body must be a JSON object")
    if entity_id is not None and body.get("id", entity_id) != entity_id:
        raise BadRequestData("The id in the body differs from the id in the URL")
    now = now_timestamp()
    fragment: Entity = {"modifiedAt": now}
    if body.get("type") is not None:
        fragment["type"] = parse_entity_types(body["type"], terms)
    if "scope" in body:
        fragment["scope"] = parse_scope_value(body["scope"])
    rest = {
        k: v
        for k, v in body.items()
        if k not in ("id", "@id", "type", "@type", "scope", "@context", "createdAt", "modifiedAt")
    }
    fragment["attrs"] = parse_attributes(rest, terms, now, allow_null=allow_null)
    return fragment


async def merge_entity(
    broker: Broker, caller: Caller, entity_id: str, body: Any, terms: TermMap
) -> None:
    """PATCH /entities/{id}: merge-patch (urn:ngsi-ld:null deletes an attribute)."""
    validate_entity_id(entity_id)
    fragment = parse_fragment(body, terms, entity_id, allow_null=True)
    await change_one(broker, caller, merge_change(entity_id, fragment))


def append_change(entity_id: str, fragment: Entity, *, overwrite: bool) -> EntityChange:
    """The change appending attributes (replacing same-datasetId instances unless noOverwrite)."""

    def apply(current: Entity | None) -> Write | Keep:
        if current is None:
            raise _not_found(entity_id)
        if "type" in fragment:
            merge_types(current, fragment["type"])
        updated, skipped = append_attributes(current, fragment["attrs"], overwrite=overwrite)
        result = UpdateResult(updated, skipped)
        if not updated and "type" not in fragment:
            return Keep(result)
        touch(current, fragment["modifiedAt"])
        return Write(current, result)

    return EntityChange(entity_id, apply)


async def append_attrs(
    broker: Broker,
    caller: Caller,
    entity_id: str,
    body: Any,
    terms: TermMap,
    *,
    overwrite: bool = True,
) -> UpdateResult:
    """POST /entities/{id}/attrs (``options=noOverwrite`` keeps existing attributes)."""
    validate_entity_id(entity_id)
    fragment = parse_fragment(body, terms, entity_id, allow_null=False)
    return await change_one(broker, caller, append_change(entity_id, fragment, overwrite=overwrite))


def update_change(entity_id: str, fragment: Entity) -> EntityChange:
    """The change replacing only attributes that exist already."""

    def apply(current: Entity | None) -> Write | Keep:
        if current is None:
            raise _not_found(entity_id)
        updated, skipped = update_attributes(current, fragment["attrs"])
        result = UpdateResult(updated, skipped)
        if not updated:
            return Keep(result)
        touch(current, fragment["modifiedAt"])
        return Write(current, result)

    return EntityChange(entity_id, apply)


async def update_attrs(
    broker: Broker, caller: Caller, entity_id: str, body: Any, terms: TermMap
) -> UpdateResult:
    """PATCH /entities/{id}/attrs: update existing attributes, report the others."""
    validate_entity_id(entity_id)
    fragment = parse_fragment(body, terms, entity_id, allow_null=False)
    return await change_one(broker, caller, update_change(entity_id, fragment))


async def update_attr(
    broker: Broker,
    caller: Caller,
    entity_id: str,
    attr_name: str,
    body: Any,
    terms: TermMap,
) -> None:
    """PATCH /entities/{id}/attrs/{attrId}: merge the given members into one instance."""
    validate_entity_id(entity_id)
    iri = terms.expand(validate_name(attr_name))
    if not isinstance(body, dict):
        raise BadRequestData("The body must be a JSON object")
    now = now_timestamp()
    patch = parse_instance(body, terms, now, attr_name, allow_null=True, partial=True)
    if "type" not in body and not any(
        m in body
        for m in ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList")
    ):
        patch.pop("type", None)

    def apply(current: Entity | None) -> Write:
        if current is None:
            raise _not_found(entity_id)
        instances = current["attrs"].get(iri) or []
        dataset_id = patch.get("datasetId")
        index = next(
            (i for i, inst in enumerate(instances) if inst.get("datasetId") == dataset_id), -1
        )
        if index < 0:
            raise ResourceNotFound(f"Attribute {attr_name!r} does not exist in {entity_id!r}")
        old_type = instances[index].get("type")
        if patch.get("type") not in (None, old_type):
            raise BadRequestData(
                f"Attribute {attr_name!r} is a {old_type}; a partial update cannot make it a "
                f"{patch['type']}"
            )
        instances[index] = merge_instance(instances[index], patch)
        touch(current, now)
        return Write(current)

    await change_one(broker, caller, EntityChange(entity_id, apply))


async def delete_attr(
    broker: Broker,
    caller: Caller,
    entity_id: str,
    attr_name: str,
    terms: TermMap,
    *,
    dataset_id: str | None = None,
    delete_all: bool = False,
) -> None:
    """DELETE /entities/{id}/attrs/{attrId} (one datasetId, the default, or all instances)."""
    validate_entity_id(entity_id)
    iri = terms.expand(validate_name(attr_name))
    if dataset_id is not None:
        validate_entity_id(dataset_id, "datasetId")
    now = now_timestamp()

    def apply(current: Entity | None) -> Write:
        if current is None:
            raise _not_found(entity_id)
        if not delete_attribute(current, iri, dataset_id=dataset_id, delete_all=delete_all):
            raise ResourceNotFound(f"Attribute {attr_name!r} not found in {entity_id!r}")
        touch(current, now)
        return Write(current)

    await change_one(broker, caller, EntityChange(entity_id, apply))


async def query_entities(
    broker: Broker, caller: Caller, query: EntityQuery, *, views: bool = False
) -> QueryResult:
    """GET /entities and POST /entityOperations/query: one page of matching entities
    (with ``views``, their stored default views instead)."""
    if query.is_unbounded:
        raise BadRequestData(
            "A query needs at least one of id, idPattern, type, attrs, q, geometry or scopeQ"
        )
    if query.limit > broker.settings.max_limit:
        raise TooManyResults(
            f"limit {query.limit} is above the maximum of {broker.settings.max_limit}"
        )
    # one entity more than the page tells whether a next page exists
    probe = replace(query, limit=query.limit + 1) if query.limit else query
    page = await broker.store.query_entities(caller.tenant, probe, views=views)
    if page.views is not None and query.limit and len(page.views) > query.limit:
        page.views = page.views[: query.limit]
        page.more = True
    if query.limit and len(page.entities) > query.limit:
        page.entities = page.entities[: query.limit]
        page.more = True
    return page
