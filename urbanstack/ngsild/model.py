"""The NGSI-LD entity model: validating client JSON into the stored (expanded) form.

The stored form of an entity is a plain dict, fast to (de)serialise with orjson::

    {"id": "urn:ngsi-ld:Building:1",
     "type": ["https://uri.etsi.org/ngsi-ld/default-context/Building"],
     "scope": ["/Hue/Center"],                                  # optional
     "createdAt": "2026-11-23T23:00:00.000000Z", "modifiedAt": "...",
     "attrs": {"https://ex.org/name": [instance, ...]}}         # IRI -> instances

An *instance* is one attribute value (several per attribute when they differ by
``datasetId``): ``{"type": "Property", "value": ..., "observedAt": ..., "unitCode": ...,
"datasetId": ..., "createdAt": ..., "modifiedAt": ..., "subs": {IRI: instance}}``.
Relationship instances hold ``object`` (a URI or a list), LanguageProperty
``languageMap``, VocabProperty ``vocab`` (expanded IRIs), JsonProperty ``json``,
ListProperty ``valueList`` and ListRelationship ``objectList`` (a list of URIs).
Compound values are kept as given (their keys are not expanded).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.jsonld import TermMap

Entity = dict[str, Any]
Instance = dict[str, Any]
Attributes = dict[str, list[Instance]]

ATTRIBUTE_TYPES = (
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "VocabProperty",
    "JsonProperty",
    "ListProperty",
    "ListRelationship",
)
#: member of an instance holding its value, per attribute type
VALUE_MEMBER = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "VocabProperty": "vocab",
    "JsonProperty": "json",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
}
_MEMBER_TO_TYPE = {
    "object": "Relationship",
    "languageMap": "LanguageProperty",
    "vocab": "VocabProperty",
    "json": "JsonProperty",
    "valueList": "ListProperty",
    "objectList": "ListRelationship",
    "value": "Property",
}
GEOJSON_TYPES = frozenset(
    {
        "Point",
        "LineString",
        "Polygon",
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
        "GeometryCollection",
    }
)
#: names with a meaning of their own: never attribute names
RESERVED_ENTITY_MEMBERS = frozenset(
    {"id", "@id", "type", "@type", "scope", "@context", "createdAt", "modifiedAt", "deletedAt"}
)
RESERVED_ATTRIBUTE_MEMBERS = frozenset(
    {
        "type",
        "value",
        "object",
        "objectType",
        "languageMap",
        "vocab",
        "json",
        "valueList",
        "objectList",
        "observedAt",
        "unitCode",
        "datasetId",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "previousValue",
        "previousObject",
        "previousLanguageMap",
        "previousVocab",
        "previousJson",
        "previousValueList",
        "previousObjectList",
        "lang",
        "@context",
    }
)
NGSI_LD_NULL = "urn:ngsi-ld:null"
MAX_NAME_LENGTH = 256
MAX_ID_LENGTH = 512
MAX_NESTING = 8

_URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
_NAME_RE = re.compile(r"^[^\s<>\"'=;()\[\]{}|\\^`,?&#%]+$")
_LANG_RE = re.compile(r"^(@none|[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*)$")


#: (second since the epoch, its "YYYY-MM-DDTHH:MM:SS." text): most calls fall in the same
#: second as the one before, and formatting a datetime costs ~10 times the clock read
_second_text: tuple[int, str] = (-1, "")


def now_timestamp() -> str:
    """The current time as a normalised NGSI-LD timestamp (UTC, microseconds)."""
    global _second_text
    second, nanos = divmod(time.time_ns(), 1_000_000_000)
    cached = _second_text
    if cached[0] != second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        cached = _second_text = (second, text)
    return f"{cached[1]}{nanos // 1000:06d}Z"


def is_uri(value: object) -> bool:
    """True when ``value`` is an absolute URI (scheme ``:`` rest, no whitespace)."""
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH and bool(_URI_RE.match(value))


def validate_entity_id(value: object, what: str = "entity id") -> str:
    """Refuse anything but an absolute URI as an entity (or dataset, object) id."""
    if not is_uri(value):
        raise BadRequestData(f"Invalid {what}: {value!r} is not a valid URI")
    return value  # type: ignore[return-value]


@lru_cache(maxsize=4096)
def _valid_name(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and bool(_NAME_RE.match(value))


def validate_name(value: object, what: str = "attribute name") -> str:
    """Refuse names that cannot be JSON-LD terms (spaces, quotes, query syntax)."""
    if isinstance(value, str) and value and _valid_name(value):
        return value
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise BadRequestData(f"Invalid {what}: {value!r}")
    raise BadRequestData(f"Invalid {what}: {value!r} contains a forbidden character")


def normalize_datetime(value: object, what: str = "datetime") -> str:
    """Parse an ISO 8601 datetime into the stored UTC form; BadRequestData if invalid."""
    if not isinstance(value, str):
        raise BadRequestData(f"Invalid {what}: {value!r} is not an ISO 8601 string")
    normalized = _normalized_datetime(value)
    if normalized is None:
        raise BadRequestData(f"Invalid {what}: {value!r} is not an ISO 8601 datetime")
    return normalized


@lru_cache(maxsize=4096)
def _normalized_datetime(value: str) -> str | None:
    """The stored UTC form of an ISO 8601 datetime with a time part, else None (cached:
    the same timestamps recur across a batch)."""
    if len(value) in (20, 24, 27) and value[10] == "T" and value[-1] == "Z" and value[19] in "Z.":
        # UTC with 0, 3 or 6 decimals, as sensors send them: validate, pad the fraction
        try:
            datetime.fromisoformat(value[:-1])
        except ValueError:
            return None
        return value[:19] + "." + value[20:-1].ljust(6, "0") + "Z"
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if "T" not in text.upper():
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_entity(
    body: object,
    terms: TermMap,
    now: str,
    *,
    require_id: bool = True,
    require_type: bool = True,
) -> Entity:
    """Validate a whole entity (normalized or concise) into the stored form."""
    if not isinstance(body, dict):
        raise BadRequestData("An entity must be a JSON object")
    entity: Entity = {}
    raw_id = body.get("id", body.get("@id"))
    if raw_id is not None or require_id:
        entity["id"] = validate_entity_id(raw_id)
    raw_type = body.get("type", body.get("@type"))
    if raw_type is not None or require_type:
        entity["type"] = parse_entity_types(raw_type, terms)
    if "scope" in body:
        entity["scope"] = parse_scope_value(body["scope"])
    entity["createdAt"] = now
    entity["modifiedAt"] = now
    entity["attrs"] = parse_attributes(
        {k: v for k, v in body.items() if k not in RESERVED_ENTITY_MEMBERS}, terms, now
    )
    return entity


def parse_entity_types(raw: object, terms: TermMap) -> list[str]:
    """Validate and expand an entity's ``type`` (a name or a non-empty list)."""
    names = raw if isinstance(raw, list) else [raw]
    if not names:
        raise BadRequestData("An entity needs at least one type")
    expanded: list[str] = []
    for name in names:
        iri = terms.expand(validate_name(name, "entity type"))
        if iri not in expanded:
            expanded.append(iri)
    return expanded


