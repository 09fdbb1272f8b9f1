"""Service groups and devices in the FIWARE IoT Agent's shapes: validation and defaults."""

from __future__ import annotations

import pytest

from urbanstack.ingest.provisioning import (
    default_entity_id,
    effective_mappings,
    parse_device,
    parse_groups,
    patch_device,
    patch_group,
    point_from_text,
)
from urbanstack.ngsild.errors import BadRequestData

GROUP = {
    "apikey": "hue-aq",
    "entity_type": "AirQualityObserved",
    "resource": "/iot/json",
    "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}],
    "static_attributes": [{"name": "city", "type": "Text", "value": "Huế"}],
}


def test_group_keeps_the_iot_agent_members_and_tenant() -> None:
    [group] = parse_groups({"services": [GROUP]}, "hue", "/air")
    assert group["apikey"] == "hue-aq"
    assert group["entity_type"] == "AirQualityObserved"
    assert group["attributes"][0] == {"object_id": "t", "name": "temperature", "type": "Number"}
    assert group["service"] == "hue" and group["subservice"] == "/air"
    assert group["autoprovision"] is True


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"services": []},
        {"services": [{"entity_type": "T"}]},
        {"services": [{"apikey": "bad key", "entity_type": "T"}]},
        {"services": [{"apikey": "k", "entity_type": "T", "colour": "red"}]},
        {"services": [{"apikey": "k", "entity_type": "T", "attributes": {"t": 1}}]},
        {"services": [{"apikey": "k", "entity_type": "T"}, {"apikey": "k", "entity_type": "U"}]},
        {"services": [{"apikey": "k", "entity_type": "T", "timezone": "Mars/Olympus"}]},
    ],
)
def test_invalid_group_bodies_are_refused(body: object) -> None:
    with pytest.raises(BadRequestData):
        parse_groups(body, None, "/")


def test_an_object_id_mapped_twice_is_refused() -> None:
    attrs = [{"object_id": "t", "name": "a"}, {"object_id": "t", "name": "b"}]
    with pytest.raises(BadRequestData, match="mapped twice"):
        parse_groups(
            {"services": [{"apikey": "k", "entity_type": "T", "attributes": attrs}]}, None, "/"
        )


def test_min_above_max_is_refused() -> None:
    attrs = [{"object_id": "t", "name": "t", "type": "Number", "min": 5, "max": 1}]
    with pytest.raises(BadRequestData, match="above its max"):
        parse_groups(
            {"services": [{"apikey": "k", "entity_type": "T", "attributes": attrs}]}, None, "/"
        )


def test_unit_code_comes_from_the_member_or_the_metadata() -> None:
    attrs = [
        {"object_id": "t", "name": "t", "type": "Number", "unitCode": "CEL"},
        {
            "object_id": "h",
            "name": "h",
            "type": "Number",
            "metadata": {"unitCode": {"type": "Text", "value": "P1"}},
        },
    ]
    [group] = parse_groups(
        {"services": [{"apikey": "k", "entity_type": "T", "attributes": attrs}]}, None, "/"
    )
    assert [m["unitCode"] for m in group["attributes"]] == ["CEL", "P1"]


def test_device_takes_its_defaults_from_the_group() -> None:
    [group] = parse_groups({"services": [GROUP]}, "hue", "/")
    device = parse_device({"device_id": "aq-01"}, group, "hue", "/")
    assert device["entity_type"] == "AirQualityObserved"
    assert device["entity_name"] == "urn:ngsi-ld:AirQualityObserved:aq-01"
    assert device["apikey"] == "hue-aq"


def test_default_entity_id_uses_the_short_type_name() -> None:
    assert default_entity_id(
        "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved", "x"
    ) == ("urn:ngsi-ld:AirQualityObserved:x")


def test_device_location_accepts_lat_lon_text_and_geojson() -> None:
    a = parse_device(
        {"device_id": "d", "entity_type": "T", "apikey": "k", "location": "16.46,107.59"},
        None,
        None,
        "/",
    )
    b = parse_device(
        {
            "device_id": "d",
            "entity_type": "T",
            "apikey": "k",
            "location": {"type": "Point", "coordinates": [107.59, 16.46]},
        },
        None,
        None,
        "/",
    )
    assert a["location"] == b["location"] == {"type": "Point", "coordinates": [107.59, 16.46]}


@pytest.mark.parametrize("text", ["16.46", "a,b", "95,10", "10,190"])
def test_bad_lat_lon_text_is_refused(text: str) -> None:
    with pytest.raises(BadRequestData):
        point_from_text(text)


@pytest.mark.parametrize(
    "raw",
    [
        {"entity_type": "T", "apikey": "k"},
        {"device_id": "has space", "entity_type": "T", "apikey": "k"},
        {"device_id": "d", "apikey": "k"},
        {"device_id": "d", "entity_type": "T"},
        {"device_id": "d", "entity_type": "T", "apikey": "k", "entity_name": "not a uri"},
    ],
)
def test_invalid_devices_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(BadRequestData):
        parse_device(raw, None, None, "/")


def test_device_mappings_override_the_group_ones() -> None:
    [group] = parse_groups({"services": [GROUP]}, None, "/")
    device = parse_device(
        {
            "device_id": "d",
            "attributes": [{"object_id": "t", "name": "airTemperature", "type": "Number"}],
        },
        group,
        None,
        "/",
    )
    assert effective_mappings(device, group)["t"]["name"] == "airTemperature"


def test_patches_cannot_change_identities() -> None:
    [group] = parse_groups({"services": [GROUP]}, None, "/")
    with pytest.raises(BadRequestData):
        patch_group(group, {"apikey": "other"})
    device = parse_device({"device_id": "d"}, group, None, "/")
    with pytest.raises(BadRequestData):
        patch_device(device, {"device_id": "e"}, group)
    assert patch_device(device, {"entity_type": "Other"}, group)["entity_type"] == "Other"
