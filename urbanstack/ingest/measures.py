"""Device measures into NGSI-LD attribute instances: decoding, type conversion, checks.

A measure is what one message carries: a JSON object of short names (``object_id``)
to values, optionally with ``TimeInstant`` (when it was observed). Each value is
converted to its mapping's type and checked against its bounds; a bad value is
rejected alone, with a reason, and the rest of the measure still counts. No I/O here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from urbanstack.ingest.provisioning import (
    INTEGER_TYPES,
    NUMBER_TYPES,
    Device,
    Group,
    effective_mappings,
    explicit_attrs,
    point_from_text,
)
from urbanstack.ngsild.errors import BadRequestData, NgsiLdError
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import Instance, is_uri, parse_instance, validate_name

TIME_MEMBER = "TimeInstant"
MAX_MEASURES_PER_MESSAGE = 1000
_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})
_GEO_TYPES = frozenset({"geo:point", "geo:json", "GeoProperty"})
_DATE_TYPES = frozenset({"DateTime", "ISO8601", "Date"})
_TEXT_TYPES = frozenset({"Text", "String"})


class Rejected(ValueError):
    """A value that cannot become its attribute: ``str(self)`` is the reason."""


@dataclass
class Rejection:
    """One refused value (or whole message, ``attribute`` None) and why."""

    attribute: str | None
    value: Any
    reason: str


@dataclass
class DecodedMeasure:
    """A measure's accepted attributes (IRI -> instance) and its rejected values."""

    observed_at: str
    attrs: dict[str, Instance] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)


def decode_payload(payload: bytes | str | Any) -> list[dict[str, Any]]:
    """The measures of a message body: one JSON object, or an array of them."""
    if isinstance(payload, (bytes, str)):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise Rejected(f"The payload is not JSON: {exc}") from None
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise Rejected("The payload holds no measure")
    if len(items) > MAX_MEASURES_PER_MESSAGE:
        raise Rejected(f"More than {MAX_MEASURES_PER_MESSAGE} measures in one message")
    for item in items:
        if not isinstance(item, dict):
            raise Rejected("Each measure must be a JSON object of names to values")
    return items


