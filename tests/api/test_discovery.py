"""Discovery: /types and /attributes (ETSI GS CIM 009 v1.8.1 clauses 5.7.5-5.7.10, 6.25-6.28).

The data types are EntityTypeList (5.2.24), EntityType (5.2.25), EntityTypeInfo (5.2.26),
AttributeList (5.2.27) and Attribute (5.2.28).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

API = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


HUE = [
    {
        "id": "urn:ngsi-ld:HeritageSite:imperial-city",
        "type": "HeritageSite",
        "name": prop("Imperial City"),
        "yearBuilt": prop(1804),
        "location": point(107.5786, 16.4698),
    },
    {
        "id": "urn:ngsi-ld:HeritageSite:thien-mu",
        "type": "HeritageSite",
        "name": prop("Thiên Mụ Pagoda"),
        "location": point(107.5446, 16.4533),
    },
    {
        "id": "urn:ngsi-ld:Bridge:truong-tien",
        "type": ["Bridge", "HeritageSite"],
        "name": prop("Trường Tiền Bridge"),
        "spanLength": prop(402, unitCode="MTR"),
        "location": point(107.5887, 16.4684),
    },
    {
        "id": "urn:ngsi-ld:AirQualityObserved:hue-citadel",
        "type": "AirQualityObserved",
        "pm25": prop(35.2, unitCode="GQ"),
        "refPointOfInterest": {
            "type": "Relationship",
            "object": "urn:ngsi-ld:HeritageSite:imperial-city",
        },
        "location": point(107.5790, 16.4700),
    },
    {
        "id": "urn:ngsi-ld:Device:hue-gauge-sensor",
        "type": "Device",
        # the same attribute name as a Relationship here and a Property elsewhere
        "name": {"type": "Relationship", "object": "urn:ngsi-ld:Label:gauge"},
    },
]


@pytest.fixture
def hue(client: TestClient) -> TestClient:
    for entity in HUE:
        response = client.post(f"{API}/entities", json=entity)
        assert response.status_code == 201, response.text
    return client


def ok(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(f"{API}{path}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def not_found(client: TestClient, path: str) -> None:
    response = client.get(f"{API}{path}")
    assert response.status_code == 404, response.text
    assert response.json()["type"] == ERRORS + "ResourceNotFound"


# --- /types


def test_types_answers_an_entity_type_list(hue: TestClient) -> None:
    body = ok(hue, "/types")
    assert body["type"] == "EntityTypeList"
    assert isinstance(body["id"], str)
    assert ":" in body["id"]  # a URI
    assert sorted(body["typeList"]) == [
        "AirQualityObserved",
        "Bridge",
        "Device",
        "HeritageSite",
    ]


def test_types_lists_each_type_once(hue: TestClient) -> None:
    type_list = ok(hue, "/types")["typeList"]
    assert len(type_list) == len(set(type_list))


def test_types_of_an_empty_broker_is_an_empty_list(client: TestClient) -> None:
    body = ok(client, "/types")
    assert body["type"] == "EntityTypeList"
    assert body["typeList"] == []


def test_types_forgets_a_type_whose_last_entity_was_deleted(hue: TestClient) -> None:
    response = hue.delete(f"{API}/entities/urn:ngsi-ld:Device:hue-gauge-sensor")
    assert response.status_code == 204
    assert "Device" not in ok(hue, "/types")["typeList"]


def test_types_details_answers_entity_types(hue: TestClient) -> None:
    body = ok(hue, "/types", details="true")
    assert isinstance(body, list)
    by_name = {t["typeName"]: t for t in body}
    assert set(by_name) == {"AirQualityObserved", "Bridge", "Device", "HeritageSite"}
    for entry in body:
        assert entry["type"] == "EntityType"
        assert entry["id"] == DEFAULT + entry["typeName"]


def test_types_details_lists_attribute_names_of_the_type(hue: TestClient) -> None:
    by_name = {t["typeName"]: t for t in ok(hue, "/types", details="true")}
    assert sorted(by_name["HeritageSite"]["attributeNames"]) == [
        "location",
        "name",
        "spanLength",
        "yearBuilt",
    ]
    assert sorted(by_name["AirQualityObserved"]["attributeNames"]) == [
        "location",
        "pm25",
        "refPointOfInterest",
    ]


def test_types_details_false_is_the_plain_list(hue: TestClient) -> None:
    assert ok(hue, "/types", details="false")["type"] == "EntityTypeList"


def test_type_info_by_short_name(hue: TestClient) -> None:
    body = ok(hue, "/types/HeritageSite")
    assert body["type"] == "EntityTypeInfo"
    assert body["id"] == DEFAULT + "HeritageSite"
    assert body["typeName"] == "HeritageSite"


def test_type_info_entity_count_includes_multi_typed_entities(hue: TestClient) -> None:
    assert ok(hue, "/types/HeritageSite")["entityCount"] == 3
    assert ok(hue, "/types/Bridge")["entityCount"] == 1


def test_type_info_attribute_details(hue: TestClient) -> None:
    details = ok(hue, "/types/AirQualityObserved")["attributeDetails"]
    by_name = {a["attributeName"]: a for a in details}
    assert set(by_name) == {"pm25", "refPointOfInterest", "location"}
    for attribute in details:
        assert attribute["type"] == "Attribute"
    assert by_name["pm25"]["id"] == DEFAULT + "pm25"
    assert by_name["location"]["id"] == LOCATION
    assert by_name["pm25"]["attributeTypes"] == ["Property"]
    assert by_name["refPointOfInterest"]["attributeTypes"] == ["Relationship"]
    assert by_name["location"]["attributeTypes"] == ["GeoProperty"]


def test_type_info_by_url_encoded_full_iri(hue: TestClient) -> None:
    body = ok(hue, "/types/" + quote(DEFAULT + "Bridge", safe=""))
    assert body["typeName"] == "Bridge"
    assert body["entityCount"] == 1


def test_type_info_unknown_type_is_not_found(hue: TestClient) -> None:
    not_found(hue, "/types/Temple")


def test_type_info_on_empty_broker_is_not_found(client: TestClient) -> None:
    not_found(client, "/types/HeritageSite")


# --- /attributes


def test_attributes_answers_an_attribute_list(hue: TestClient) -> None:
    body = ok(hue, "/attributes")
    assert body["type"] == "AttributeList"
    assert ":" in body["id"]
    assert sorted(body["attributeList"]) == [
        "location",
        "name",
        "pm25",
        "refPointOfInterest",
        "spanLength",
        "yearBuilt",
    ]


def test_attributes_of_an_empty_broker_is_an_empty_list(client: TestClient) -> None:
    assert ok(client, "/attributes")["attributeList"] == []


def test_attributes_details_answers_attributes(hue: TestClient) -> None:
    body = ok(hue, "/attributes", details="true")
    assert isinstance(body, list)
    by_name = {a["attributeName"]: a for a in body}
    assert set(by_name) == {
        "location",
        "name",
        "pm25",
        "refPointOfInterest",
        "spanLength",
        "yearBuilt",
    }
    for attribute in body:
        assert attribute["type"] == "Attribute"
    assert by_name["yearBuilt"]["id"] == DEFAULT + "yearBuilt"
    assert sorted(by_name["name"]["typeNames"]) == ["Bridge", "Device", "HeritageSite"]


def test_attribute_by_name(hue: TestClient) -> None:
    body = ok(hue, "/attributes/pm25")
    assert body["type"] == "Attribute"
    assert body["id"] == DEFAULT + "pm25"
    assert body["attributeName"] == "pm25"
    assert body["attributeTypes"] == ["Property"]
    assert body["typeNames"] == ["AirQualityObserved"]


def test_attribute_used_as_property_and_relationship_lists_both_kinds(hue: TestClient) -> None:
    body = ok(hue, "/attributes/name")
    assert sorted(body["attributeTypes"]) == ["Property", "Relationship"]


def test_attribute_count_is_the_number_of_attribute_instances(hue: TestClient) -> None:
    # 5.2.28: "Number of attribute instances with this attribute name"
    assert ok(hue, "/attributes/location")["attributeCount"] == 4
    assert ok(hue, "/attributes/spanLength")["attributeCount"] == 1
    assert ok(hue, "/attributes/name")["attributeCount"] == 4


def test_attribute_type_names_of_a_multi_typed_entity(hue: TestClient) -> None:
    assert sorted(ok(hue, "/attributes/spanLength")["typeNames"]) == ["Bridge", "HeritageSite"]


def test_attribute_unknown_is_not_found(hue: TestClient) -> None:
    not_found(hue, "/attributes/ticketPrice")


def test_attribute_on_empty_broker_is_not_found(client: TestClient) -> None:
    not_found(client, "/attributes/name")
