"""Measures into NGSI-LD instances: conversion, bounds, timestamps, rejections."""

from __future__ import annotations

from typing import Any

import pytest

from urbanstack.ingest.measures import (
    Rejected,
    convert_value,
    decode_measure,
    decode_payload,
    parse_time,
)
from urbanstack.ngsild.jsonld import core_term_map

TERMS = core_term_map()
GROUP: dict[str, Any] = {
    "apikey": "k",
    "entity_type": "T",
    "attributes": [
        {
            "object_id": "t",
            "name": "temperature",
            "type": "Number",
            "unitCode": "CEL",
            "min": -40,
            "max": 60,
        },
        {"object_id": "n", "name": "count", "type": "Integer"},
        {"object_id": "o", "name": "open", "type": "Boolean"},
        {"object_id": "g", "name": "position", "type": "geo:point"},
        {"object_id": "r", "name": "refRoad", "type": "Relationship"},
    ],
    "static_attributes": [],
}
DEVICE: dict[str, Any] = {
    "device_id": "d",
    "apikey": "k",
    "attributes": [],
    "timezone": "Asia/Ho_Chi_Minh",
}
ARRIVAL = "2026-11-24T05:00:00.000000Z"


def iri(name: str) -> str:
    return TERMS.expand(name)


@pytest.mark.parametrize(
    "mapping,value,expected",
    [
        ({"type": "Number"}, "21.5", 21.5),
        ({"type": "Number"}, 3, 3),
        ({"type": "Integer"}, "7", 7),
        ({"type": "Integer"}, 7.0, 7),
        ({"type": "Boolean"}, "true", True),
        ({"type": "Boolean"}, 0, False),
        ({"type": "Text"}, 12, "12"),
        ({"type": "geo:point"}, "16.46,107.59", {"type": "Point", "coordinates": [107.59, 16.46]}),
    ],
)
def test_values_are_converted_to_their_mapped_type(
    mapping: dict[str, Any], value: Any, expected: Any
) -> None:
    assert convert_value(mapping, value)[2] == expected