def _number(value: Any, kind: str) -> float | int:
    if isinstance(value, bool):
        raise Rejected(f"{value!r} is not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip()) if kind not in INTEGER_TYPES else int(value.strip())
        except ValueError:
            raise Rejected(f"{value!r} is not a number") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Rejected(f"{value!r} is not a number")
    if kind in INTEGER_TYPES:
        if isinstance(value, float) and not value.is_integer():
            raise Rejected(f"{value!r} is not an integer")
        return int(value)
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Rejected(f"{value!r} is not a boolean")


def _geometry(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            return point_from_text(value)
        except BadRequestData as exc:
            raise Rejected(exc.detail) from None
    if isinstance(value, list) and len(value) == 2:
        return _geometry(f"{value[0]},{value[1]}")
    if isinstance(value, dict) and isinstance(value.get("type"), str) and "coordinates" in value:
        return value
    raise Rejected(f'{value!r} is not "lat,lon" nor a GeoJSON geometry')


def parse_time(value: Any, zone: str | None) -> str:
    """A timestamp as UTC ISO 8601 with microseconds; a time without offset is read in
    the device's time zone (UTC when it has none)."""
    if not isinstance(value, str):
        raise Rejected(f"{TIME_MEMBER} {value!r} is not an ISO 8601 date-time")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(f"{TIME_MEMBER} {value!r} is not an ISO 8601 date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(zone) if zone else UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def convert_value(mapping: dict[str, Any], value: Any) -> tuple[str, str, Any]:
    """(NGSI-LD attribute type, value member, converted value) of a measured value, or
    :class:`Rejected` with the reason."""
    kind = mapping.get("type", "Property")
    if value is None:
        raise Rejected("null is not a value")
    if kind in NUMBER_TYPES:
        number = _number(value, kind)
        low, high = mapping.get("min"), mapping.get("max")
        if low is not None and number < low:
            raise Rejected(f"{number} is below the minimum {low:g}")
        if high is not None and number > high:
            raise Rejected(f"{number} is above the maximum {high:g}")
        return "Property", "value", number
    if kind == "Boolean":
        return "Property", "value", _boolean(value)
    if kind in _TEXT_TYPES:
        if isinstance(value, (dict, list)):
            raise Rejected(f"{value!r} is not text")
        return "Property", "value", value if isinstance(value, str) else str(value)
    if kind in _GEO_TYPES:
        return "GeoProperty", "value", _geometry(value)
    if kind in _DATE_TYPES:
        return "Property", "value", {"@type": "DateTime", "@value": parse_time(value, None)}
    if kind == "Relationship":
        if not is_uri(value):
            raise Rejected(f"{value!r} is not a URI")
        return "Relationship", "object", value
    return "Property", "value", value


_SCALARS = (int, float, str, bool)


def _instance(
    mapping: dict[str, Any], value: Any, observed_at: str, now: str, terms: TermMap
) -> tuple[str, Instance]:
    attr_type, member, converted = convert_value(mapping, value)
    unit = mapping.get("unitCode")
    if attr_type == "Property" and type(converted) in _SCALARS and not mapping.get("metadata"):
        if not unit or isinstance(unit, str):  # a plain reading: what parse_instance gives
            inst: Instance = {"type": "Property", "value": converted, "observedAt": observed_at}
            if unit:
                inst["unitCode"] = unit
            inst["createdAt"] = now
            inst["modifiedAt"] = now
            return terms.expand(mapping["name"]), inst
    raw: dict[str, Any] = {"type": attr_type, member: converted, "observedAt": observed_at}
    if unit:
        raw["unitCode"] = unit
    for meta, item in (mapping.get("metadata") or {}).items():
        if meta != "unitCode" and isinstance(item, dict) and "value" in item:
            raw[meta] = {"type": "Property", "value": item["value"]}
    name = mapping["name"]
    try:
        return terms.expand(name), parse_instance(raw, terms, now, name)
    except NgsiLdError as exc:
        raise Rejected(exc.detail) from None


def decode_measure(
    measure: dict[str, Any], device: Device, group: Group, arrival: str, terms: TermMap
) -> DecodedMeasure:
    """One measure as NGSI-LD instances observed at its ``TimeInstant`` (else ``arrival``)."""
    zone = device.get("timezone") or group.get("timezone")
    observed_at = arrival
    rejected: list[Rejection] = []
    if TIME_MEMBER in measure:
        try:
            observed_at = parse_time(measure[TIME_MEMBER], zone)
        except Rejected as exc:
            rejected.append(Rejection(TIME_MEMBER, measure[TIME_MEMBER], str(exc)))
    decoded = DecodedMeasure(observed_at, rejected=rejected)
    mappings = effective_mappings(device, group)
    explicit = explicit_attrs(device, group)
    for short, value in measure.items():
        if short == TIME_MEMBER:
            continue
        mapping = mappings.get(short)
        if mapping is None:
            if explicit:
                continue
            try:
                mapping = {"name": validate_name(short), "type": "Property"}
            except NgsiLdError as exc:
                decoded.rejected.append(Rejection(short, value, exc.detail))
                continue
        try:
            iri, inst = _instance(mapping, value, observed_at, arrival, terms)
        except Rejected as exc:
            decoded.rejected.append(Rejection(mapping["name"], value, str(exc)))
            continue
        decoded.attrs[iri] = inst
    return decoded


def static_instances(device: Device, group: Group, now: str, terms: TermMap) -> dict[str, Instance]:
    """The static attributes (group's, then device's) and location as instances."""
    attrs: dict[str, Instance] = {}
    for static in [*group.get("static_attributes", ()), *device.get("static_attributes", ())]:
        kind = static["type"]
        if kind == "Relationship":
            raw: dict[str, Any] = {"type": "Relationship", "object": static["value"]}
        elif kind in _GEO_TYPES:
            raw = {"type": "GeoProperty", "value": _geometry(static["value"])}
        else:
            raw = {"type": "Property", "value": static["value"]}
        for meta, item in (static.get("metadata") or {}).items():
            if isinstance(item, dict) and "value" in item:
                raw[meta] = item["value"] if meta == "unitCode" else {"value": item["value"]}
        attrs[terms.expand(static["name"])] = parse_instance(raw, terms, now, static["name"])
    if device.get("location") is not None:
        raw = {"type": "GeoProperty", "value": device["location"]}
        attrs[terms.expand("location")] = parse_instance(raw, terms, now, "location")
    return attrs
