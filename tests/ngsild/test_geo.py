"""Tests for urbanstack.ngsild.geo: GeoJSON validation, geo-query parsing and evaluation.

Fixtures are real places in Huế (Vietnam); the citadel and river outlines are simplified.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.geo import (
    EARTH_RADIUS_M,
    GEORELS,
    LOCATION_IRI,
    GeoQuery,
    geometry_bounds,
    geometry_to_wkb,
    parse_geo_query,
    validate_geometry,
)
from urbanstack.ngsild.geo_match import GeoPredicate, compile_geo_query, haversine_m

# --- Huế fixtures -----------------------------------------------------------------------------

IMPERIAL_CITY = [107.5786, 16.4698]
TRUONG_TIEN_BRIDGE = [107.5887, 16.4684]
THIEN_MU_PAGODA = [107.5446, 16.4533]
DONG_BA_MARKET = [107.5886, 16.4727]


def box(minx: float, miny: float, maxx: float, maxy: float) -> list[list[float]]:
    """A closed counter-clockwise ring."""
    return [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]


CITADEL_RING = box(107.5650, 16.4620, 107.5875, 16.4820)  # Kinh Thành, simplified
ENCLOSURE_RING = box(107.5740, 16.4650, 107.5830, 16.4740)  # Hoàng Thành, inside the citadel
DONG_BA_RING = box(107.5800, 16.4650, 107.5950, 16.4780)  # straddles the citadel's east wall
THIEN_MU_RING = box(107.5430, 16.4520, 107.5460, 16.4545)  # pagoda grounds, outside

CITADEL = {"type": "Polygon", "coordinates": [CITADEL_RING]}
ENCLOSURE = {"type": "Polygon", "coordinates": [ENCLOSURE_RING]}
DONG_BA = {"type": "Polygon", "coordinates": [DONG_BA_RING]}
THIEN_MU_GROUNDS = {"type": "Polygon", "coordinates": [THIEN_MU_RING]}
PERFUME_RIVER = {  # runs south-east of the citadel without touching it
    "type": "LineString",
    "coordinates": [
        [107.5446, 16.4533],
        [107.5600, 16.4540],
        [107.5750, 16.4560],
        [107.5860, 16.4590],
        [107.5930, 16.4640],
        [107.6000, 16.4700],
    ],
}
WALK_TO_BRIDGE = {"type": "LineString", "coordinates": [IMPERIAL_CITY, TRUONG_TIEN_BRIDGE]}
INNER_PATH = {"type": "LineString", "coordinates": [[107.5700, 16.4700], [107.5800, 16.4750]]}


def point(position: list[float]) -> dict[str, Any]:
    return {"type": "Point", "coordinates": position}


def expand(name: str) -> str:
    """Stand-in for JSON-LD expansion with the core context plus a Huế vocabulary."""
    return LOCATION_IRI if name == "location" else f"https://example.org/hue/{name}"


def query(georel: str, geometry: dict[str, Any], geoproperty: str | None = None) -> GeoQuery:
    parsed = parse_geo_query(georel, geometry["type"], geometry["coordinates"], geoproperty, expand)
    assert parsed is not None
    return parsed


def predicate(georel: str, geometry: dict[str, Any]) -> GeoPredicate:
    return compile_geo_query(query(georel, geometry))


def near(position: list[float], modifiers: str) -> GeoPredicate:
    return predicate(f"near;{modifiers}", point(position))


def segment_distance(lon: float, lat: float, a: list[float], b: list[float]) -> float:
    """Exact great-circle distance from a point to a lon/lat-straight segment (golden section)."""

    def at(t: float) -> float:
        return haversine_m(lon, lat, a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)

    lo, hi = 0.0, 1.0
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        m1 = hi - ratio * (hi - lo)
        m2 = lo + ratio * (hi - lo)
        if at(m1) <= at(m2):
            hi = m2
        else:
            lo = m1
    return min(at(0.0), at(1.0), at((lo + hi) / 2))


def destination(lon: float, lat: float, bearing: float, metres: float) -> list[float]:
    """The point ``metres`` away on a great circle (longitude wrapped to [-180, 180])."""
    p1, l1, b, a = (
        math.radians(lat),
        math.radians(lon),
        math.radians(bearing),
        metres / EARTH_RADIUS_M,
    )
    p2 = math.asin(math.sin(p1) * math.cos(a) + math.cos(p1) * math.sin(a) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(a) * math.cos(p1), math.cos(a) - math.sin(p1) * math.sin(p2)
    )
    lon2 = (math.degrees(l2) + 540.0) % 360.0 - 180.0
    return [min(180.0, max(-180.0, lon2)), min(90.0, max(-90.0, math.degrees(p2)))]


def rects_intersect(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


# --- validate_geometry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "geometry",
    [
        point(IMPERIAL_CITY),
        {"type": "MultiPoint", "coordinates": [IMPERIAL_CITY, THIEN_MU_PAGODA]},
        PERFUME_RIVER,
        {
            "type": "MultiLineString",
            "coordinates": [PERFUME_RIVER["coordinates"], INNER_PATH["coordinates"]],
        },
        CITADEL,
        {"type": "Polygon", "coordinates": [CITADEL_RING, ENCLOSURE_RING]},
        {"type": "MultiPolygon", "coordinates": [[CITADEL_RING], [THIEN_MU_RING]]},
    ],
    ids=lambda g: g["type"],
)
def test_validate_accepts_every_geojson_geometry_type(geometry: dict[str, Any]) -> None:
    assert validate_geometry(geometry) == geometry


def test_validate_accepts_geometry_collection() -> None:
    collection = {"type": "GeometryCollection", "geometries": [point(IMPERIAL_CITY), CITADEL]}
    assert validate_geometry(collection) == collection


def test_validate_rejects_geometry_collection_when_not_allowed() -> None:
    collection = {"type": "GeometryCollection", "geometries": [point(IMPERIAL_CITY)]}
    with pytest.raises(BadRequestData, match="GeometryCollection"):
        validate_geometry(collection, allow_collection=False)


def test_validate_rejects_nested_geometry_collection() -> None:
    inner = {"type": "GeometryCollection", "geometries": [point(IMPERIAL_CITY)]}
    with pytest.raises(BadRequestData, match=r"geometries\[0\].*unsupported geometry type"):
        validate_geometry({"type": "GeometryCollection", "geometries": [inner]})


def test_validate_rejects_empty_geometry_collection() -> None:
    with pytest.raises(BadRequestData, match="must not be empty"):
        validate_geometry({"type": "GeometryCollection", "geometries": []})


def test_validate_converts_integer_coordinates_to_floats() -> None:
    result = validate_geometry({"type": "Point", "coordinates": [107, 16]})
    assert result == {"type": "Point", "coordinates": [107.0, 16.0]}
    assert all(type(c) is float for c in result["coordinates"])


def test_validate_keeps_altitude() -> None:
    assert validate_geometry(point([107.5786, 16.4698, 12]))["coordinates"] == [
        107.5786,
        16.4698,
        12.0,
    ]


def test_validate_drops_bbox_and_foreign_members() -> None:
    value = {"type": "Point", "coordinates": IMPERIAL_CITY, "bbox": [0, 0, 1, 1], "name": "Đại Nội"}
    assert validate_geometry(value) == point(IMPERIAL_CITY)


def test_validate_does_not_modify_its_input() -> None:
    value = {"type": "LineString", "coordinates": [[107, 16], [108, 17]]}
    validate_geometry(value)
    assert value == {"type": "LineString", "coordinates": [[107, 16], [108, 17]]}


def test_validate_rejects_latitude_95() -> None:
    with pytest.raises(BadRequestData, match=r"latitude 95\.0 is outside \[-90, 90\]"):
        validate_geometry(point([107.5786, 95]))


def test_validate_suggests_swapped_axes_for_lat_lon_order() -> None:
    with pytest.raises(BadRequestData, match="swapped"):
        validate_geometry(point([16.4698, 107.5786]))


def test_validate_rejects_longitude_out_of_range() -> None:
    with pytest.raises(BadRequestData, match=r"longitude 180\.5 is outside"):
        validate_geometry(point([180.5, 16.4698]))


def test_validate_accepts_longitude_and_latitude_limits() -> None:
    assert validate_geometry(point([-180, 90]))["coordinates"] == [-180.0, 90.0]


def test_validate_rejects_boolean_coordinate() -> None:
    with pytest.raises(BadRequestData, match=r"coordinates\[1\]: must be a number, got a boolean"):
        validate_geometry(point([107.5786, True]))


def test_validate_rejects_string_coordinate() -> None:
    with pytest.raises(BadRequestData, match="must be a number"):
        validate_geometry(point(["107.5786", 16.4698]))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
def test_validate_rejects_non_finite_coordinate(bad: float) -> None:
    with pytest.raises(BadRequestData, match="finite"):
        validate_geometry(point([bad, 16.4698]))


@pytest.mark.parametrize("position", [[107.5786], [107.5786, 16.4698, 1, 2], []])
def test_validate_rejects_position_without_two_or_three_numbers(position: list[float]) -> None:
    with pytest.raises(BadRequestData, match="2 or 3 numbers"):
        validate_geometry(point(position))


def test_validate_rejects_missing_coordinates() -> None:
    with pytest.raises(BadRequestData, match="needs a 'coordinates' member"):
        validate_geometry({"type": "Point"})


def test_validate_rejects_missing_type() -> None:
    with pytest.raises(BadRequestData, match="no 'type'"):
        validate_geometry({"coordinates": IMPERIAL_CITY})


def test_validate_suggests_correct_case_for_type() -> None:
    with pytest.raises(BadRequestData, match="did you mean 'Point'"):
        validate_geometry({"type": "point", "coordinates": IMPERIAL_CITY})


def test_validate_rejects_non_object() -> None:
    with pytest.raises(BadRequestData, match="must be an object"):
        validate_geometry([107.5786, 16.4698])


def test_validate_rejects_linestring_with_one_position() -> None:
    with pytest.raises(BadRequestData, match="at least 2 position"):
        validate_geometry({"type": "LineString", "coordinates": [IMPERIAL_CITY]})


def test_validate_rejects_zero_length_linestring() -> None:
    with pytest.raises(BadRequestData, match="invalid LineString"):
        validate_geometry({"type": "LineString", "coordinates": [IMPERIAL_CITY, IMPERIAL_CITY]})


def test_validate_rejects_unclosed_ring() -> None:
    ring = [*CITADEL_RING[:-1], [107.5650, 16.4630]]
    with pytest.raises(BadRequestData, match=r"coordinates\[0\]: a linear ring must be closed"):
        validate_geometry({"type": "Polygon", "coordinates": [ring]})


def test_validate_rejects_ring_with_three_positions() -> None:
    ring = [IMPERIAL_CITY, TRUONG_TIEN_BRIDGE, IMPERIAL_CITY]
    with pytest.raises(BadRequestData, match="at least 4 position"):
        validate_geometry({"type": "Polygon", "coordinates": [ring]})


def test_validate_rejects_polygon_without_rings() -> None:
    with pytest.raises(BadRequestData, match="at least one linear ring"):
        validate_geometry({"type": "Polygon", "coordinates": []})


def test_validate_rejects_self_intersecting_polygon() -> None:
    bowtie = [[107.56, 16.46], [107.59, 16.48], [107.59, 16.46], [107.56, 16.48], [107.56, 16.46]]
    with pytest.raises(BadRequestData, match="invalid Polygon: Self-intersection"):
        validate_geometry({"type": "Polygon", "coordinates": [bowtie]})


def test_validate_rejects_hole_outside_shell() -> None:
    with pytest.raises(BadRequestData, match="invalid Polygon"):
        validate_geometry({"type": "Polygon", "coordinates": [ENCLOSURE_RING, THIEN_MU_RING]})


def test_validate_rejects_overlapping_multipolygon_members() -> None:
    with pytest.raises(BadRequestData, match="invalid MultiPolygon"):
        validate_geometry({"type": "MultiPolygon", "coordinates": [[CITADEL_RING], [DONG_BA_RING]]})


def test_validate_rejects_empty_multipoint() -> None:
    with pytest.raises(BadRequestData, match="at least 1 position"):
        validate_geometry({"type": "MultiPoint", "coordinates": []})


def test_validate_error_names_the_offending_position() -> None:
    coordinates = [[CITADEL_RING], [[*THIEN_MU_RING[:2], [107.5460, 91.0], *THIEN_MU_RING[3:]]]]
    with pytest.raises(BadRequestData, match=r"coordinates\[1\]\[0\]\[2\]: latitude 91\.0"):
        validate_geometry({"type": "MultiPolygon", "coordinates": coordinates})


# --- geometry_to_wkb / geometry_bounds ----------------------------------------------------------


@pytest.mark.parametrize(
    "geometry", [point(IMPERIAL_CITY), PERFUME_RIVER, CITADEL], ids=lambda g: g["type"]
)
def test_geometry_to_wkb_round_trips_through_shapely(geometry: dict[str, Any]) -> None:
    restored = shapely.from_wkb(geometry_to_wkb(geometry))
    assert restored.equals(shapely.geometry.shape(geometry))


def test_geometry_to_wkb_writes_points_as_21_little_endian_bytes() -> None:
    wkb = geometry_to_wkb(point(IMPERIAL_CITY))
    assert len(wkb) == 21
    assert wkb[:5] == b"\x01\x01\x00\x00\x00"


def test_geometry_to_wkb_drops_altitude() -> None:
    restored = shapely.from_wkb(geometry_to_wkb(point([*IMPERIAL_CITY, 30.0])))
    assert not restored.has_z


def test_geometry_to_wkb_rejects_invalid_geometry() -> None:
    with pytest.raises(BadRequestData):
        geometry_to_wkb(point([107.5786, 95.0]))


def test_geometry_bounds_of_polygon() -> None:
    assert geometry_bounds(CITADEL) == (107.5650, 16.4620, 107.5875, 16.4820)


def test_geometry_bounds_of_point_is_degenerate() -> None:
    assert geometry_bounds(point(IMPERIAL_CITY)) == (107.5786, 16.4698, 107.5786, 16.4698)


# --- haversine --------------------------------------------------------------------------------


def test_haversine_matches_known_nashville_to_los_angeles_distance() -> None:
    # Classic worked example: BNA (36.12, -86.67) to LAX (33.94, -118.40) is 2887.2599506 km
    # on a sphere of 6372.8 km; distances scale linearly with the radius.
    expected = 2_887_259.9506071106 * EARTH_RADIUS_M / 6_372_800.0
    assert haversine_m(-86.67, 36.12, -118.40, 33.94) == pytest.approx(expected, rel=1e-12)


def test_haversine_one_degree_of_meridian_is_111_195_m() -> None:
    assert haversine_m(107.5786, 0.0, 107.5786, 1.0) == pytest.approx(111_195.08, abs=0.01)


def test_haversine_imperial_city_to_truong_tien_bridge_is_about_1_09_km() -> None:
    distance = haversine_m(*IMPERIAL_CITY, *TRUONG_TIEN_BRIDGE)
    assert 1_080 < distance < 1_095


def test_haversine_across_the_antimeridian_is_short() -> None:
    assert haversine_m(179.99, 0.0, -179.99, 0.0) == pytest.approx(2_223.9, abs=0.1)


# --- parse_geo_query --------------------------------------------------------------------------


def test_parse_returns_none_without_geo_parameters() -> None:
    assert parse_geo_query(None, None, None, None, expand) is None


def test_parse_ignores_geoproperty_alone() -> None:
    assert parse_geo_query(None, None, None, "location", expand) is None


def test_parse_near_max_distance_from_url_parameters() -> None:
    q = parse_geo_query("near;maxDistance==500", "Point", "[107.5786,16.4698]", None, expand)
    assert q == GeoQuery("near", 500.0, None, point(IMPERIAL_CITY), LOCATION_IRI)


def test_parse_near_min_distance() -> None:
    q = parse_geo_query("near;minDistance==100", "Point", "[107.5786,16.4698]", None, expand)
    assert q is not None
    assert (q.max_distance, q.min_distance) == (None, 100.0)


def test_parse_near_with_both_distances() -> None:
    q = parse_geo_query(
        "near;maxDistance==500;minDistance==100", "Point", "[107.5786,16.4698]", None, expand
    )
    assert q is not None
    assert (q.max_distance, q.min_distance) == (500.0, 100.0)


def test_parse_accepts_decimal_distance() -> None:
    q = parse_geo_query("near;maxDistance==12.5", "Point", IMPERIAL_CITY, None, expand)
    assert q is not None
    assert q.max_distance == 12.5


def test_parse_accepts_already_decoded_coordinates() -> None:
    q = parse_geo_query("within", "Polygon", [CITADEL_RING], None, expand)
    assert q is not None
    assert q.geometry == CITADEL


def test_parse_decodes_polygon_coordinates_from_json_text() -> None:
    text = (
        "[[[107.565,16.462],[107.5875,16.462],[107.5875,16.482],[107.565,16.482],[107.565,16.462]]]"
    )
    q = parse_geo_query("within", "Polygon", text, None, expand)
    assert q is not None
    assert q.geometry == CITADEL


@pytest.mark.parametrize("georel", [g for g in GEORELS if g != "near"])
def test_parse_accepts_every_plain_georel(georel: str) -> None:
    q = parse_geo_query(georel, "Polygon", [CITADEL_RING], None, expand)
    assert q is not None
    assert (q.georel, q.max_distance, q.min_distance) == (georel, None, None)


def test_parse_defaults_geoproperty_to_location_iri() -> None:
    assert query("intersects", CITADEL).geoproperty == "https://uri.etsi.org/ngsi-ld/location"


def test_parse_expands_location_geoproperty() -> None:
    assert query("intersects", CITADEL, "location").geoproperty == LOCATION_IRI


def test_parse_expands_custom_geoproperty() -> None:
    q = query("intersects", CITADEL, "observationSpace")
    assert q.geoproperty == "https://example.org/hue/observationSpace"


def test_georel_text_round_trips() -> None:
    q = parse_geo_query(
        "near;maxDistance==500;minDistance==2.5", "Point", IMPERIAL_CITY, None, expand
    )
    assert q is not None
    assert q.georel_text == "near;maxDistance==500;minDistance==2.5"


def test_geo_query_is_hashable() -> None:
    q = query("within", CITADEL)
    assert hash(q) == hash(query("within", CITADEL))


@pytest.mark.parametrize(
    ("georel", "geometry", "coordinates", "missing"),
    [
        ("within", "Polygon", None, "'coordinates' is missing"),
        ("within", None, None, "'geometry' and 'coordinates' are missing"),
        (None, "Point", "[107.5786,16.4698]", "'georel' is missing"),
        (None, None, "[107.5786,16.4698]", "'georel' and 'geometry' are missing"),
    ],
)
def test_parse_rejects_incomplete_geo_query(
    georel: str | None, geometry: str | None, coordinates: str | None, missing: str
) -> None:
    with pytest.raises(BadRequestData, match=f"Incomplete geo-query: {missing}"):
        parse_geo_query(georel, geometry, coordinates, None, expand)


def test_parse_rejects_malformed_coordinates_json() -> None:
    with pytest.raises(BadRequestData, match="'coordinates' is not valid JSON"):
        parse_geo_query("within", "Polygon", "[[[107.565,16.462],", None, expand)


def test_parse_rejects_coordinates_that_are_not_an_array() -> None:
    with pytest.raises(BadRequestData, match="must be a JSON array, got the number 5"):
        parse_geo_query("near;maxDistance==5", "Point", "5", None, expand)


def test_parse_rejects_empty_coordinates_text() -> None:
    with pytest.raises(BadRequestData, match="'coordinates' is empty"):
        parse_geo_query("near;maxDistance==5", "Point", "  ", None, expand)


def test_parse_rejects_coordinates_inconsistent_with_geometry() -> None:
    with pytest.raises(BadRequestData, match="Invalid geo-query: coordinates"):
        parse_geo_query("within", "Polygon", "[107.5786,16.4698]", None, expand)


def test_parse_rejects_latitude_95_in_query_coordinates() -> None:
    with pytest.raises(BadRequestData, match=r"latitude 95\.0 is outside"):
        parse_geo_query("near;maxDistance==5", "Point", "[107.5786,95]", None, expand)


def test_parse_rejects_unclosed_query_polygon() -> None:
    with pytest.raises(BadRequestData, match="must be closed"):
        parse_geo_query("within", "Polygon", [[*CITADEL_RING[:-1], IMPERIAL_CITY]], None, expand)


def test_parse_rejects_unknown_georel() -> None:
    with pytest.raises(BadRequestData, match="unknown georel 'coveredBy'"):
        parse_geo_query("coveredBy", "Polygon", [CITADEL_RING], None, expand)


def test_parse_rejects_unknown_geometry() -> None:
    with pytest.raises(BadRequestData, match="unsupported geometry 'Circle'"):
        parse_geo_query("within", "Circle", [CITADEL_RING], None, expand)


def test_parse_rejects_lowercase_geometry_with_hint() -> None:
    with pytest.raises(BadRequestData, match="did you mean 'Point'"):
        parse_geo_query("near;maxDistance==5", "point", IMPERIAL_CITY, None, expand)


def test_parse_rejects_geometry_collection_as_query_geometry() -> None:
    with pytest.raises(BadRequestData, match="unsupported geometry 'GeometryCollection'"):
        parse_geo_query("intersects", "GeometryCollection", [], None, expand)


def test_parse_rejects_near_with_polygon() -> None:
    with pytest.raises(BadRequestData, match="'near' requires geometry 'Point', got 'Polygon'"):
        parse_geo_query("near;maxDistance==500", "Polygon", [CITADEL_RING], None, expand)


def test_parse_rejects_near_without_distance() -> None:
    with pytest.raises(BadRequestData, match="'near' needs maxDistance and/or minDistance"):
        parse_geo_query("near", "Point", IMPERIAL_CITY, None, expand)


def test_parse_rejects_negative_distance() -> None:
    with pytest.raises(BadRequestData, match="'maxDistance' must not be negative"):
        parse_geo_query("near;maxDistance==-5", "Point", IMPERIAL_CITY, None, expand)


def test_parse_rejects_max_distance_without_value() -> None:
    with pytest.raises(BadRequestData, match="'maxDistance' needs a value in metres"):
        parse_geo_query("near;maxDistance==", "Point", IMPERIAL_CITY, None, expand)


def test_parse_rejects_max_distance_without_operator() -> None:
    with pytest.raises(BadRequestData, match="invalid near modifier 'maxDistance'"):
        parse_geo_query("near;maxDistance", "Point", IMPERIAL_CITY, None, expand)


def test_parse_rejects_ngsiv2_colon_syntax_with_hint() -> None:
    with pytest.raises(BadRequestData, match="double '='"):
        parse_geo_query("near;maxDistance:500", "Point", IMPERIAL_CITY, None, expand)


@pytest.mark.parametrize("value", ["abc", "1_000", "nan", "inf", "0x10", "1e999"])
def test_parse_rejects_non_numeric_distance(value: str) -> None:
    with pytest.raises(BadRequestData, match="'maxDistance' must be"):
        parse_geo_query(f"near;maxDistance=={value}", "Point", IMPERIAL_CITY, None, expand)


def test_parse_rejects_unknown_near_modifier() -> None:
    with pytest.raises(BadRequestData, match="unknown near modifier 'radius'"):
        parse_geo_query("near;radius==5", "Point", IMPERIAL_CITY, None, expand)


def test_parse_rejects_repeated_near_modifier() -> None:
    with pytest.raises(BadRequestData, match="given more than once"):
        parse_geo_query("near;maxDistance==5;maxDistance==6", "Point", IMPERIAL_CITY, None, expand)


def test_parse_rejects_min_distance_greater_than_max_distance() -> None:
    with pytest.raises(
        BadRequestData, match=r"minDistance \(500\) is greater than maxDistance \(100\)"
    ):
        parse_geo_query(
            "near;maxDistance==100;minDistance==500", "Point", IMPERIAL_CITY, None, expand
        )


def test_parse_rejects_modifier_on_non_near_georel() -> None:
    with pytest.raises(BadRequestData, match="georel 'within' takes no modifiers"):
        parse_geo_query("within;maxDistance==5", "Polygon", [CITADEL_RING], None, expand)


def test_parse_rejects_non_string_georel() -> None:
    with pytest.raises(BadRequestData, match="'georel' must be a string"):
        parse_geo_query(5, "Point", IMPERIAL_CITY, None, expand)  # type: ignore[arg-type]


def test_parse_rejects_empty_geoproperty() -> None:
    with pytest.raises(BadRequestData, match="'geoproperty' must be a non-empty"):
        parse_geo_query("within", "Polygon", [CITADEL_RING], "", expand)


# --- compile_geo_query ------------------------------------------------------------------------


def test_compile_rejects_hand_built_near_query_with_polygon() -> None:
    with pytest.raises(BadRequestData, match="'near' requires a Point"):
        compile_geo_query(GeoQuery("near", 5.0, None, CITADEL, LOCATION_IRI))


def test_compile_rejects_hand_built_distance_on_within() -> None:
    with pytest.raises(BadRequestData, match="only go with 'near'"):
        compile_geo_query(GeoQuery("within", 5.0, None, CITADEL, LOCATION_IRI))


def test_compile_rejects_hand_built_unknown_georel() -> None:
    with pytest.raises(BadRequestData, match="unknown georel"):
        compile_geo_query(GeoQuery("touches", None, None, CITADEL, LOCATION_IRI))


# --- near -------------------------------------------------------------------------------------

BRIDGE_DISTANCE = haversine_m(*IMPERIAL_CITY, *TRUONG_TIEN_BRIDGE)  # ~1088 m


def test_near_max_distance_includes_point_just_inside() -> None:
    assert near(IMPERIAL_CITY, "maxDistance==1090").matches(point(TRUONG_TIEN_BRIDGE))


def test_near_max_distance_excludes_point_just_outside() -> None:
    assert not near(IMPERIAL_CITY, "maxDistance==1085").matches(point(TRUONG_TIEN_BRIDGE))


def test_near_max_distance_is_inclusive() -> None:
    pred = near(IMPERIAL_CITY, f"maxDistance=={BRIDGE_DISTANCE!r}")
    assert pred.matches(point(TRUONG_TIEN_BRIDGE))


def test_near_min_distance_excludes_point_just_inside() -> None:
    assert not near(IMPERIAL_CITY, "minDistance==1090").matches(point(TRUONG_TIEN_BRIDGE))


def test_near_min_distance_includes_point_beyond() -> None:
    assert near(IMPERIAL_CITY, "minDistance==1085").matches(point(TRUONG_TIEN_BRIDGE))


def test_near_min_distance_is_inclusive() -> None:
    pred = near(IMPERIAL_CITY, f"minDistance=={BRIDGE_DISTANCE!r}")
    assert pred.matches(point(TRUONG_TIEN_BRIDGE))


def test_near_min_and_max_distance_select_a_ring() -> None:
    pred = near(IMPERIAL_CITY, "maxDistance==1500;minDistance==1000")
    assert [
        pred.matches(point(p)) for p in (IMPERIAL_CITY, TRUONG_TIEN_BRIDGE, THIEN_MU_PAGODA)
    ] == [
        False,
        True,
        False,
    ]


def test_near_zero_max_distance_matches_only_the_same_point() -> None:
    pred = near(IMPERIAL_CITY, "maxDistance==0")
    assert pred.matches(point(IMPERIAL_CITY))
    assert not pred.matches(point([107.5786, 16.46981]))


def test_near_linestring_is_measured_to_its_nearest_point() -> None:
    coords = PERFUME_RIVER["coordinates"]
    expected = min(
        segment_distance(*TRUONG_TIEN_BRIDGE, a, b) for a, b in itertools.pairwise(coords)
    )
    pred = near(TRUONG_TIEN_BRIDGE, "maxDistance==5000")
    assert pred.distance_m(PERFUME_RIVER) == pytest.approx(expected, rel=1e-6)


def test_near_linestring_matches_when_its_nearest_point_is_close_enough() -> None:
    pred = near(TRUONG_TIEN_BRIDGE, "maxDistance==700")
    assert pred.matches(PERFUME_RIVER)
    assert not near(TRUONG_TIEN_BRIDGE, "maxDistance==600").matches(PERFUME_RIVER)


def test_near_polygon_containing_the_query_point_is_at_zero_distance() -> None:
    pred = near(IMPERIAL_CITY, "minDistance==1")
    assert pred.distance_m(CITADEL) == 0.0
    assert not pred.matches(CITADEL)


def test_near_polygon_is_measured_to_its_boundary() -> None:
    pred = near(TRUONG_TIEN_BRIDGE, "maxDistance==1000")
    # The citadel's east wall is at 107.5875; the bridge is due east of it.
    expected = haversine_m(*TRUONG_TIEN_BRIDGE, 107.5875, TRUONG_TIEN_BRIDGE[1])
    assert pred.distance_m(CITADEL) == pytest.approx(expected, rel=1e-6)


def test_near_multipoint_uses_its_nearest_member() -> None:
    pred = near(IMPERIAL_CITY, "maxDistance==2000")
    multipoint = {"type": "MultiPoint", "coordinates": [THIEN_MU_PAGODA, TRUONG_TIEN_BRIDGE]}
    assert pred.distance_m(multipoint) == pytest.approx(BRIDGE_DISTANCE, rel=1e-9)


def test_near_multipolygon_uses_its_nearest_member() -> None:
    pred = near(THIEN_MU_PAGODA, "maxDistance==10")
    multipolygon = {"type": "MultiPolygon", "coordinates": [[CITADEL_RING], [THIEN_MU_RING]]}
    assert pred.distance_m(multipolygon) == 0.0
    assert pred.matches(multipolygon)


def test_near_geometry_collection_uses_its_nearest_member() -> None:
    pred = near(IMPERIAL_CITY, "maxDistance==2000")
    collection = {
        "type": "GeometryCollection",
        "geometries": [point(THIEN_MU_PAGODA), point(TRUONG_TIEN_BRIDGE)],
    }
    assert pred.distance_m(collection) == pytest.approx(BRIDGE_DISTANCE, rel=1e-9)


def test_distance_m_point_to_point_is_haversine() -> None:
    pred = near(IMPERIAL_CITY, "maxDistance==1")
    assert pred.distance_m(point(THIEN_MU_PAGODA)) == haversine_m(*IMPERIAL_CITY, *THIEN_MU_PAGODA)


@pytest.mark.parametrize(
    "geometry", [point(THIEN_MU_PAGODA), PERFUME_RIVER, CITADEL, DONG_BA], ids=lambda g: g["type"]
)
def test_distance_m_is_the_same_for_wkb_and_geojson(geometry: dict[str, Any]) -> None:
    pred = near(TRUONG_TIEN_BRIDGE, "maxDistance==1")
    assert pred.distance_m(geometry_to_wkb(geometry)) == pred.distance_m(geometry)


def test_distance_m_to_a_point_across_the_antimeridian() -> None:
    pred = near([179.99, 0.0], "maxDistance==5000")
    assert pred.distance_m(point([-179.99, 0.0])) == pytest.approx(2_223.9, abs=0.1)


def test_distance_m_to_a_line_across_the_antimeridian() -> None:
    pred = near([179.99, 0.0], "maxDistance==5000")
    line = {"type": "LineString", "coordinates": [[-179.99, -1.0], [-179.99, 1.0]]}
    assert pred.distance_m(line) == pytest.approx(2_223.9, abs=0.1)
    assert pred.matches_wkb(geometry_to_wkb(line))


def test_distance_m_near_the_north_pole() -> None:
    pred = near([0.0, 89.9], "maxDistance==100000")
    # Edges are straight in lon/lat, so along this parallel the nearest point is lon 90.
    line = {"type": "LineString", "coordinates": [[90.0, 89.9], [100.0, 89.9]]}
    expected = haversine_m(0.0, 89.9, 90.0, 89.9)
    assert pred.distance_m(line) == pytest.approx(expected, rel=1e-9)


def test_distance_m_for_polygon_query_is_between_nearest_points() -> None:
    pred = predicate("intersects", CITADEL)
    expected = haversine_m(*TRUONG_TIEN_BRIDGE, 107.5875, TRUONG_TIEN_BRIDGE[1])
    assert pred.distance_m(point(TRUONG_TIEN_BRIDGE)) == pytest.approx(expected, rel=1e-6)


@settings(max_examples=200, deadline=None, database=None)
@given(
    lon=st.floats(-170, 170),
    lat=st.floats(-60, 60),
    bearings=st.tuples(st.floats(0, 360), st.floats(0, 360)),
    ranges=st.tuples(st.floats(0, 50_000), st.floats(0, 50_000)),
)
def test_distance_to_linestring_is_within_half_a_percent_up_to_50_km(
    lon: float, lat: float, bearings: tuple[float, float], ranges: tuple[float, float]
) -> None:
    a = destination(lon, lat, bearings[0], ranges[0])
    b = destination(lon, lat, bearings[1], ranges[1])
    assume(math.dist(a, b) > 1e-6)
    expected = segment_distance(lon, lat, a, b)
    got = near([lon, lat], "maxDistance==1").distance_m(
        {"type": "LineString", "coordinates": [a, b]}
    )
    # Never below the true minimum (it is the distance to a real point of the line) ...
    assert got >= expected - 1e-6
    # ... and at most 0.5 % (plus 1 mm) above it.
    assert got <= expected * 1.005 + 1e-3


# --- topological relations ----------------------------------------------------------------------

MULTI_INSIDE = {"type": "MultiPoint", "coordinates": [IMPERIAL_CITY, [107.5700, 16.4700]]}
MULTI_SPLIT = {"type": "MultiPoint", "coordinates": [IMPERIAL_CITY, THIEN_MU_PAGODA]}
MULTI_OUTSIDE = {"type": "MultiPoint", "coordinates": [THIEN_MU_PAGODA, TRUONG_TIEN_BRIDGE]}
MULTILINE_INSIDE = {
    "type": "MultiLineString",
    "coordinates": [INNER_PATH["coordinates"], [[107.5700, 16.4650], [107.5700, 16.4800]]],
}
MULTILINE_RIVER_AND_WALK = {
    "type": "MultiLineString",
    "coordinates": [PERFUME_RIVER["coordinates"], WALK_TO_BRIDGE["coordinates"]],
}
MULTIPOLYGON_CITADEL_AND_PAGODA = {
    "type": "MultiPolygon",
    "coordinates": [[CITADEL_RING], [THIEN_MU_RING]],
}
MULTIPOLYGON_ENCLOSURE_AND_PAGODA = {
    "type": "MultiPolygon",
    "coordinates": [[ENCLOSURE_RING], [THIEN_MU_RING]],
}
MULTIPOLYGON_OUTSIDE = {
    "type": "MultiPolygon",
    "coordinates": [[THIEN_MU_RING], [box(107.6000, 16.4500, 107.6100, 16.4600)]],
}
MULTIPOLYGON_DONG_BA_AND_PAGODA = {
    "type": "MultiPolygon",
    "coordinates": [[DONG_BA_RING], [THIEN_MU_RING]],
}
CITADEL_SHIFTED_START = {"type": "Polygon", "coordinates": [CITADEL_RING[2:] + CITADEL_RING[1:3]]}
CITADEL_REVERSED = {"type": "Polygon", "coordinates": [CITADEL_RING[::-1]]}
WALK_REVERSED = {"type": "LineString", "coordinates": WALK_TO_BRIDGE["coordinates"][::-1]}
EAST_WEST_A = {"type": "LineString", "coordinates": [[107.5600, 16.4700], [107.5800, 16.4700]]}
EAST_WEST_B = {"type": "LineString", "coordinates": [[107.5700, 16.4700], [107.5900, 16.4700]]}

RELATION_CASES = [
    # within: the candidate lies inside the query geometry
    ("within", CITADEL, point(IMPERIAL_CITY), True, "point_inside_polygon"),
    ("within", CITADEL, point(TRUONG_TIEN_BRIDGE), False, "point_outside_polygon"),
    ("within", CITADEL, point([107.5650, 16.4700]), False, "point_on_polygon_boundary"),
    ("within", CITADEL, INNER_PATH, True, "linestring_inside_polygon"),
    ("within", CITADEL, WALK_TO_BRIDGE, False, "linestring_leaving_polygon"),
    ("within", CITADEL, ENCLOSURE, True, "polygon_inside_polygon"),
    ("within", CITADEL, DONG_BA, False, "polygon_straddling_polygon"),
    ("within", CITADEL, MULTI_INSIDE, True, "multipoint_inside_polygon"),
    ("within", CITADEL, MULTI_SPLIT, False, "multipoint_partly_outside_polygon"),
    ("within", CITADEL, MULTILINE_INSIDE, True, "multilinestring_inside_polygon"),
    ("within", CITADEL, MULTIPOLYGON_ENCLOSURE_AND_PAGODA, False, "multipolygon_partly_outside"),
    ("within", MULTIPOLYGON_CITADEL_AND_PAGODA, point(THIEN_MU_PAGODA), True, "in_multipolygon"),
    ("within", MULTIPOLYGON_CITADEL_AND_PAGODA, MULTI_SPLIT, True, "multipoint_in_multipolygon"),
    ("within", WALK_TO_BRIDGE, point(TRUONG_TIEN_BRIDGE), False, "line_endpoint_is_boundary"),
    # contains: the candidate contains the query geometry
    ("contains", point(IMPERIAL_CITY), CITADEL, True, "polygon_contains_point"),
    ("contains", point(TRUONG_TIEN_BRIDGE), CITADEL, False, "polygon_lacks_point"),
    ("contains", INNER_PATH, CITADEL, True, "polygon_contains_linestring"),
    ("contains", ENCLOSURE, MULTIPOLYGON_CITADEL_AND_PAGODA, True, "multipolygon_contains"),
    ("contains", ENCLOSURE, point(IMPERIAL_CITY), False, "point_cannot_contain_polygon"),
    ("contains", point(IMPERIAL_CITY), MULTI_SPLIT, True, "multipoint_contains_member"),
    ("contains", MULTI_SPLIT, MULTI_INSIDE, False, "multipoint_lacks_member"),
    ("contains", point(IMPERIAL_CITY), INNER_PATH, False, "linestring_misses_point"),
    # intersects
    ("intersects", CITADEL, WALK_TO_BRIDGE, True, "linestring_crossing_wall"),
    ("intersects", CITADEL, PERFUME_RIVER, False, "river_outside_citadel"),
    ("intersects", CITADEL, point(IMPERIAL_CITY), True, "point_inside"),
    ("intersects", CITADEL, point(TRUONG_TIEN_BRIDGE), False, "point_outside"),
    ("intersects", CITADEL, DONG_BA, True, "polygons_overlapping"),
    ("intersects", CITADEL, MULTILINE_RIVER_AND_WALK, True, "multilinestring_one_member"),
    ("intersects", CITADEL, MULTI_OUTSIDE, False, "multipoint_outside"),
    ("intersects", CITADEL, MULTIPOLYGON_OUTSIDE, False, "multipolygon_outside"),
    ("intersects", WALK_TO_BRIDGE, point(IMPERIAL_CITY), True, "line_endpoint"),
    ("intersects", MULTI_SPLIT, THIEN_MU_GROUNDS, True, "multipoint_query_hits_grounds"),
    # equals: geometric equality
    ("equals", point(IMPERIAL_CITY), point(IMPERIAL_CITY), True, "same_point"),
    ("equals", point(IMPERIAL_CITY), point([107.5786, 16.46981]), False, "nearby_point"),
    ("equals", CITADEL, CITADEL_SHIFTED_START, True, "ring_with_other_start"),
    ("equals", CITADEL, CITADEL_REVERSED, True, "ring_with_other_orientation"),
    ("equals", CITADEL, ENCLOSURE, False, "different_polygon"),
    ("equals", WALK_TO_BRIDGE, WALK_REVERSED, True, "reversed_linestring"),
    (
        "equals",
        MULTI_SPLIT,
        {"type": "MultiPoint", "coordinates": MULTI_SPLIT["coordinates"][::-1]},
        True,
        "multipoint_any_order",
    ),
    (
        "equals",
        MULTIPOLYGON_CITADEL_AND_PAGODA,
        MULTIPOLYGON_CITADEL_AND_PAGODA,
        True,
        "same_multipolygon",
    ),
    ("equals", MULTILINE_INSIDE, INNER_PATH, False, "multilinestring_vs_member"),
    # disjoint
    ("disjoint", CITADEL, PERFUME_RIVER, True, "river_outside_citadel"),
    ("disjoint", CITADEL, point(THIEN_MU_PAGODA), True, "pagoda_outside"),
    ("disjoint", CITADEL, WALK_TO_BRIDGE, False, "linestring_crossing_wall"),
    ("disjoint", CITADEL, point(IMPERIAL_CITY), False, "point_inside"),
    ("disjoint", CITADEL, MULTIPOLYGON_OUTSIDE, True, "multipolygon_outside"),
    ("disjoint", CITADEL, DONG_BA, False, "polygons_overlapping"),
    ("disjoint", CITADEL, MULTI_SPLIT, False, "multipoint_partly_inside"),
    # overlaps: same dimension, interiors meet, neither contains the other
    ("overlaps", CITADEL, DONG_BA, True, "polygons_straddling"),
    ("overlaps", CITADEL, ENCLOSURE, False, "polygon_inside"),
    ("overlaps", CITADEL, THIEN_MU_GROUNDS, False, "polygons_apart"),
    ("overlaps", CITADEL, WALK_TO_BRIDGE, False, "different_dimension"),
    ("overlaps", CITADEL, MULTIPOLYGON_DONG_BA_AND_PAGODA, True, "multipolygon_straddling"),
    ("overlaps", EAST_WEST_A, EAST_WEST_B, True, "collinear_linestrings"),
    ("overlaps", MULTI_SPLIT, MULTI_INSIDE, True, "multipoints_sharing_one"),
    ("overlaps", CITADEL, CITADEL, False, "equal_polygons"),
]


@pytest.mark.parametrize(
    ("georel", "query_geometry", "candidate", "expected"),
    [case[:4] for case in RELATION_CASES],
    ids=[f"{case[0]}-{case[4]}" for case in RELATION_CASES],
)
def test_relation_matches_geojson_candidate(
    georel: str, query_geometry: dict[str, Any], candidate: dict[str, Any], expected: bool
) -> None:
    assert predicate(georel, query_geometry).matches(candidate) is expected


@pytest.mark.parametrize(
    ("georel", "query_geometry", "candidate", "expected"),
    [case[:4] for case in RELATION_CASES],
    ids=[f"{case[0]}-{case[4]}" for case in RELATION_CASES],
)
def test_relation_matches_wkb_candidate(
    georel: str, query_geometry: dict[str, Any], candidate: dict[str, Any], expected: bool
) -> None:
    assert predicate(georel, query_geometry).matches_wkb(geometry_to_wkb(candidate)) is expected


def test_relations_ignore_altitude() -> None:
    assert predicate("within", CITADEL).matches(point([*IMPERIAL_CITY, 25.0]))


def test_relation_with_geometry_collection_candidate() -> None:
    collection = {"type": "GeometryCollection", "geometries": [point(IMPERIAL_CITY), PERFUME_RIVER]}
    assert predicate("intersects", CITADEL).matches(collection)
    assert not predicate("within", CITADEL).matches(collection)


def test_matches_rejects_invalid_candidate() -> None:
    with pytest.raises(BadRequestData):
        predicate("within", CITADEL).matches(point([107.5786, 95.0]))


# --- bbox -------------------------------------------------------------------------------------


@pytest.mark.parametrize("georel", ["within", "contains", "intersects", "equals", "overlaps"])
def test_bbox_of_relation_query_is_the_query_bounds(georel: str) -> None:
    assert predicate(georel, CITADEL).bbox() == (107.5650, 16.4620, 107.5875, 16.4820)


def test_bbox_is_none_for_disjoint() -> None:
    assert predicate("disjoint", CITADEL).bbox() is None


def test_bbox_is_none_for_near_with_only_min_distance() -> None:
    assert near(IMPERIAL_CITY, "minDistance==100").bbox() is None


def test_near_bbox_widens_longitude_by_cos_latitude() -> None:
    bbox = near(IMPERIAL_CITY, "maxDistance==1000").bbox()
    assert bbox is not None
    half_lat = (bbox[3] - bbox[1]) / 2
    half_lon = (bbox[2] - bbox[0]) / 2
    assert half_lat == pytest.approx(1000 / 111_195.08, rel=1e-6)
    assert half_lon == pytest.approx(half_lat / math.cos(math.radians(IMPERIAL_CITY[1])), rel=1e-6)


def test_near_bbox_is_centred_on_the_query_point() -> None:
    bbox = near(IMPERIAL_CITY, "maxDistance==1000").bbox()
    assert bbox is not None
    assert ((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2) == pytest.approx(IMPERIAL_CITY)


def test_near_bbox_with_min_and_max_distance_uses_max_distance() -> None:
    both = near(IMPERIAL_CITY, "maxDistance==1000;minDistance==500").bbox()
    assert both == near(IMPERIAL_CITY, "maxDistance==1000").bbox()


def test_near_bbox_reaching_a_pole_spans_all_longitudes() -> None:
    bbox = near([107.5786, 89.99], "maxDistance==5000").bbox()
    assert bbox is not None
    assert (bbox[0], bbox[2], bbox[3]) == (-180.0, 180.0, 90.0)


def test_near_bbox_crossing_the_antimeridian_spans_all_longitudes() -> None:
    bbox = near([179.999, 0.0], "maxDistance==1000").bbox()
    assert bbox is not None
    assert (bbox[0], bbox[2]) == (-180.0, 180.0)
    assert bbox[1] == pytest.approx(-0.009, abs=1e-3)


def test_near_bbox_of_half_the_globe_is_the_whole_world() -> None:
    bbox = near(IMPERIAL_CITY, "maxDistance==30000000").bbox()
    assert bbox == (-180.0, -90.0, 180.0, 90.0)


@settings(max_examples=400, deadline=None, database=None)
@given(
    lon=st.floats(-180, 180),
    lat=st.floats(-90, 90),
    max_distance=st.floats(0, 3_000_000),
    bearing=st.floats(0, 360),
    fraction=st.floats(0, 1.2),
    as_line=st.booleans(),
)
def test_bbox_intersects_the_bounds_of_every_near_match(
    lon: float,
    lat: float,
    max_distance: float,
    bearing: float,
    fraction: float,
    as_line: bool,
) -> None:
    pred = near([lon, lat], f"maxDistance=={max_distance!r}")
    target = destination(lon, lat, bearing, max_distance * fraction)
    if as_line:
        other = destination(lon, lat, bearing + 90.0, max_distance * 2)
        assume(math.dist(target, other) > 1e-9 and abs(target[0] - other[0]) < 180)
        candidate: dict[str, Any] = {"type": "LineString", "coordinates": [target, other]}
    else:
        candidate = point(target)
    bbox = pred.bbox()
    assert bbox is not None
    if pred.matches_wkb(geometry_to_wkb(candidate)):
        assert rects_intersect(bbox, geometry_bounds(candidate))


hue_lon = st.floats(107.50, 107.65)
hue_lat = st.floats(16.40, 16.55)


@st.composite
def hue_boxes(draw: st.DrawFn) -> dict[str, Any]:
    x1, x2 = sorted((draw(hue_lon), draw(hue_lon)))
    y1, y2 = sorted((draw(hue_lat), draw(hue_lat)))
    assume(x2 - x1 > 1e-6 and y2 - y1 > 1e-6)
    return {"type": "Polygon", "coordinates": [box(x1, y1, x2, y2)]}


@settings(max_examples=300, deadline=None, database=None)
@given(
    georel=st.sampled_from(["within", "contains", "intersects", "equals", "overlaps"]),
    query_geometry=hue_boxes(),
    candidate=st.one_of(hue_boxes(), st.builds(lambda x, y: point([x, y]), hue_lon, hue_lat)),
)
def test_bbox_intersects_the_bounds_of_every_relation_match(
    georel: str, query_geometry: dict[str, Any], candidate: dict[str, Any]
) -> None:
    pred = predicate(georel, query_geometry)
    bbox = pred.bbox()
    assert bbox is not None
    if pred.matches(candidate):
        assert rects_intersect(bbox, geometry_bounds(candidate))
