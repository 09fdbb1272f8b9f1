"""IoT provisioning: service groups and devices, in the FIWARE IoT Agent's JSON shapes.

A *service group* (``/iot/services``) has an API key, a default entity type and default
attribute mappings; a *device* (``/iot/devices``) has a device id, the entity it feeds,
its own mappings, static attributes, a location and a time zone. Both are validated
here into plain dictionaries (stored as records) with the IoT Agent's member names, so
existing provisioning scripts work; urbanstack adds ``min``/``max`` per attribute,
``unitCode`` as a member, ``location`` and ``autoprovision``. No I/O here.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.model import is_uri, validate_name

Group = dict[str, Any]
Device = dict[str, Any]

DEFAULT_RESOURCE = "/iot/json"
_APIKEY_RE = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")
_DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_\-.:@]{1,128}$")
#: attribute types whose values are numbers
NUMBER_TYPES = frozenset({"Number", "Float", "Double", "Integer", "Int", "Percentage"})
INTEGER_TYPES = frozenset({"Integer", "Int"})
_GROUP_MEMBERS = frozenset(
    {
        "apikey",
        "resource",
        "entity_type",
        "attributes",
        "static_attributes",
        "timestamp",
        "explicitAttrs",
        "autoprovision",
        "timezone",
        "trust",
        "cbroker",
        "lazy",
        "commands",
        "description",
        "service",
        "subservice",
    }
)
_DEVICE_MEMBERS = frozenset(
    {
        "device_id",
        "entity_name",
        "entity_type",
        "apikey",
        "protocol",
        "transport",
        "timezone",
        "timestamp",
        "attributes",
        "static_attributes",
        "explicitAttrs",
        "location",
        "lazy",
        "commands",
        "endpoint",
        "polling",
        "service",
        "subservice",
    }
)
#: members kept as given (the IoT Agent knows them; urbanstack does not act on them)
_PASSED = ("trust", "cbroker", "lazy", "commands", "description", "protocol", "endpoint")


def _bad(detail: str) -> BadRequestData:
    return BadRequestData(detail)


def _require_object(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad(f"{what} must be a JSON object")
    return raw


def _list_of(body: Any, member: str) -> list[dict[str, Any]]:
    """The items of ``{"<member>": [...]}`` (the IoT Agent's provisioning bodies)."""
    body = _require_object(body, "The body")
    items = body.get(member)
    if not isinstance(items, list) or not items:
        raise _bad(f"The body must hold a non-empty {member!r} array")
    return [_require_object(item, f"Each of {member!r}") for item in items]


def _unknown(raw: dict[str, Any], known: frozenset[str], what: str) -> None:
    extra = sorted(set(raw) - known)
    if extra:
        raise _bad(f"Unknown member(s) of {what}: {', '.join(extra)}")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{what} must be a number")
    return float(value)


def parse_mapping(raw: Any, where: str) -> dict[str, Any]:
    """One attribute mapping: ``object_id`` (what the device sends), ``name`` (the
    NGSI-LD attribute), ``type`` and optional ``unitCode``, ``min``, ``max``, ``metadata``."""
    raw = _require_object(raw, f"Each attribute of {where}")
    name = validate_name(raw.get("name"), f"attribute name in {where}")
    mapping: dict[str, Any] = {
        "object_id": str(raw.get("object_id") or name),
        "name": name,
        "type": str(raw.get("type") or "Property"),
    }
    metadata = raw.get("metadata")
    if metadata is not None:
        _require_object(metadata, f"metadata of {name!r}")
        mapping["metadata"] = metadata
        unit = metadata.get("unitCode")
        if isinstance(unit, dict) and isinstance(unit.get("value"), str):
            mapping["unitCode"] = unit["value"]
    if raw.get("unitCode") is not None:
        if not isinstance(raw["unitCode"], str) or not raw["unitCode"]:
            raise _bad(f"unitCode of {name!r} must be a non-empty string")
        mapping["unitCode"] = raw["unitCode"]
    for bound in ("min", "max"):
        if raw.get(bound) is not None:
            mapping[bound] = _number(raw[bound], f"{bound} of {name!r}")
    if "min" in mapping and "max" in mapping and mapping["min"] > mapping["max"]:
        raise _bad(f"min of {name!r} is above its max")
    return mapping


def parse_static(raw: Any, where: str) -> dict[str, Any]:
    """One static attribute: ``name``, ``type`` and ``value`` (an object id for a
    Relationship)."""
    raw = _require_object(raw, f"Each static attribute of {where}")
    name = validate_name(raw.get("name"), f"static attribute name in {where}")
    if "value" not in raw:
        raise _bad(f"Static attribute {name!r} has no value")
    kind = str(raw.get("type") or "Property")
    if kind == "Relationship" and not is_uri(raw["value"]):
        raise _bad(f"Static Relationship {name!r} must point to a URI")
    static = {"name": name, "type": kind, "value": raw["value"]}
    if raw.get("metadata") is not None:
        static["metadata"] = _require_object(raw["metadata"], f"metadata of {name!r}")
    return static


def _mappings(raw: dict[str, Any], where: str) -> list[dict[str, Any]]:
    items = raw.get("attributes") or []
    if not isinstance(items, list):
        raise _bad(f"attributes of {where} must be an array")
    mappings = [parse_mapping(item, where) for item in items]
    seen: set[str] = set()
    for mapping in mappings:
        if mapping["object_id"] in seen:
            raise _bad(f"object_id {mapping['object_id']!r} is mapped twice in {where}")
        seen.add(mapping["object_id"])
    return mappings


def _statics(raw: dict[str, Any], where: str) -> list[dict[str, Any]]:
    items = raw.get("static_attributes") or []
    if not isinstance(items, list):
        raise _bad(f"static_attributes of {where} must be an array")
    return [parse_static(item, where) for item in items]


def validate_timezone(value: Any) -> str:
    """An IANA time-zone name such as ``Asia/Ho_Chi_Minh``."""
    if not isinstance(value, str) or not value:
        raise _bad("timezone must be an IANA time-zone name such as Asia/Ho_Chi_Minh")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(f"Unknown time zone {value!r}") from None
    return value


def parse_group(raw: dict[str, Any], service: str | None, subservice: str) -> Group:
    """A service group from the IoT Agent's shape, for tenant ``service``."""
    _unknown(raw, _GROUP_MEMBERS, "a service group")
    apikey = raw.get("apikey")
    if not isinstance(apikey, str) or not _APIKEY_RE.match(apikey):
        raise _bad("apikey must be 1-64 letters, digits, '_', '-' or '.'")
    where = f"service group {apikey!r}"
    group: Group = {
        "apikey": apikey,
        "resource": str(raw.get("resource") or DEFAULT_RESOURCE),
        "entity_type": validate_name(raw.get("entity_type"), f"entity_type of {where}"),
        "attributes": _mappings(raw, where),
        "static_attributes": _statics(raw, where),
        "explicitAttrs": bool(raw.get("explicitAttrs", False)),
        "autoprovision": bool(raw.get("autoprovision", True)),
        "service": service,
        "subservice": subservice,
    }
    if raw.get("timezone") is not None:
        group["timezone"] = validate_timezone(raw["timezone"])
    for key in _PASSED:
        if key in raw:
            group[key] = raw[key]
    return group


def patch_group(group: Group, raw: Any) -> Group:
    """A service group with the members of ``raw`` replaced (apikey and tenant kept)."""
    raw = _require_object(raw, "The body")
    if raw.get("apikey", group["apikey"]) != group["apikey"]:
        raise _bad("The apikey of a service group cannot change")
    merged = {k: v for k, v in group.items() if k not in ("service", "subservice")}
    merged.update(raw)
    return parse_group(merged, group["service"], group["subservice"])


def parse_location(raw: Any) -> dict[str, Any]:
    """A device location: a GeoJSON Point, or ``"lat,lon"`` as IoT devices send it."""
    if isinstance(raw, str):
        return point_from_text(raw)
    if (
        isinstance(raw, dict)
        and raw.get("type") == "Point"
        and isinstance(raw.get("coordinates"), list)
        and len(raw["coordinates"]) in (2, 3)
    ):
        lon, lat = (
            _number(raw["coordinates"][0], "longitude"),
            _number(raw["coordinates"][1], "latitude"),
        )
        return _point(lat, lon)
    raise _bad('location must be a GeoJSON Point or "lat,lon"')


def _point(lat: float, lon: float) -> dict[str, Any]:
    if not -90.0 <= lat <= 90.0:
        raise _bad(f"latitude {lat} is outside -90..90")
    if not -180.0 <= lon <= 180.0:
        raise _bad(f"longitude {lon} is outside -180..180")
    return {"type": "Point", "coordinates": [lon, lat]}


def point_from_text(text: str) -> dict[str, Any]:
    """``"16.46,107.59"`` (latitude first, as FIWARE's geo:point) as a GeoJSON Point."""
    parts = text.split(",")
    if len(parts) != 2:
        raise _bad(f'{text!r} is not "lat,lon"')
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise _bad(f'{text!r} is not "lat,lon"') from None
    return _point(lat, lon)


def default_entity_id(entity_type: str, device_id: str) -> str:
    """The entity a device feeds when provisioning names none."""
    short = entity_type.rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    return f"urn:ngsi-ld:{short}:{device_id}"


def parse_device(raw: dict[str, Any], group: Group | None, service: str | None, sub: str) -> Device:
    """A device from the IoT Agent's shape; ``group`` (found by the device's apikey, or
    the tenant's only group) gives the defaults."""
    _unknown(raw, _DEVICE_MEMBERS, "a device")
    device_id = raw.get("device_id")
    if not isinstance(device_id, str) or not _DEVICE_ID_RE.match(device_id):
        raise _bad("device_id must be 1-128 letters, digits or one of _ - . : @")
    where = f"device {device_id!r}"
    entity_type = raw.get("entity_type") or (group or {}).get("entity_type")
    entity_type = validate_name(entity_type, f"entity_type of {where}")
    entity_name = raw.get("entity_name") or default_entity_id(entity_type, device_id)
    if not is_uri(entity_name):
        raise _bad(f"entity_name of {where} must be a URI (urn:ngsi-ld:...)")
    apikey = raw.get("apikey") or (group or {}).get("apikey")
    if not isinstance(apikey, str) or not _APIKEY_RE.match(apikey):
        raise _bad(f"{where} needs the apikey of a service group")
    device: Device = {
        "device_id": device_id,
        "entity_name": entity_name,
        "entity_type": entity_type,
        "apikey": apikey,
        "transport": str(raw.get("transport") or "MQTT"),
        "attributes": _mappings(raw, where),
        "static_attributes": _statics(raw, where),
        "service": service,
        "subservice": sub,
    }
    if raw.get("explicitAttrs") is not None:
        device["explicitAttrs"] = bool(raw["explicitAttrs"])
    if raw.get("timezone") is not None:
        device["timezone"] = validate_timezone(raw["timezone"])
    if raw.get("location") is not None:
        device["location"] = parse_location(raw["location"])
    for key in _PASSED:
        if key in raw:
            device[key] = raw[key]
    return device


def patch_device(device: Device, raw: Any, group: Group | None) -> Device:
    """A device with the members of ``raw`` replaced (its id and tenant kept)."""
    raw = _require_object(raw, "The body")
    if raw.get("device_id", device["device_id"]) != device["device_id"]:
        raise _bad("The device_id of a device cannot change")
    merged = {k: v for k, v in device.items() if k not in ("service", "subservice")}
    merged.update(raw)
    return parse_device(merged, group, device["service"], device["subservice"])


def parse_groups(body: Any, service: str | None, subservice: str) -> list[Group]:
    """``{"services": [...]}`` validated; duplicate apikeys refused."""
    groups = [parse_group(item, service, subservice) for item in _list_of(body, "services")]
    keys = [g["apikey"] for g in groups]
    if len(set(keys)) != len(keys):
        raise _bad("The same apikey appears twice in the body")
    return groups


def device_items(body: Any) -> list[dict[str, Any]]:
    """The raw items of ``{"devices": [...]}``, duplicate device ids refused."""
    items = _list_of(body, "devices")
    ids = [item.get("device_id") for item in items]
    if len(set(map(str, ids))) != len(ids):
        raise _bad("The same device_id appears twice in the body")
    return items


def effective_mappings(device: Device, group: Group) -> dict[str, dict[str, Any]]:
    """object_id -> mapping: the group's defaults overridden by the device's own."""
    mappings = {m["object_id"]: m for m in group.get("attributes", ())}
    mappings.update({m["object_id"]: m for m in device.get("attributes", ())})
    return mappings


def explicit_attrs(device: Device, group: Group) -> bool:
    """True when measures the mappings do not name are dropped instead of passed on."""
    return bool(device.get("explicitAttrs", group.get("explicitAttrs", False)))


def device_key(service: str | None, device_id: str) -> str:
    """The record key of a device: unique per tenant."""
    return f"{service or ''}/{device_id}"
