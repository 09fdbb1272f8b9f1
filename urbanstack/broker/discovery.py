"""Discovery use cases (GS CIM 009 clause 5.7.5-5.7.8): which types and attributes exist."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from urbanstack.broker.caller import Caller
from urbanstack.broker.entities import Broker
from urbanstack.ngsild.errors import ResourceNotFound
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import validate_name
from urbanstack.store.base import DiscoveryRow


def _by_type(rows: list[DiscoveryRow]) -> dict[str, dict[str, Any]]:
    types: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.entity_type is None:
            continue
        info = types.setdefault(row.entity_type, {"count": 0, "attrs": defaultdict(set)})
        if row.attribute is None:
            info["count"] = row.count
        else:
            info["attrs"][row.attribute].add(row.attribute_type)
    return types


def _by_attribute(rows: list[DiscoveryRow]) -> dict[str, dict[str, Any]]:
    attrs: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.attribute is None:
            continue
        info = attrs.setdefault(row.attribute, {"count": 0, "kinds": set(), "types": set()})
        if row.entity_type is None:
            info["count"] += row.count
            info["kinds"].add(row.attribute_type)
        else:
            info["types"].add(row.entity_type)
    return attrs


async def list_types(broker: Broker, caller: Caller, terms: TermMap, *, details: bool) -> Any:
    """GET /types: an EntityTypeList, or with ``details`` one EntityType per type."""
    types = _by_type(await broker.store.discovery(caller.tenant))
    if not details:
        return {
            "id": f"urn:ngsi-ld:EntityTypeList:{uuid.uuid4()}",
            "type": "EntityTypeList",
            "typeList": sorted(terms.compact(t) for t in types),
        }
    return [
        {
            "id": t,
            "type": "EntityType",
            "typeName": terms.compact(t),
            "attributeNames": sorted(terms.compact(a) for a in info["attrs"]),
        }
        for t, info in sorted(types.items(), key=lambda kv: terms.compact(kv[0]))
    ]


async def retrieve_type(broker: Broker, caller: Caller, terms: TermMap, type_name: str) -> Any:
    """GET /types/{type}: an EntityTypeInfo with entity count and attribute details."""
    iri = terms.expand(validate_name(type_name, "entity type"))
    types = _by_type(await broker.store.discovery(caller.tenant))
    info = types.get(iri)
    if info is None:
        raise ResourceNotFound(f"No entity of type {type_name!r}")
    return {
        "id": iri,
        "type": "EntityTypeInfo",
        "typeName": terms.compact(iri),
        "entityCount": info["count"],
        "attributeDetails": [
            {
                "id": attr,
                "type": "Attribute",
                "attributeName": terms.compact(attr),
                "attributeTypes": sorted(kinds),
            }
            for attr, kinds in sorted(info["attrs"].items(), key=lambda kv: terms.compact(kv[0]))
        ],
    }


def _attribute_doc(terms: TermMap, attr: str, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": attr,
        "type": "Attribute",
        "attributeName": terms.compact(attr),
        "attributeCount": info["count"],
        "attributeTypes": sorted(info["kinds"]),
        "typeNames": sorted(terms.compact(t) for t in info["types"]),
    }


async def list_attributes(broker: Broker, caller: Caller, terms: TermMap, *, details: bool) -> Any:
    """GET /attributes: an AttributeList, or with ``details`` one Attribute per attribute."""
    attrs = _by_attribute(await broker.store.discovery(caller.tenant))
    if not details:
        return {
            "id": f"urn:ngsi-ld:AttributeList:{uuid.uuid4()}",
            "type": "AttributeList",
            "attributeList": sorted(terms.compact(a) for a in attrs),
        }
    return [
        _attribute_doc(terms, a, info)
        for a, info in sorted(attrs.items(), key=lambda kv: terms.compact(kv[0]))
    ]


async def retrieve_attribute(broker: Broker, caller: Caller, terms: TermMap, attr_name: str) -> Any:
    """GET /attributes/{attr}: one Attribute with its count, kinds and entity types."""
    iri = terms.expand(validate_name(attr_name))
    info = _by_attribute(await broker.store.discovery(caller.tenant)).get(iri)
    if info is None:
        raise ResourceNotFound(f"No entity has the attribute {attr_name!r}")
    return _attribute_doc(terms, iri, info)