def parse_scope_value(raw: object) -> list[str]:
    """Validate an entity's ``scope`` (one or several ``/a/b`` paths)."""
    from urbanstack.ngsild.scope import validate_scope

    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise BadRequestData("scope must not be empty")
    return [validate_scope(v) for v in values]


def parse_attributes(
    body: dict[str, Any], terms: TermMap, now: str, *, allow_null: bool = False
) -> Attributes:
    """Validate a fragment of attributes (name -> one or several instances).

    With ``allow_null`` (merge-patch), ``urn:ngsi-ld:null`` or JSON null marks an
    attribute for deletion; it is kept as an instance ``{"type": None}``.
    """
    attrs: Attributes = {}
    for name, raw in body.items():
        if name in RESERVED_ENTITY_MEMBERS:
            raise BadRequestData(f"{name!r} cannot be used as an attribute name")
        iri = terms.expand(validate_name(name))
        if allow_null and (raw is None or raw == NGSI_LD_NULL):
            attrs[iri] = [{"type": None}]
            continue
        raw_instances = raw if _is_instance_list(raw) else [raw]
        instances: list[Instance] = []
        seen: set[str | None] = set()
        for item in raw_instances:
            inst = parse_instance(item, terms, now, name, allow_null=allow_null)
            key = inst.get("datasetId")
            if key in seen:
                raise BadRequestData(
                    f"Attribute {name!r} has two instances with the same datasetId {key!r}"
                )
            seen.add(key)
            instances.append(inst)
        attrs[iri] = instances
    return attrs


