"""Entity representations over HTTP (ETSI GS CIM 009 v1.8.1, 4.5 and 6.3).

Normalized, concise and simplified (keyValues) forms chosen with ``options=`` or ``format=``;
projection with ``attrs``/``pick``/``omit``; languages with ``lang``; GeoJSON with
``Accept: application/geo+json``; JSON-LD @context in the body or in a ``Link`` header.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

# --- helpers ---------------------------------------------------------------------------------

BASE = "/ngsi-ld/v1"
ENTITIES = f"{BASE}/entities"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"

AQ_ID = "urn:ngsi-ld:AirQualityObserved:hue-imperial-city"
AQ_OTHER_ID = "urn:ngsi-ld:AirQualityObserved:hue-dong-ba-market"
SENSOR_ID = "urn:ngsi-ld:Device:hue-aq-sensor-01"
CITADEL = {"type": "Point", "coordinates": [107.5786, 16.4698]}
DONG_BA = {"type": "Point", "coordinates": [107.5880, 16.4740]}
CITADEL_WALLS = {
    "type": "Polygon",
    "coordinates": [
        [
            [107.5705, 16.4625],
            [107.5870, 16.4625],
            [107.5870, 16.4775],
            [107.5705, 16.4775],
            [107.5705, 16.4625],
        ]
    ],
}
LANGUAGE_MAP = {"vi": "Kinh thành Huế", "en": "Huế Imperial City"}
READING = {"aqi": 104, "category": "moderate"}
RAW = {"sensor": {"model": "PMS5003", "firmware": "2.1"}}


def air_quality(entity_id: str = AQ_ID, **attrs: Any) -> dict[str, Any]:
    """A normalized AirQualityObserved entity at the Huế Imperial City with every attribute kind."""
    entity: dict[str, Any] = {
        "id": entity_id,
        "type": "AirQualityObserved",
        "pm25": {
            "type": "Property",
            "value": 37.2,
            "unitCode": "GQ",
            "measuredBy": {"type": "Relationship", "object": SENSOR_ID},
        },
        "stationName": {"type": "Property", "value": "Đại Nội"},
        "reading": {"type": "Property", "value": READING},
        "location": {"type": "GeoProperty", "value": CITADEL},
        "campus": {"type": "GeoProperty", "value": CITADEL_WALLS},
        "refDevice": {"type": "Relationship", "object": SENSOR_ID},
        "name": {"type": "LanguageProperty", "languageMap": LANGUAGE_MAP},
        "airQualityLevel": {"type": "VocabProperty", "vocab": "moderate"},
        "rawPayload": {"type": "JsonProperty", "json": RAW},
        "hourlyPm25": {"type": "ListProperty", "valueList": [31.0, 35.5, 37.2]},
    }
    entity.update(attrs)
    return entity


#: the concise form of :func:`air_quality` (clause 4.5.3)
CONCISE = {
    "id": AQ_ID,
    "type": "AirQualityObserved",
    "pm25": {"value": 37.2, "unitCode": "GQ", "measuredBy": {"object": SENSOR_ID}},
    "stationName": "Đại Nội",
    "reading": {"value": READING},
    "location": CITADEL,
    "campus": CITADEL_WALLS,
    "refDevice": {"object": SENSOR_ID},
    "name": {"languageMap": LANGUAGE_MAP},
    "airQualityLevel": {"vocab": "moderate"},
    "rawPayload": {"json": RAW},
    "hourlyPm25": {"valueList": [31.0, 35.5, 37.2]},
}

#: the simplified (keyValues) form of :func:`air_quality` (clause 4.5.4)
SIMPLIFIED = {
    "id": AQ_ID,
    "type": "AirQualityObserved",
    "pm25": 37.2,
    "stationName": "Đại Nội",
    "reading": READING,
    "location": CITADEL,
    "campus": CITADEL_WALLS,
    "refDevice": SENSOR_ID,
    "name": {"languageMap": LANGUAGE_MAP},
    "airQualityLevel": {"vocab": "moderate"},
    "rawPayload": {"json": RAW},
    "hourlyPm25": [31.0, 35.5, 37.2],
}


#: attribute kinds whose simplified form wraps the value in a one-member object (4.5.4)
WRAPPED_IN_KEY_VALUES = ("airQualityLevel", "rawPayload")


def without(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in names}


def create(client: TestClient, entity: dict[str, Any]) -> None:
    response = client.post(ENTITIES, json=entity)
    assert response.status_code == 201, response.text


@pytest.fixture
def hue(client: TestClient) -> TestClient:
    """A client whose store holds the Imperial City station."""
    create(client, air_quality())
    return client


def get(
    client: TestClient, path: str = f"{ENTITIES}/{AQ_ID}", accept: str | None = None, **params: str
) -> Any:
    headers = {"Accept": accept} if accept else {}
    response = client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response


def context_links(response: Any) -> list[str]:
    """The Link header values whose rel is the JSON-LD context relation."""
    header = response.headers.get("link", "")
    return [part for part in header.split(",") if f'rel="{CONTEXT_REL}"' in part]


# --- normalized / concise / simplified (4.5.2-4.5.4, 6.3.7) ----------------------------------


def test_default_representation_is_normalized(hue: TestClient) -> None:
    assert get(hue).json() == air_quality()


def test_options_normalized_answers_the_normalized_form(hue: TestClient) -> None:
    assert get(hue, options="normalized").json() == air_quality()


def test_format_normalized_answers_the_normalized_form(hue: TestClient) -> None:
    assert get(hue, format="normalized").json() == air_quality()


def test_options_concise_answers_the_concise_form(hue: TestClient) -> None:
    assert get(hue, options="concise").json() == CONCISE


def test_format_concise_answers_the_concise_form(hue: TestClient) -> None:
    assert get(hue, format="concise").json() == CONCISE


def test_concise_form_posted_back_is_stored_like_the_original(hue: TestClient) -> None:
    concise = get(hue, options="concise").json()
    concise["id"] = AQ_OTHER_ID

    create(hue, concise)

    assert get(hue, f"{ENTITIES}/{AQ_OTHER_ID}").json() == air_quality(AQ_OTHER_ID)


def test_options_key_values_answers_the_simplified_form(hue: TestClient) -> None:
    body = get(hue, options="keyValues").json()

    assert without(body, *WRAPPED_IN_KEY_VALUES) == without(SIMPLIFIED, *WRAPPED_IN_KEY_VALUES)


def test_format_key_values_answers_the_simplified_form(hue: TestClient) -> None:
    body = get(hue, format="keyValues").json()

    assert without(body, *WRAPPED_IN_KEY_VALUES) == without(SIMPLIFIED, *WRAPPED_IN_KEY_VALUES)


def test_key_values_gives_a_vocab_property_as_a_vocab_object(hue: TestClient) -> None:
    assert get(hue, options="keyValues").json()["airQualityLevel"] == {"vocab": "moderate"}


def test_key_values_gives_a_json_property_as_a_json_object(hue: TestClient) -> None:
    assert get(hue, options="keyValues").json()["rawPayload"] == {"json": RAW}


def test_key_values_gives_a_language_property_as_a_language_map_object(hue: TestClient) -> None:
    assert get(hue, options="keyValues").json()["name"] == {"languageMap": LANGUAGE_MAP}


def test_key_values_applies_to_every_entity_of_a_query(hue: TestClient) -> None:
    create(hue, air_quality(AQ_OTHER_ID))

    found = get(
        hue, ENTITIES, type="AirQualityObserved", options="keyValues", attrs="pm25,refDevice"
    ).json()

    assert sorted(found, key=lambda e: e["id"]) == [
        {"id": AQ_OTHER_ID, "type": "AirQualityObserved", "pm25": 37.2, "refDevice": SENSOR_ID},
        {"id": AQ_ID, "type": "AirQualityObserved", "pm25": 37.2, "refDevice": SENSOR_ID},
    ]


def test_concise_applies_to_every_entity_of_a_query(hue: TestClient) -> None:
    found = get(hue, ENTITIES, type="AirQualityObserved", format="concise").json()

    assert found == [CONCISE]


def test_options_sys_attrs_combines_with_concise(hue: TestClient) -> None:
    body = get(hue, options="concise,sysAttrs").json()

    assert "createdAt" in body and "modifiedAt" in body
    assert body["pm25"]["value"] == 37.2
    assert "createdAt" in body["pm25"]
    assert "type" not in body["pm25"]


def test_unknown_format_answers_400(hue: TestClient) -> None:
    response = hue.get(f"{ENTITIES}/{AQ_ID}", params={"format": "tabular"})

    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"


# --- languages (4.15, lang) ------------------------------------------------------------------


def test_lang_turns_a_language_property_into_a_property_in_that_language(hue: TestClient) -> None:
    name = get(hue, lang="vi").json()["name"]

    assert name == {"type": "Property", "value": "Kinh thành Huế", "lang": "vi"}


def test_lang_picks_the_requested_language(hue: TestClient) -> None:
    name = get(hue, lang="en").json()["name"]

    assert name == {"type": "Property", "value": "Huế Imperial City", "lang": "en"}


def test_lang_in_concise_form_keeps_value_and_lang(hue: TestClient) -> None:
    name = get(hue, lang="vi", options="concise").json()["name"]

    assert name == {"value": "Kinh thành Huế", "lang": "vi"}


def test_lang_in_key_values_form_gives_the_string(hue: TestClient) -> None:
    assert get(hue, lang="vi", options="keyValues").json()["name"] == "Kinh thành Huế"


def test_lang_leaves_other_attribute_kinds_alone(hue: TestClient) -> None:
    body = get(hue, lang="vi").json()

    assert {k: v for k, v in body.items() if k != "name"} == {
        k: v for k, v in air_quality().items() if k != "name"
    }


# --- projection: attrs, pick, omit (4.21, 6.3.x) ---------------------------------------------


def test_attrs_returns_only_the_listed_attributes(hue: TestClient) -> None:
    body = get(hue, attrs="pm25,location").json()

    assert body == {
        "id": AQ_ID,
        "type": "AirQualityObserved",
        "pm25": air_quality()["pm25"],
        "location": air_quality()["location"],
    }


def test_attrs_projects_every_entity_of_a_query(hue: TestClient) -> None:
    found = get(hue, ENTITIES, type="AirQualityObserved", attrs="pm25").json()

    assert found == [{"id": AQ_ID, "type": "AirQualityObserved", "pm25": air_quality()["pm25"]}]


def test_attrs_combines_with_key_values(hue: TestClient) -> None:
    body = get(hue, attrs="pm25", options="keyValues").json()

    assert body == {"id": AQ_ID, "type": "AirQualityObserved", "pm25": 37.2}


def test_pick_id_and_type_answers_only_id_and_type(hue: TestClient) -> None:
    assert get(hue, pick="id,type").json() == {"id": AQ_ID, "type": "AirQualityObserved"}


def test_pick_keeps_only_the_listed_members(hue: TestClient) -> None:
    body = get(hue, pick="id,pm25,stationName").json()

    assert body == {
        "id": AQ_ID,
        "pm25": air_quality()["pm25"],
        "stationName": air_quality()["stationName"],
    }


def test_pick_applies_to_every_entity_of_a_query(hue: TestClient) -> None:
    create(hue, air_quality(AQ_OTHER_ID))

    found = get(hue, ENTITIES, type="AirQualityObserved", pick="id").json()

    assert sorted(found, key=lambda e: e["id"]) == [{"id": AQ_OTHER_ID}, {"id": AQ_ID}]


def test_omit_drops_the_listed_attributes(hue: TestClient) -> None:
    body = get(hue, omit="campus,rawPayload").json()

    assert body == without(air_quality(), "campus", "rawPayload")


def test_omit_can_drop_id_and_type(hue: TestClient) -> None:
    body = get(hue, omit="id,type").json()

    assert body == without(air_quality(), "id", "type")


def test_pick_and_omit_together_answer_400(hue: TestClient) -> None:
    response = hue.get(f"{ENTITIES}/{AQ_ID}", params={"pick": "id", "omit": "pm25"})

    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"


# --- GeoJSON (4.5.16, 6.3.15: Accept: application/geo+json) ----------------------------------


def test_geo_json_answers_a_feature_for_one_entity(hue: TestClient) -> None:
    response = get(hue, accept="application/geo+json")

    assert response.headers["content-type"].startswith("application/geo+json")
    feature = response.json()
    assert feature["type"] == "Feature"
    assert feature["id"] == AQ_ID
    assert feature["geometry"] == CITADEL


def test_geo_json_feature_properties_hold_type_and_attributes_but_not_id(hue: TestClient) -> None:
    properties = get(hue, accept="application/geo+json").json()["properties"]

    expected = air_quality()
    del expected["id"]
    assert properties == expected


def test_geo_json_geometry_property_selects_the_geometry(hue: TestClient) -> None:
    feature = get(hue, accept="application/geo+json", geometryProperty="campus").json()

    assert feature["geometry"] == CITADEL_WALLS


def test_geo_json_geometry_is_null_without_the_geo_property(client: TestClient) -> None:
    entity = air_quality()
    del entity["location"]
    create(client, entity)

    feature = get(client, accept="application/geo+json").json()

    assert feature["type"] == "Feature"
    assert feature["geometry"] is None


def test_geo_json_answers_a_feature_collection_for_a_query(hue: TestClient) -> None:
    create(hue, air_quality(AQ_OTHER_ID, location={"type": "GeoProperty", "value": DONG_BA}))

    response = get(hue, ENTITIES, accept="application/geo+json", type="AirQualityObserved")

    assert response.headers["content-type"].startswith("application/geo+json")
    collection = response.json()
    assert collection["type"] == "FeatureCollection"
    geometries = {f["id"]: f["geometry"] for f in collection["features"]}
    assert geometries == {AQ_ID: CITADEL, AQ_OTHER_ID: DONG_BA}
    assert all(f["type"] == "Feature" for f in collection["features"])


def test_geo_json_feature_collection_honours_geometry_property(hue: TestClient) -> None:
    collection = get(
        hue,
        ENTITIES,
        accept="application/geo+json",
        type="AirQualityObserved",
        geometryProperty="campus",
    ).json()

    assert [f["geometry"] for f in collection["features"]] == [CITADEL_WALLS]


def test_geo_json_combines_with_key_values(hue: TestClient) -> None:
    feature = get(hue, accept="application/geo+json", options="keyValues").json()

    assert feature["geometry"] == CITADEL
    assert feature["properties"]["pm25"] == 37.2
    assert feature["properties"]["type"] == "AirQualityObserved"


# --- JSON-LD @context (6.3.5, 6.3.6) ---------------------------------------------------------


def test_json_ld_answer_puts_the_context_in_the_body(hue: TestClient) -> None:
    response = get(hue, accept="application/ld+json")

    assert response.headers["content-type"].startswith("application/ld+json")
    body = response.json()
    assert "@context" in body
    assert {k: v for k, v in body.items() if k != "@context"} == air_quality()


def test_json_ld_query_answer_puts_the_context_in_every_entity(hue: TestClient) -> None:
    found = get(hue, ENTITIES, accept="application/ld+json", type="AirQualityObserved").json()

    assert len(found) == 1
    assert "@context" in found[0]


def test_json_answer_carries_the_context_in_a_link_header(hue: TestClient) -> None:
    response = get(hue, accept="application/json")

    assert response.headers["content-type"].startswith("application/json")
    [link] = context_links(response)
    assert link.strip().startswith("<http")
    assert "@context" not in response.json()


def test_answer_without_accept_is_json_with_a_link_header(hue: TestClient) -> None:
    response = hue.get(f"{ENTITIES}/{AQ_ID}", headers={"Accept": ""})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert len(context_links(response)) == 1


def test_json_query_answer_carries_the_context_in_a_link_header(hue: TestClient) -> None:
    response = get(hue, ENTITIES, accept="application/json", type="AirQualityObserved")

    assert len(context_links(response)) == 1
    assert all("@context" not in entity for entity in response.json())


def test_wildcard_accept_answers_json(hue: TestClient) -> None:
    response = get(hue, accept="*/*")

    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "text/csv"])
def test_unsupported_accept_answers_406(hue: TestClient, accept: str) -> None:
    response = hue.get(f"{ENTITIES}/{AQ_ID}", headers={"Accept": accept})

    assert response.status_code == 406


def test_unsupported_accept_on_a_query_answers_406(hue: TestClient) -> None:
    response = hue.get(
        ENTITIES, params={"type": "AirQualityObserved"}, headers={"Accept": "text/html"}
    )

    assert response.status_code == 406


def test_attribute_names_are_compacted_with_the_core_context_only(client: TestClient) -> None:
    entity = {
        "@context": [
            {"pm25": "https://smartdatamodels.org/dataModel.Environment/pm25"},
            CORE_CONTEXT,
        ],
        "id": AQ_ID,
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 37.2},
    }
    created = client.post(
        ENTITIES,
        content=json.dumps(entity).encode(),
        headers={"Content-Type": "application/ld+json"},
    )
    assert created.status_code == 201, created.text

    body = get(client).json()

    assert body["https://smartdatamodels.org/dataModel.Environment/pm25"]["value"] == 37.2
    assert "pm25" not in body


def test_json_ld_body_without_context_answers_400(client: TestClient) -> None:
    response = client.post(
        ENTITIES,
        content=json.dumps(air_quality()).encode(),
        headers={"Content-Type": "application/ld+json"},
    )

    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"
    assert client.get(f"{ENTITIES}/{AQ_ID}").status_code == 404


def test_json_body_with_context_member_answers_400(client: TestClient) -> None:
    response = client.post(ENTITIES, json={**air_quality(), "@context": CORE_CONTEXT})

    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"
    assert client.get(f"{ENTITIES}/{AQ_ID}").status_code == 404


def test_default_answer_from_stored_view_equals_the_rendered_one(client: TestClient) -> None:
    body = {
        "id": "urn:ngsi-ld:AirQualityObserved:hue-view",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 38.5, "unitCode": "GQ"},
        "name": {"type": "LanguageProperty", "languageMap": {"vi": "Đại Nội", "en": "Citadel"}},
        "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:1"},
    }
    assert client.post("/ngsi-ld/v1/entities", json=body).status_code == 201
    url = "/ngsi-ld/v1/entities/" + body["id"]
    fast = client.get(url)  # application/json, core context, normalized: the stored view
    slow = client.get(url, headers={"Accept": "application/ld+json"}).json()
    slow.pop("@context")
    assert fast.json() == slow
    assert "json-ld#context" in fast.headers["Link"]
    listed = client.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved"})
    assert listed.json() == [slow]
