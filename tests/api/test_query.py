"""GET /ngsi-ld/v1/entities (ETSI GS CIM 009 v1.8.1 clauses 5.7.2 and 6.4.3.2).

Every test drives the real app over HTTP and checks what the specification requires:
entity selection by id, idPattern, type expressions (4.17), attrs, the query language
(4.9), scopes (4.19), geo-queries (4.10), pagination (5.5.9, 6.3.10) and counting
(6.3.13). Data: Huế heritage sites, air-quality stations and a river gauge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import pytest
from starlette.testclient import TestClient

API = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"

# [longitude, latitude]
IMPERIAL_CITY = [107.5786, 16.4698]
TRUONG_TIEN = [107.5887, 16.4684]  # about 1.09 km east of the Imperial City
THIEN_MU = [107.5446, 16.4533]  # about 4.06 km west
DONG_BA = [107.5882, 16.4727]  # about 1.07 km north-east

IMPERIAL = "urn:ngsi-ld:HeritageSite:imperial-city"
PAGODA = "urn:ngsi-ld:HeritageSite:thien-mu"
BRIDGE = "urn:ngsi-ld:Bridge:truong-tien"
MARKET = "urn:ngsi-ld:Market:dong-ba"
ZONE = "urn:ngsi-ld:CulturalZone:citadel"
AQ_CITADEL = "urn:ngsi-ld:AirQualityObserved:hue-citadel"
AQ_DONGBA = "urn:ngsi-ld:AirQualityObserved:hue-dongba"
AQ_KIMLONG = "urn:ngsi-ld:AirQualityObserved:hue-kimlong"
GAUGE = "urn:ngsi-ld:WaterLevelObserved:huong-truong-tien"

# The walls of the Citadel, roughly: holds the Imperial City, not the bridge or the market.
CITADEL_RING = [
    [107.565, 16.460],
    [107.585, 16.460],
    [107.585, 16.480],
    [107.565, 16.480],
    [107.565, 16.460],
]
# A small square around Thiên Mụ Pagoda.
PAGODA_RING = [
    [107.540, 16.450],
    [107.550, 16.450],
    [107.550, 16.457],
    [107.540, 16.457],
    [107.540, 16.450],
]
# The Hương River along the Trường Tiền Bridge.
RIVER_SECTION = [[107.5800, 16.4710], [107.5887, 16.4684], [107.6000, 16.4650]]


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def point(coordinates: list[float]) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": coordinates}}


def rel(target: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": target}


HUE: list[dict[str, Any]] = [
    {
        "id": IMPERIAL,
        "type": "HeritageSite",
        "name": prop("Imperial City"),
        "yearBuilt": prop(1804),
        "unesco": prop(True),
        "inscribedAt": prop({"@type": "DateTime", "@value": "1993-12-11T00:00:00Z"}),
        "address": prop(
            {"streetAddress": "23 Tháng 8", "addressLocality": "Huế", "district": "Phú Xuân"}
        ),
        "categories": prop(["palace", "citadel", "tomb-complex"]),
        "location": point(IMPERIAL_CITY),
        "scope": "/Hue/PhuXuan/Citadel",
    },
    {
        "id": PAGODA,
        "type": "HeritageSite",
        "name": prop("Thiên Mụ Pagoda"),
        "yearBuilt": prop(1601),
        "unesco": prop(False),
        "address": prop(
            {
                "streetAddress": "Nguyễn Phúc Nguyên",
                "addressLocality": "Huế",
                "district": "Kim Long",
            }
        ),
        "location": point(THIEN_MU),
        "scope": "/Hue/KimLong",
    },
    {
        "id": BRIDGE,
        "type": ["Bridge", "HeritageSite"],
        "name": prop("Trường Tiền Bridge"),
        "yearBuilt": prop(1899),
        "unesco": prop(False),
        "location": point(TRUONG_TIEN),
        "scope": "/Hue/PhuXuan",
    },
    {
        "id": MARKET,
        "type": "Market",
        "name": prop("Đông Ba Market"),
        "yearBuilt": prop(1887),
        "location": point(DONG_BA),
        "scope": "/Hue/PhuXuan",
    },
    {
        "id": ZONE,
        "type": "CulturalZone",
        "name": prop("Huế Citadel"),
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Polygon", "coordinates": [CITADEL_RING]},
        },
    },
    {
        "id": AQ_CITADEL,
        "type": "AirQualityObserved",
        "pm25": prop(
            35.2,
            unitCode="GQ",
            observedAt="2024-05-01T07:00:00Z",
            sensorModel=prop("PMS5003"),
        ),
        "refPointOfInterest": rel(IMPERIAL),
        "location": point([107.5790, 16.4700]),
    },
    {
        "id": AQ_DONGBA,
        "type": "AirQualityObserved",
        "pm25": prop(55.0, unitCode="GQ", observedAt="2024-05-01T08:00:00Z"),
        "no2": [
            prop(48.0, datasetId="urn:ngsi-ld:Dataset:sensor-a"),
            prop(7.0, datasetId="urn:ngsi-ld:Dataset:sensor-b"),
        ],
        "refPointOfInterest": rel(MARKET),
        "location": point([107.5880, 16.4725]),
    },
    {
        "id": AQ_KIMLONG,
        "type": "AirQualityObserved",
        "pm25": prop(
            8.5,
            unitCode="GQ",
            observedAt="2024-04-30T23:00:00Z",
            sensorModel=prop("SDS011"),
        ),
        "refPointOfInterest": rel(PAGODA),
        "location": point([107.5450, 16.4535]),
    },
    {
        "id": GAUGE,
        "type": "WaterLevelObserved",
        "waterLevel": prop(1.35, unitCode="MTR", observedAt="2024-05-01T08:00:00Z"),
        "location": point([107.5900, 16.4660]),
        "riverSection": {
            "type": "GeoProperty",
            "value": {"type": "LineString", "coordinates": RIVER_SECTION},
        },
    },
]

AIR = {AQ_CITADEL, AQ_DONGBA, AQ_KIMLONG}


@pytest.fixture
def hue(client: TestClient) -> TestClient:
    """The client, over a store holding the Huế data set."""
    for entity in HUE:
        response = client.post(f"{API}/entities", json=entity)
        assert response.status_code == 201, response.text
    return client


def get(client: TestClient, **params: Any) -> Any:
    response = client.get(f"{API}/entities", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids(client: TestClient, **params: Any) -> list[str]:
    """Ids of the matching entities, in the order of the answer."""
    return [entity["id"] for entity in get(client, **params)]


def found(client: TestClient, **params: Any) -> set[str]:
    result = ids(client, **params)
    assert len(result) == len(set(result)), f"duplicates in {result}"
    return set(result)


def assert_bad_request(client: TestClient, **params: Any) -> None:
    response = client.get(f"{API}/entities", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == ERRORS + "BadRequestData"


def coords(value: Iterable[Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def polygon(ring: list[list[float]]) -> dict[str, str]:
    return {"geometry": "Polygon", "coordinates": coords([ring])}


# --- id, idPattern, type


def test_id_list_returns_exactly_the_listed_entities(hue: TestClient) -> None:
    assert found(hue, id=f"{IMPERIAL},{MARKET}") == {IMPERIAL, MARKET}


def test_id_list_skips_ids_that_do_not_exist(hue: TestClient) -> None:
    missing = "urn:ngsi-ld:HeritageSite:hon-chen"
    assert found(hue, id=f"{PAGODA},{missing}") == {PAGODA}


def test_id_list_combines_with_type_as_and(hue: TestClient) -> None:
    assert found(hue, id=f"{IMPERIAL},{MARKET}", type="Market") == {MARKET}


def test_id_list_with_an_invalid_uri_is_bad_request(hue: TestClient) -> None:
    assert_bad_request(hue, id=f"{IMPERIAL},not a uri")


def test_id_pattern_selects_ids_matching_the_regex(hue: TestClient) -> None:
    assert found(hue, idPattern=r"^urn:ngsi-ld:AirQualityObserved:hue-(citadel|kimlong)$") == {
        AQ_CITADEL,
        AQ_KIMLONG,
    }


def test_id_pattern_invalid_regex_is_bad_request(hue: TestClient) -> None:
    assert_bad_request(hue, idPattern="urn:ngsi-ld:(unclosed")


def test_type_single_name(hue: TestClient) -> None:
    assert found(hue, type="Market") == {MARKET}


def test_type_matches_entities_having_it_among_several_types(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite") == {IMPERIAL, PAGODA, BRIDGE}


def test_type_comma_list_is_or(hue: TestClient) -> None:
    assert found(hue, type="Market,WaterLevelObserved") == {MARKET, GAUGE}


def test_type_pipe_is_or(hue: TestClient) -> None:
    assert found(hue, type="Market|Bridge") == {MARKET, BRIDGE}


def test_type_semicolon_in_parentheses_is_and(hue: TestClient) -> None:
    assert found(hue, type="(HeritageSite;Bridge)") == {BRIDGE}


def test_type_and_of_types_no_entity_has_together_matches_nothing(hue: TestClient) -> None:
    assert found(hue, type="(HeritageSite;Market)") == set()


def test_type_given_as_full_iri(hue: TestClient) -> None:
    iri = "https://uri.etsi.org/ngsi-ld/default-context/Market"
    assert found(hue, type=iri) == {MARKET}


def test_type_unknown_matches_nothing(hue: TestClient) -> None:
    assert found(hue, type="Temple") == set()


def test_type_expression_syntax_error_is_bad_request(hue: TestClient) -> None:
    assert_bad_request(hue, type="(HeritageSite;Bridge")


# --- attrs


def test_attrs_returns_only_entities_with_at_least_one_of_them(hue: TestClient) -> None:
    assert found(hue, attrs="unesco,waterLevel") == {IMPERIAL, PAGODA, BRIDGE, GAUGE}


def test_attrs_naming_no_existing_attribute_matches_nothing(hue: TestClient) -> None:
    assert found(hue, attrs="ticketPrice") == set()


def test_attrs_projects_entities_onto_the_listed_attributes(hue: TestClient) -> None:
    entities = get(hue, type="HeritageSite,Market", attrs="yearBuilt,unesco")
    assert {e["id"] for e in entities} == {IMPERIAL, PAGODA, BRIDGE, MARKET}
    for entity in entities:
        # id, type and scope are core members, not attributes (clause 4.18)
        assert set(entity) - {"id", "type", "scope"} <= {"yearBuilt", "unesco"}
        assert "name" not in entity
        assert "location" not in entity
    market = next(e for e in entities if e["id"] == MARKET)
    assert market["yearBuilt"]["value"] == 1887
    assert "unesco" not in market


# --- q: comparisons


def test_q_equal_number(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite,Market", q="yearBuilt==1899") == {BRIDGE}


def test_q_equal_quoted_string(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q='name=="Imperial City"') == {IMPERIAL}


def test_q_equal_unicode_string(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q='name=="Thiên Mụ Pagoda"') == {PAGODA}


def test_q_not_equal(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q="yearBuilt!=1804") == {PAGODA, BRIDGE}


def test_q_greater_than(hue: TestClient) -> None:
    assert found(hue, type="AirQualityObserved", q="pm25>35.2") == {AQ_DONGBA}


def test_q_greater_or_equal(hue: TestClient) -> None:
    assert found(hue, type="AirQualityObserved", q="pm25>=35.2") == {AQ_CITADEL, AQ_DONGBA}


def test_q_less_than(hue: TestClient) -> None:
    assert found(hue, type="AirQualityObserved", q="pm25<35.2") == {AQ_KIMLONG}


def test_q_less_or_equal(hue: TestClient) -> None:
    assert found(hue, type="AirQualityObserved", q="pm25<=35.2") == {AQ_KIMLONG, AQ_CITADEL}


def test_q_ordering_on_integers_against_decimal_literal(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q="yearBuilt<1804.5") == {IMPERIAL, PAGODA}


def test_q_values_of_different_data_types_are_unequal(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q='yearBuilt=="1804"') == set()


def test_q_attribute_alone_selects_entities_having_it(hue: TestClient) -> None:
    assert found(hue, q="waterLevel") == {GAUGE}


def test_q_comparison_on_missing_attribute_does_not_match(hue: TestClient) -> None:
    assert found(hue, type="Market,HeritageSite", q="unesco==false") == {PAGODA, BRIDGE}


# --- q: logical operators


def test_q_semicolon_is_and(hue: TestClient) -> None:
    assert found(hue, type="AirQualityObserved", q="pm25>10;pm25<40") == {AQ_CITADEL}


def test_q_pipe_is_or(hue: TestClient) -> None:
    assert found(hue, type="AirQualityObserved", q="pm25<10|pm25>50") == {AQ_KIMLONG, AQ_DONGBA}


def test_q_parentheses_group_an_or_inside_an_and(hue: TestClient) -> None:
    q = "(yearBuilt==1601|yearBuilt==1804);unesco==true"
    assert found(hue, type="HeritageSite", q=q) == {IMPERIAL}


def test_q_parentheses_group_an_and_inside_an_or(hue: TestClient) -> None:
    q = "yearBuilt==1601|(yearBuilt==1804;unesco==true)"
    assert found(hue, type="HeritageSite", q=q) == {PAGODA, IMPERIAL}


def test_q_and_across_different_attributes(hue: TestClient) -> None:
    q = "yearBuilt>1800;unesco==false"
    assert found(hue, type="HeritageSite", q=q) == {BRIDGE}


# --- q: patterns, ranges, lists


def test_q_regex_match(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite,Market", q="name~=Bridge$") == {BRIDGE}


def test_q_regex_no_match_operator(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q="name!~=^Imperial") == {PAGODA, BRIDGE}


def test_q_range_is_inclusive(hue: TestClient) -> None:
    q = "yearBuilt==1804..1899"
    assert found(hue, type="HeritageSite,Market", q=q) == {IMPERIAL, BRIDGE, MARKET}


def test_q_range_with_not_equal_excludes_it(hue: TestClient) -> None:
    q = "yearBuilt!=1800..1900"
    assert found(hue, type="HeritageSite,Market", q=q) == {PAGODA}


def test_q_value_list_matches_any_of_the_values(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite,Market", q="yearBuilt==1601,1899") == {PAGODA, BRIDGE}


def test_q_value_list_of_strings(hue: TestClient) -> None:
    q = 'name=="Imperial City","Đông Ba Market"'
    assert found(hue, type="HeritageSite,Market", q=q) == {IMPERIAL, MARKET}


def test_q_value_list_in_parentheses(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite,Market", q="yearBuilt==(1601,1887)") == {PAGODA, MARKET}


def test_q_not_equal_value_list_matches_none_of_the_values(hue: TestClient) -> None:
    q = "yearBuilt!=1601,1899"
    assert found(hue, type="HeritageSite,Market", q=q) == {IMPERIAL, MARKET}


# --- q: paths


def test_q_sub_attribute_path(hue: TestClient) -> None:
    assert found(hue, type="AirQualityObserved", q='pm25.sensorModel=="PMS5003"') == {AQ_CITADEL}


def test_q_observed_at_path_with_datetime(hue: TestClient) -> None:
    q = "pm25.observedAt>=2024-05-01T00:00:00Z"
    assert found(hue, type="AirQualityObserved", q=q) == {AQ_CITADEL, AQ_DONGBA}


def test_q_observed_at_range_of_datetimes(hue: TestClient) -> None:
    q = "pm25.observedAt==2024-04-30T22:00:00Z..2024-05-01T07:30:00Z"
    assert found(hue, type="AirQualityObserved", q=q) == {AQ_KIMLONG, AQ_CITADEL}


def test_q_datetime_property_value(hue: TestClient) -> None:
    q = "inscribedAt<2000-01-01T00:00:00Z"
    assert found(hue, type="HeritageSite", q=q) == {IMPERIAL}


def test_q_compound_value_key(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q='address[district]=="Kim Long"') == {PAGODA}


def test_q_compound_value_key_shared_by_several(hue: TestClient) -> None:
    q = 'address[addressLocality]=="Huế"'
    assert found(hue, type="HeritageSite", q=q) == {IMPERIAL, PAGODA}


def test_q_relationship_object_unquoted_uri(hue: TestClient) -> None:
    q = f"refPointOfInterest=={IMPERIAL}"
    assert found(hue, type="AirQualityObserved", q=q) == {AQ_CITADEL}


def test_q_relationship_object_quoted_uri(hue: TestClient) -> None:
    q = f'refPointOfInterest=="{MARKET}"'
    assert found(hue, type="AirQualityObserved", q=q) == {AQ_DONGBA}


def test_q_boolean_true(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q="unesco==true") == {IMPERIAL}


def test_q_boolean_false(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q="unesco==false") == {PAGODA, BRIDGE}


def test_q_multi_instance_attribute_matches_any_instance(hue: TestClient) -> None:
    assert found(hue, type="AirQualityObserved", q="no2>40") == {AQ_DONGBA}
    assert found(hue, type="AirQualityObserved", q="no2<10") == {AQ_DONGBA}
    assert found(hue, type="AirQualityObserved", q="no2==20") == set()


def test_q_equal_matches_an_element_of_an_array_value(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", q='categories=="citadel"') == {IMPERIAL}


def test_q_with_attrs_filters_then_projects(hue: TestClient) -> None:
    entities = get(hue, type="AirQualityObserved", q="pm25>30", attrs="pm25")
    assert {e["id"] for e in entities} == {AQ_CITADEL, AQ_DONGBA}
    for entity in entities:
        assert set(entity) - {"id", "type"} == {"pm25"}


def test_q_may_test_attributes_that_attrs_leaves_out(hue: TestClient) -> None:
    entities = get(hue, type="HeritageSite", q="yearBuilt==1804", attrs="name")
    assert [e["id"] for e in entities] == [IMPERIAL]
    assert entities[0]["name"]["value"] == "Imperial City"
    assert "yearBuilt" not in entities[0]


@pytest.mark.parametrize(
    "q",
    [
        "pm25>",
        "pm25>>3",
        "(pm25>3",
        "pm25>3)",
        "pm25>3;",
        "pm25>3||pm25<1",
        'name=="unterminated',
        "pm25~=(unclosed",
        ";pm25>3",
    ],
)
def test_q_syntax_error_is_bad_request(hue: TestClient, q: str) -> None:
    assert_bad_request(hue, type="AirQualityObserved", q=q)


# --- scopeQ


def test_scope_q_exact_scope(hue: TestClient) -> None:
    assert found(hue, scopeQ="/Hue/PhuXuan") == {BRIDGE, MARKET}


def test_scope_q_hash_includes_descendants(hue: TestClient) -> None:
    assert found(hue, scopeQ="/Hue/PhuXuan/#") == {BRIDGE, MARKET, IMPERIAL}


def test_scope_q_plus_matches_one_level(hue: TestClient) -> None:
    assert found(hue, scopeQ="/Hue/+") == {BRIDGE, MARKET, PAGODA}


def test_scope_q_comma_is_or(hue: TestClient) -> None:
    assert found(hue, scopeQ="/Hue/KimLong,/Hue/PhuXuan/Citadel") == {PAGODA, IMPERIAL}


def test_scope_q_combines_with_type(hue: TestClient) -> None:
    assert found(hue, type="HeritageSite", scopeQ="/Hue/PhuXuan") == {BRIDGE}


def test_scope_q_syntax_error_is_bad_request(hue: TestClient) -> None:
    assert_bad_request(hue, scopeQ="/Hue/(PhuXuan")


# --- geo-queries

SITES = "HeritageSite,Market"


def near(max_distance: float | None = None, min_distance: float | None = None) -> dict[str, str]:
    georel = "near"
    if max_distance is not None:
        georel += f";maxDistance=={max_distance:g}"
    if min_distance is not None:
        georel += f";minDistance=={min_distance:g}"
    return {"georel": georel, "geometry": "Point", "coordinates": coords(IMPERIAL_CITY)}


def test_near_max_distance_keeps_entities_within_it(hue: TestClient) -> None:
    assert found(hue, type=SITES, **near(max_distance=1000)) == {IMPERIAL}


def test_near_max_distance_includes_the_bridge_about_1_1_km_away(hue: TestClient) -> None:
    assert found(hue, type=SITES, **near(max_distance=1200)) == {IMPERIAL, MARKET, BRIDGE}


def test_near_results_are_ordered_nearest_first(hue: TestClient) -> None:
    assert ids(hue, type=SITES, **near(max_distance=5000)) == [IMPERIAL, MARKET, BRIDGE, PAGODA]


def test_near_min_distance_keeps_entities_at_least_that_far(hue: TestClient) -> None:
    assert found(hue, type=SITES, **near(min_distance=1080)) == {BRIDGE, PAGODA}


def test_near_min_distance_results_are_ordered_nearest_first(hue: TestClient) -> None:
    assert ids(hue, type=SITES, **near(min_distance=500)) == [MARKET, BRIDGE, PAGODA]


def test_within_polygon(hue: TestClient) -> None:
    result = found(
        hue, type=f"{SITES},AirQualityObserved", georel="within", **polygon(CITADEL_RING)
    )
    assert result == {IMPERIAL, AQ_CITADEL}


def test_within_multipolygon(hue: TestClient) -> None:
    params = {
        "georel": "within",
        "geometry": "MultiPolygon",
        "coordinates": coords([[CITADEL_RING], [PAGODA_RING]]),
    }
    assert found(hue, type=SITES, **params) == {IMPERIAL, PAGODA}


def test_contains_point(hue: TestClient) -> None:
    params = {"georel": "contains", "geometry": "Point", "coordinates": coords(DONG_BA)}
    assert found(hue, type="CulturalZone,Market", **params) == {MARKET}
    params["coordinates"] = coords(IMPERIAL_CITY)
    assert found(hue, type="CulturalZone,Market", **params) == {ZONE}


def test_contains_point_outside_every_area_matches_nothing(hue: TestClient) -> None:
    params = {"georel": "contains", "geometry": "Point", "coordinates": coords(THIEN_MU)}
    assert found(hue, type="CulturalZone", **params) == set()


def test_intersects_linestring(hue: TestClient) -> None:
    line = [[107.560, 16.470], [107.600, 16.470]]
    params = {"georel": "intersects", "geometry": "LineString", "coordinates": coords(line)}
    assert found(hue, type=f"CulturalZone,{SITES}", **params) == {ZONE}


def test_intersects_multipoint(hue: TestClient) -> None:
    params = {
        "georel": "intersects",
        "geometry": "MultiPoint",
        "coordinates": coords([IMPERIAL_CITY, THIEN_MU]),
    }
    assert found(hue, type=SITES, **params) == {IMPERIAL, PAGODA}


def test_intersects_multilinestring(hue: TestClient) -> None:
    lines = [
        [[107.5780, 16.4690], [107.5790, 16.4705]],  # inside the Citadel, off every point
        [[107.5400, 16.4533], [107.5500, 16.4533]],  # through Thiên Mụ Pagoda
    ]
    params = {"georel": "intersects", "geometry": "MultiLineString", "coordinates": coords(lines)}
    assert found(hue, type="CulturalZone,HeritageSite", **params) == {ZONE, PAGODA}


def test_equals_point(hue: TestClient) -> None:
    params = {"georel": "equals", "geometry": "Point", "coordinates": coords(DONG_BA)}
    assert found(hue, type=SITES, **params) == {MARKET}


def test_equals_polygon_regardless_of_starting_vertex(hue: TestClient) -> None:
    rotated = [*CITADEL_RING[2:-1], *CITADEL_RING[:3]]
    assert rotated[0] == rotated[-1]
    assert found(hue, type="CulturalZone", georel="equals", **polygon(rotated)) == {ZONE}


def test_disjoint_polygon(hue: TestClient) -> None:
    result = found(hue, type="HeritageSite", georel="disjoint", **polygon(CITADEL_RING))
    assert result == {PAGODA, BRIDGE}


def test_overlaps_polygon(hue: TestClient) -> None:
    east_half = [
        [107.575, 16.465],
        [107.595, 16.465],
        [107.595, 16.475],
        [107.575, 16.475],
        [107.575, 16.465],
    ]
    assert found(hue, type="CulturalZone", georel="overlaps", **polygon(east_half)) == {ZONE}


def test_overlaps_is_false_for_a_polygon_containing_the_area(hue: TestClient) -> None:
    around = [
        [107.560, 16.455],
        [107.590, 16.455],
        [107.590, 16.485],
        [107.560, 16.485],
        [107.560, 16.455],
    ]
    assert found(hue, type="CulturalZone", georel="overlaps", **polygon(around)) == set()


RIVER_BOX = [
    [107.583, 16.469],
    [107.585, 16.469],
    [107.585, 16.4705],
    [107.583, 16.4705],
    [107.583, 16.469],
]


def test_geoproperty_selects_another_geoproperty(hue: TestClient) -> None:
    params = {"georel": "intersects", "geoproperty": "riverSection", **polygon(RIVER_BOX)}
    assert found(hue, type="WaterLevelObserved", **params) == {GAUGE}


def test_geoproperty_defaults_to_location(hue: TestClient) -> None:
    params = {"georel": "intersects", **polygon(RIVER_BOX)}
    assert found(hue, type="WaterLevelObserved", **params) == set()


def test_geoproperty_ignores_entities_without_that_property(hue: TestClient) -> None:
    params = {"georel": "within", "geoproperty": "riverSection", **polygon(CITADEL_RING)}
    assert found(hue, type=f"{SITES},WaterLevelObserved", **params) == set()


def test_geo_query_combines_with_q(hue: TestClient) -> None:
    result = found(hue, type=SITES, q="yearBuilt>1850", **near(max_distance=1200))
    assert result == {MARKET, BRIDGE}


@pytest.mark.parametrize(
    "params",
    [
        {"georel": "nearby;maxDistance==100", "geometry": "Point"},
        {"georel": "near", "geometry": "Point"},
        {"georel": "near;maxDistance==-5", "geometry": "Point"},
        {"georel": "near;maxDistance=100", "geometry": "Point"},
        {"georel": "within", "geometry": "Circle"},
    ],
    ids=["unknown-georel", "near-without-distance", "negative", "single-equals", "geometry"],
)
def test_invalid_georel_or_geometry_is_bad_request(hue: TestClient, params: dict) -> None:
    assert_bad_request(hue, type=SITES, coordinates=coords(IMPERIAL_CITY), **params)


@pytest.mark.parametrize(
    ("geometry", "coordinates"),
    [
        ("Point", "[107.5786]"),
        ("Point", "107.5786,16.4698"),
        ("Point", "[107.5786,16.4698"),
        ("Point", '["east","north"]'),
        ("Point", "[200.0,16.4698]"),
        ("Point", "[107.5786,95.0]"),
        ("Polygon", coords([[[107.565, 16.46], [107.585, 16.46], [107.585, 16.48]]])),
        ("LineString", "[[107.5786,16.4698]]"),
    ],
)
def test_invalid_coordinates_are_bad_request(
    hue: TestClient, geometry: str, coordinates: str
) -> None:
    params = {"georel": "intersects", "geometry": geometry, "coordinates": coordinates}
    assert_bad_request(hue, type=SITES, **params)


def test_geo_query_missing_coordinates_is_bad_request(hue: TestClient) -> None:
    assert_bad_request(hue, type=SITES, georel="near;maxDistance==100", geometry="Point")


# --- pagination and counting


@pytest.fixture
def stations(client: TestClient) -> set[str]:
    """35 air-quality stations along the Hương River."""
    made = set()
    for n in range(35):
        entity_id = f"urn:ngsi-ld:AirQualityObserved:huong-{n:02d}"
        entity = {
            "id": entity_id,
            "type": "AirQualityObserved",
            "pm25": prop(5.0 + n, unitCode="GQ"),
            "location": point([107.54 + n * 0.001, 16.46]),
        }
        response = client.post(f"{API}/entities", json=entity)
        assert response.status_code == 201, response.text
        made.add(entity_id)
    return made


def links(response: Any) -> dict[str, str]:
    """rel -> URL of the Link header values of a response."""
    out: dict[str, str] = {}
    for value in re.split(r",\s*(?=<)", response.headers.get("link", "")):
        match = re.match(r"\s*<([^>]*)>(.*)", value)
        rel_match = re.search(r'rel="?([^";]+)"?', match.group(2)) if match else None
        if match and rel_match:
            out[rel_match.group(1)] = match.group(1)
    return out


def test_limit_caps_the_page_size(client: TestClient, stations: set[str]) -> None:
    assert len(ids(client, type="AirQualityObserved", limit=10)) == 10


def test_default_page_size_is_applied(client: TestClient, stations: set[str]) -> None:
    page = ids(client, type="AirQualityObserved")
    assert 0 < len(page) < len(stations)


def test_offset_pages_are_disjoint_and_cover_everything(
    client: TestClient, stations: set[str]
) -> None:
    seen: list[str] = []
    for offset in range(0, 40, 10):
        seen += ids(client, type="AirQualityObserved", limit=10, offset=offset)
    assert len(seen) == len(stations)
    assert set(seen) == stations


def test_offset_beyond_the_end_gives_an_empty_page(client: TestClient, stations: set[str]) -> None:
    assert ids(client, type="AirQualityObserved", limit=10, offset=100) == []


def test_count_true_sets_results_count_header(client: TestClient, stations: set[str]) -> None:
    response = client.get(
        f"{API}/entities", params={"type": "AirQualityObserved", "limit": 5, "count": "true"}
    )
    assert response.status_code == 200
    assert len(response.json()) == 5
    assert response.headers["NGSILD-Results-Count"] == str(len(stations))


def test_count_header_counts_matches_not_the_page(client: TestClient, stations: set[str]) -> None:
    params = {"type": "AirQualityObserved", "q": "pm25>=30", "count": "true", "limit": 3}
    response = client.get(f"{API}/entities", params=params)
    assert response.headers["NGSILD-Results-Count"] == "10"


def test_count_header_absent_without_count(client: TestClient, stations: set[str]) -> None:
    response = client.get(f"{API}/entities", params={"type": "AirQualityObserved"})
    assert "NGSILD-Results-Count" not in response.headers


def test_count_zero_when_nothing_matches(client: TestClient, stations: set[str]) -> None:
    params = {"type": "Temple", "count": "true"}
    response = client.get(f"{API}/entities", params=params)
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["NGSILD-Results-Count"] == "0"


def test_limit_zero_with_count_returns_only_the_count(
    client: TestClient, stations: set[str]
) -> None:
    params = {"type": "AirQualityObserved", "limit": 0, "count": "true"}
    response = client.get(f"{API}/entities", params=params)
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["NGSILD-Results-Count"] == str(len(stations))


def test_first_page_links_next_but_not_prev(client: TestClient, stations: set[str]) -> None:
    response = client.get(f"{API}/entities", params={"type": "AirQualityObserved", "limit": 10})
    rels = links(response)
    assert "next" in rels
    assert "prev" not in rels


def test_middle_page_links_next_and_prev(client: TestClient, stations: set[str]) -> None:
    params = {"type": "AirQualityObserved", "limit": 10, "offset": 10}
    rels = links(client.get(f"{API}/entities", params=params))
    assert "next" in rels
    assert "prev" in rels
    previous = client.get(rels["prev"])
    assert previous.status_code == 200
    first = ids(client, type="AirQualityObserved", limit=10, offset=0)
    assert [e["id"] for e in previous.json()] == first


def test_last_page_has_no_next_link(client: TestClient, stations: set[str]) -> None:
    params = {"type": "AirQualityObserved", "limit": 10, "offset": 30}
    response = client.get(f"{API}/entities", params=params)
    assert len(response.json()) == 5
    rels = links(response)
    assert "next" not in rels
    assert "prev" in rels


def test_following_next_links_visits_every_entity_once(
    client: TestClient, stations: set[str]
) -> None:
    seen: list[str] = []
    url: str | None = f"{API}/entities?type=AirQualityObserved&limit=8"
    pages = 0
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        page = [e["id"] for e in response.json()]
        assert 0 < len(page) <= 8
        seen += page
        url = links(response).get("next")
        pages += 1
        assert pages <= 10, "next links do not end"
    assert pages == 5
    assert sorted(seen) == sorted(stations)


def test_next_links_keep_the_query_filters(client: TestClient, stations: set[str]) -> None:
    seen: list[str] = []
    url: str | None = f"{API}/entities?type=AirQualityObserved&q=pm25%3E%3D30&limit=4"
    while url is not None:
        response = client.get(url)
        seen += [e["id"] for e in response.json()]
        url = links(response).get("next")
    expected = {f"urn:ngsi-ld:AirQualityObserved:huong-{n:02d}" for n in range(25, 35)}
    assert sorted(seen) == sorted(expected)


def test_limit_above_maximum_is_too_many_results(client: TestClient, stations: set[str]) -> None:
    response = client.get(f"{API}/entities", params={"type": "AirQualityObserved", "limit": 101})
    assert response.status_code == 403
    assert response.json()["type"] == ERRORS + "TooManyResults"


def test_limit_at_maximum_is_accepted(client: TestClient, stations: set[str]) -> None:
    assert len(ids(client, type="AirQualityObserved", limit=100)) == len(stations)


@pytest.mark.parametrize("limit", ["-1", "ten", "2.5", ""])
def test_invalid_limit_is_bad_request(client: TestClient, limit: str) -> None:
    assert_bad_request(client, type="AirQualityObserved", limit=limit)


@pytest.mark.parametrize("offset", ["-1", "first"])
def test_invalid_offset_is_bad_request(client: TestClient, offset: str) -> None:
    assert_bad_request(client, type="AirQualityObserved", offset=offset)


def test_invalid_count_value_is_bad_request(client: TestClient) -> None:
    assert_bad_request(client, type="AirQualityObserved", count="yes")


def test_expand_values_lets_q_name_a_vocab_value_by_its_term(client: TestClient) -> None:
    entity = {
        "id": "urn:ngsi-ld:AirQualityObserved:hue-1",
        "type": "AirQualityObserved",
        "airQualityLevel": {"type": "VocabProperty", "vocab": "moderate"},
    }
    assert client.post(f"{API}/entities", json=entity).status_code == 201
    params = {"type": "AirQualityObserved", "q": "airQualityLevel==moderate"}
    assert client.get(f"{API}/entities", params=params).json() == []
    params["expandValues"] = "airQualityLevel"
    found = client.get(f"{API}/entities", params=params).json()
    assert [e["id"] for e in found] == [entity["id"]]


def test_count_alone_does_not_lift_the_filter_requirement(client: TestClient) -> None:
    response = client.get(f"{API}/entities", params={"count": "true"})
    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"


# --- client patterns that would backtrack for hours ------------------------------------------

SLOW_PATTERN, SLOW_TEXT = r"(a|aa)+$", "a" * 40 + "!"


def test_a_pattern_too_slow_to_match_is_refused_or_answered(
    client: TestClient, store_url: str
) -> None:
    body = {
        "id": "urn:ngsi-ld:Note:1",
        "type": "Note",
        "text": {"type": "Property", "value": SLOW_TEXT},
    }
    assert client.post(f"{API}/entities", json=body).status_code == 201
    response = client.get(
        f"{API}/entities", params={"type": "Note", "q": f'text~="{SLOW_PATTERN}"'}
    )
    if store_url.startswith("sqlite"):  # Python's backtracking engine: stopped after 0.1 s
        assert response.status_code == 400
        assert response.json()["type"] == ERRORS + "BadRequestData"
        assert "too long" in response.json()["detail"]
    else:  # PostgreSQL's own engine does not backtrack on it: an ordinary answer
        assert response.status_code == 200 and response.json() == []
    assert client.get(f"{API}/entities/urn:ngsi-ld:Note:1").status_code == 200


def test_a_slow_id_pattern_is_refused_or_answered(client: TestClient, store_url: str) -> None:
    entity_id = f"urn:ngsi-ld:Note:{SLOW_TEXT}"
    assert client.post(f"{API}/entities", json={"id": entity_id, "type": "Note"}).status_code == 201
    response = client.get(f"{API}/entities", params={"idPattern": f"Note:{SLOW_PATTERN}"})
    if store_url.startswith("sqlite"):
        assert response.status_code == 400
        assert response.json()["type"] == ERRORS + "BadRequestData"
    else:
        assert response.status_code == 200 and response.json() == []