def _is_instance_list(raw: object) -> bool:
    return (
        isinstance(raw, list)
        and bool(raw)
        and all(isinstance(item, dict) and _looks_like_instance(item) for item in raw)
    )


def _looks_like_instance(item: dict[str, Any]) -> bool:
    if item.get("type") in ATTRIBUTE_TYPES:
        return True
    return any(member in item for member in _MEMBER_TO_TYPE)


def infer_attribute_type(raw: object) -> str:
    """The attribute type of a concise (type-less) attribute value."""
    if isinstance(raw, dict):
        declared = raw.get("type")
        if declared in ATTRIBUTE_TYPES:
            return declared
        for member, attr_type in _MEMBER_TO_TYPE.items():
            if member in raw:
                return attr_type
        if (declared in GEOJSON_TYPES and "coordinates" in raw) or declared == "GeometryCollection":
            return "GeoProperty"
    return "Property"


def parse_instance(
    raw: object,
    terms: TermMap,
    now: str,
    name: str,
    *,
    depth: int = 0,
    allow_null: bool = False,
    partial: bool = False,
) -> Instance:
    """Validate one attribute instance (normalized or concise) into the stored form.

    With ``partial`` (partial attribute update) the value member may be missing.
    """
    if depth > MAX_NESTING:
        raise BadRequestData(f"Attribute {name!r} nests sub-attributes too deeply")
    if type(raw) is dict and raw.get("type") == "Property" and raw.keys() <= _READING_MEMBERS:
        reading = _parse_reading(raw, now, name)
        if reading is not None:
            return reading
    attr_type = infer_attribute_type(raw)
    if not isinstance(raw, dict) or (
        attr_type == "GeoProperty" and raw.get("type") in GEOJSON_TYPES
    ):
        raw = {"value": raw}
    declared = raw.get("type")
    if declared is not None and declared not in ATTRIBUTE_TYPES:
        if attr_type != "Property" or "value" not in raw:
            raise BadRequestData(f"Attribute {name!r} has an unknown type {declared!r}")
        raw = {"value": raw}
    inst: Instance = {"type": attr_type}
    member = VALUE_MEMBER[attr_type]
    if member in raw:
        inst[member] = _parse_value(attr_type, raw[member], terms, name)
    elif not partial:
        raise BadRequestData(f"Attribute {name!r} of type {attr_type} needs a {member!r} member")
    for key, value in raw.items():
        if key in ("type", member, "createdAt", "modifiedAt", "instanceId", "@context"):
            continue
        if key in _META_MEMBERS:
            inst[key] = _parse_meta(key, value, name)
        elif key == "objectType" and attr_type in ("Relationship", "ListRelationship"):
            types = value if isinstance(value, list) else [value]
            inst["objectType"] = [terms.expand(validate_name(t, "objectType")) for t in types]
        elif key in RESERVED_ATTRIBUTE_MEMBERS:
            raise BadRequestData(f"{key!r} is not allowed in a {attr_type} ({name!r})")
        else:
            sub_iri = terms.expand(validate_name(key, "sub-attribute name"))
            if allow_null and (value is None or value == NGSI_LD_NULL):
                inst.setdefault("subs", {})[sub_iri] = {"type": None}
                continue
            sub = parse_instance(value, terms, now, key, depth=depth + 1)
            sub.pop("datasetId", None)
            inst.setdefault("subs", {})[sub_iri] = sub
    inst["createdAt"] = now
    inst["modifiedAt"] = now
    return inst