@pytest.mark.parametrize(
    "mapping,value,reason",
    [
        ({"type": "Number"}, "warm", "not a number"),
        ({"type": "Number"}, True, "not a number"),
        ({"type": "Number"}, float("nan"), "not a number"),
        ({"type": "Integer"}, 7.5, "not an integer"),
        ({"type": "Number", "min": 0}, -1, "below the minimum"),
        ({"type": "Number", "max": 10}, 11, "above the maximum"),
        ({"type": "Boolean"}, "maybe", "not a boolean"),
        ({"type": "geo:point"}, "north", "lat,lon"),
        ({"type": "Relationship"}, "road 1", "not a URI"),
        ({"type": "Number"}, None, "null"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(
    mapping: dict[str, Any], value: Any, reason: str
) -> None:
    with pytest.raises(Rejected, match=reason):
        convert_value(mapping, value)


def test_a_measure_becomes_instances_observed_at_its_time_instant() -> None:
    decoded = decode_measure(
        {"t": 30, "TimeInstant": "2026-11-24T12:00:00+07:00"}, DEVICE, GROUP, ARRIVAL, TERMS
    )
    inst = decoded.attrs[iri("temperature")]
    assert inst["value"] == 30 and inst["unitCode"] == "CEL"
    assert inst["observedAt"] == "2026-11-24T05:00:00.000000Z"


def test_a_time_without_offset_is_read_in_the_device_time_zone() -> None:
    assert parse_time("2026-11-24T12:00:00", "Asia/Ho_Chi_Minh") == "2026-11-24T05:00:00.000000Z"
    assert parse_time("2026-11-24T12:00:00", None) == "2026-11-24T12:00:00.000000Z"


def test_without_time_instant_the_arrival_time_is_used() -> None:
    decoded = decode_measure({"n": 4}, DEVICE, GROUP, ARRIVAL, TERMS)
    assert decoded.attrs[iri("count")]["observedAt"] == ARRIVAL


def test_a_bad_value_is_rejected_alone() -> None:
    decoded = decode_measure({"t": 99, "n": 4, "o": "yes"}, DEVICE, GROUP, ARRIVAL, TERMS)
    assert set(decoded.attrs) == {iri("count"), iri("open")}
    assert [(r.attribute, r.value) for r in decoded.rejected] == [("temperature", 99)]


def test_a_bad_time_instant_is_rejected_and_arrival_time_used() -> None:
    decoded = decode_measure({"n": 1, "TimeInstant": "yesterday"}, DEVICE, GROUP, ARRIVAL, TERMS)
    assert decoded.rejected[0].attribute == "TimeInstant"
    assert decoded.attrs[iri("count")]["observedAt"] == ARRIVAL


def test_unmapped_names_pass_through_unless_explicit_attrs() -> None:
    passed = decode_measure({"noise": 55}, DEVICE, GROUP, ARRIVAL, TERMS)
    assert passed.attrs[iri("noise")]["value"] == 55
    dropped = decode_measure({"noise": 55}, DEVICE, GROUP | {"explicitAttrs": True}, ARRIVAL, TERMS)
    assert dropped.attrs == {} and dropped.rejected == []


def test_geo_point_becomes_a_geoproperty_and_relationship_an_object() -> None:
    decoded = decode_measure(
        {"g": "16.4,107.6", "r": "urn:ngsi-ld:Road:1"}, DEVICE, GROUP, ARRIVAL, TERMS
    )
    assert decoded.attrs[iri("position")]["type"] == "GeoProperty"
    assert decoded.attrs[iri("refRoad")]["object"] == "urn:ngsi-ld:Road:1"


@pytest.mark.parametrize("payload", [b"not json", b"[]", b"[1, 2]", b'"text"'])
def test_payloads_that_are_not_measures_are_rejected(payload: bytes) -> None:
    with pytest.raises(Rejected):
        decode_payload(payload)


def test_a_payload_may_carry_several_measures() -> None:
    assert decode_payload(b'[{"t": 1}, {"t": 2}]') == [{"t": 1}, {"t": 2}]


@pytest.mark.parametrize(
    ("mapping", "value"),
    [
        ({"name": "t", "type": "Number", "unitCode": "CEL"}, "21.5"),
        ({"name": "n", "type": "Integer"}, 7),
        ({"name": "on", "type": "Boolean"}, "true"),
        ({"name": "label", "type": "Text"}, 12),
        ({"name": "any", "type": "Property"}, "x"),
        ({"name": "loc", "type": "geo:point"}, "16.46,107.59"),
        ({"name": "rel", "type": "Relationship"}, "urn:ngsi-ld:Gauge:1"),
        ({"name": "obj", "type": "Property"}, {"a": 1}),
        ({"name": "m", "type": "Number", "metadata": {"accuracy": {"value": 0.1}}}, 1),
    ],
)
def test_a_plain_reading_gives_what_parse_instance_gives(
    mapping: dict[str, Any], value: Any
) -> None:
    from urbanstack.ingest.measures import _instance
    from urbanstack.ngsild.model import parse_instance

    observed, now = "2026-11-24T10:00:00.000000Z", "2026-11-24T10:00:01.000000Z"
    kind, member, converted = convert_value(mapping, value)
    raw: dict[str, Any] = {"type": kind, member: converted, "observedAt": observed}
    if mapping.get("unitCode"):
        raw["unitCode"] = mapping["unitCode"]
    for meta, item in (mapping.get("metadata") or {}).items():
        raw[meta] = {"type": "Property", "value": item["value"]}
    expected = parse_instance(raw, TERMS, now, mapping["name"])
    iri, inst = _instance(mapping, value, observed, now, TERMS)
    assert iri == TERMS.expand(mapping["name"])
    assert inst == expected
    assert list(inst) == list(expected)  # same member order: same stored JSON