_META_MEMBERS = frozenset({"observedAt", "unitCode", "datasetId"})
_READING_MEMBERS = frozenset({"type", "value", *_META_MEMBERS})


def _parse_meta(key: str, value: Any, name: str) -> Any:
    """observedAt, unitCode or datasetId of an instance, validated."""
    if key == "observedAt":
        return normalize_datetime(value, f"observedAt of {name!r}")
    if key == "unitCode":
        if not isinstance(value, str) or not value:
            raise BadRequestData(f"unitCode of {name!r} must be a non-empty string")
        return value
    return validate_entity_id(value, f"datasetId of {name!r}")


_SCALARS = (int, float, str, bool)


def _parse_reading(raw: dict[str, Any], now: str, name: str) -> Instance | None:
    """The common sensor reading (a Property with a scalar value and only observedAt,
    unitCode or datasetId) parsed without the general path; None to take the general
    path. Gives exactly what the general path gives (tests compare them)."""
    value = raw.get("value")
    if type(value) not in _SCALARS:
        return None
    inst: Instance = {"type": "Property", "value": value}
    for key, member in raw.items():
        if key in _META_MEMBERS:
            inst[key] = _parse_meta(key, member, name)
    inst["createdAt"] = now
    inst["modifiedAt"] = now
    return inst


def _parse_value(attr_type: str, value: Any, terms: TermMap, name: str) -> Any:
    if value is None:
        raise BadRequestData(f"Attribute {name!r} has a null value")
    if attr_type == "Property":
        if isinstance(value, dict) and value.get("@type") == "DateTime":
            return {"@type": "DateTime", "@value": normalize_datetime(value.get("@value"))}
        return value
    if attr_type == "GeoProperty":
        from urbanstack.ngsild.geo import validate_geometry

        return validate_geometry(value)
    if attr_type == "Relationship":
        if isinstance(value, list):
            if not value:
                raise BadRequestData(f"Relationship {name!r} has an empty object list")
            return [validate_entity_id(v, f"object of {name!r}") for v in value]
        return validate_entity_id(value, f"object of {name!r}")
    if attr_type == "ListRelationship":
        if not isinstance(value, list):
            raise BadRequestData(f"objectList of {name!r} must be a list")
        out = []
        for item in value:
            if isinstance(item, dict):
                item = item.get("object")
            out.append(validate_entity_id(item, f"objectList of {name!r}"))
        return out
    if attr_type == "LanguageProperty":
        if not isinstance(value, dict) or not value:
            raise BadRequestData(f"languageMap of {name!r} must be a non-empty object")
        for lang, text in value.items():
            if not _LANG_RE.match(lang):
                raise BadRequestData(f"Invalid language tag {lang!r} in {name!r}")
            texts = text if isinstance(text, list) else [text]
            if not all(isinstance(t, str) for t in texts):
                raise BadRequestData(f"languageMap of {name!r} must map tags to strings")
        return value
    if attr_type == "VocabProperty":
        if isinstance(value, list):
            return [terms.expand(validate_name(v, "vocab")) for v in value]
        return terms.expand(validate_name(value, "vocab"))
    if attr_type == "ListProperty":
        if not isinstance(value, list):
            raise BadRequestData(f"valueList of {name!r} must be a list")
        return value
    return value  # JsonProperty: any JSON


# --- changes applied to stored entities (pure; the broker runs them inside a store transaction)


def _instance_index(instances: list[Instance], dataset_id: str | None) -> int:
    for i, inst in enumerate(instances):
        if inst.get("datasetId") == dataset_id:
            return i
    return -1


def _keep_created(new: Instance, old: Instance) -> Instance:
    new["createdAt"] = old.get("createdAt", new["createdAt"])
    return new


def append_attributes(
    entity: Entity, attrs: Attributes, *, overwrite: bool = True
) -> tuple[list[str], list[tuple[str, str]]]:
    """Add or replace attribute instances; returns (updated, not_updated with reasons)."""
    updated: list[str] = []
    skipped: list[tuple[str, str]] = []
    current = entity["attrs"]
    for iri, instances in attrs.items():
        existing = current.setdefault(iri, [])
        changed = False
        for inst in instances:
            i = _instance_index(existing, inst.get("datasetId"))
            if i < 0:
                existing.append(inst)
                changed = True
            elif overwrite:
                existing[i] = _keep_created(inst, existing[i])
                changed = True
            else:
                skipped.append((iri, "Attribute exists and noOverwrite was given"))
        if changed:
            updated.append(iri)
        if not existing:
            del current[iri]
    return updated, skipped


def update_attributes(entity: Entity, attrs: Attributes) -> tuple[list[str], list[tuple[str, str]]]:
    """Replace only instances that exist already (PATCH .../attrs semantics)."""
    updated: list[str] = []
    skipped: list[tuple[str, str]] = []
    current = entity["attrs"]
    for iri, instances in attrs.items():
        existing = current.get(iri)
        if existing is None:
            skipped.append((iri, "Attribute does not exist"))
            continue
        changed = False
        for inst in instances:
            i = _instance_index(existing, inst.get("datasetId"))
            if i < 0:
                skipped.append((iri, f"No instance with datasetId {inst.get('datasetId')!r}"))
            else:
                existing[i] = _keep_created(inst, existing[i])
                changed = True
        if changed:
            updated.append(iri)
    return updated, skipped


def merge_instance(old: Instance, patch: Instance) -> Instance:
    """Merge-patch one instance: given members replace, sub-attributes merge, null deletes."""
    merged = dict(old)
    attr_type = patch.get("type") or old.get("type")
    member = VALUE_MEMBER.get(attr_type, "value")
    for key, value in patch.items():
        if key in ("subs", "createdAt"):
            continue
        merged[key] = value
    if patch.get("type") != old.get("type") and member in patch:
        for other in VALUE_MEMBER.values():
            if other != member:
                merged.pop(other, None)
    subs = dict(old.get("subs", {}))
    for sub_iri, sub in patch.get("subs", {}).items():
        if sub.get("type") is None:
            subs.pop(sub_iri, None)
        elif sub_iri in subs:
            subs[sub_iri] = merge_instance(subs[sub_iri], sub)
        else:
            subs[sub_iri] = sub
    if subs:
        merged["subs"] = subs
    else:
        merged.pop("subs", None)
    return merged


def merge_attributes(entity: Entity, attrs: Attributes) -> list[str]:
    """Merge-patch attributes into an entity (PATCH /entities/{id}); returns changed IRIs."""
    changed: list[str] = []
    current = entity["attrs"]
    for iri, instances in attrs.items():
        if len(instances) == 1 and instances[0].get("type") is None:
            if current.pop(iri, None) is not None:
                changed.append(iri)
            continue
        existing = current.setdefault(iri, [])
        for inst in instances:
            i = _instance_index(existing, inst.get("datasetId"))
            if i < 0:
                existing.append(inst)
            else:
                existing[i] = merge_instance(existing[i], inst)
        changed.append(iri)
    return changed


def delete_attribute(
    entity: Entity, iri: str, *, dataset_id: str | None = None, delete_all: bool = False
) -> bool:
    """Remove one instance (by datasetId) or all instances of an attribute."""
    existing = entity["attrs"].get(iri)
    if not existing:
        return False
    if delete_all:
        del entity["attrs"][iri]
        return True
    i = _instance_index(existing, dataset_id)
    if i < 0:
        return False
    del existing[i]
    if not existing:
        del entity["attrs"][iri]
    return True


def merge_types(entity: Entity, types: list[str]) -> None:
    """Add types to an entity's type list (types are never removed by a merge)."""
    for t in types:
        if t not in entity["type"]:
            entity["type"].append(t)


def touch(entity: Entity, now: str) -> None:
    """Stamp an entity as modified at ``now``."""
    entity["modifiedAt"] = now
