"""GeoJSON geometries and the NGSI-LD geo-query language (ETSI GS CIM 009 v1.8, 4.7 and 4.10).

Three layers, all pure (no I/O):

* :func:`validate_geometry` checks a GeoJSON geometry (RFC 7946) used as a GeoProperty value
  or as a query geometry, and returns a normalised copy.
* :func:`parse_geo_query` turns the ``georel`` / ``geometry`` / ``coordinates`` /
  ``geoproperty`` parameters (URL query, POST query body, subscription ``geoQ``) into a
  :class:`GeoQuery`.
* :func:`urbanstack.ngsild.geo_match.compile_geo_query` turns a :class:`GeoQuery` into a
  ``GeoPredicate``, built once
  per query and then evaluated against many stored candidates (WKB, see
  :func:`geometry_to_wkb`), with an optional R*Tree prefilter rectangle (:meth:`GeoPredicate.bbox`).

Conventions (where the specification is silent, the choice is documented here):

* Positions are ``[longitude, latitude]`` or ``[longitude, latitude, altitude]`` in WGS84
  degrees. Altitude is kept in the normalised GeoJSON but ignored by every geo-query: the
  stored WKB is 2-D and all relations and distances are computed on longitude/latitude.
* Topological relations (``within``, ``contains``, ``intersects``, ``equals``, ``disjoint``,
  ``overlaps``) follow the OGC Simple Features / DE-9IM definitions evaluated in the
  longitude/latitude plane, i.e. edges are straight lines in lon/lat, as RFC 7946 3.1.1
  prescribes. Consequences: a point on a polygon's boundary is *not* ``within`` it;
  ``overlaps`` only holds between geometries of the same dimension; ``equals`` is geometric
  equality (vertex order, ring start and orientation do not matter). Geometries are not
  wrapped across the antimeridian; RFC 7946 3.1.9 says such geometries should be split.
* ``near`` measures great-circle distance on a sphere of radius :data:`EARTH_RADIUS_M` (the
  IUGG mean radius). Versus the WGS84 ellipsoid this errs by at most about 0.56 %
  (meridional distances near the equator); at Huế's latitude about -0.48 % north-south
  and +0.14 % east-west. ``maxDistance`` and ``minDistance`` are both inclusive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import shapely
from shapely.geometry.base import BaseGeometry

from urbanstack.ngsild.errors import BadRequestData

__all__ = [
    "EARTH_RADIUS_M",
    "GEOMETRY_TYPES",
    "GEORELS",
    "LOCATION_IRI",
    "QUERY_GEOMETRY_TYPES",
    "GeoQuery",
    "geometry_bounds",
    "geometry_to_wkb",
    "parse_geo_query",
    "parse_geometry",
    "validate_geometry",
]

LOCATION_IRI: Final = "https://uri.etsi.org/ngsi-ld/location"
"""Expanded IRI of the core ``location`` GeoProperty, the default ``geoproperty``."""

EARTH_RADIUS_M: Final = 6_371_008.8
"""Mean Earth radius (IUGG) in metres, used for every distance."""

GEORELS: Final = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")
"""The geo-relationships of clause 4.10."""

QUERY_GEOMETRY_TYPES: Final = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
)
"""Geometry types allowed as a query ``geometry``."""

GEOMETRY_TYPES: Final = (*QUERY_GEOMETRY_TYPES, "GeometryCollection")
"""Geometry types allowed as a GeoProperty value."""

_DISTANCE_KEYS: Final = ("maxDistance", "minDistance")
_DISTANCE_RE: Final = re.compile(r"[+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# A 2-D point as written by geometry_to_wkb: little-endian flag, type 1, then x and y.
# Widening of the near-query rectangle, in degrees (~0.1 mm) plus a relative 1e-9, so that
# rounding never drops a point that lies exactly at maxDistance.


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, (list, tuple)):
        return f"an array of {len(value)} element(s)"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _where(path: tuple[object, ...]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


class _Parser:
    """Validates GeoJSON coordinates, naming the offending member in every error."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, path: tuple[object, ...], message: str) -> BadRequestData:
        where = _where(path)
        return BadRequestData(f"{self.label}: {where + ': ' if where else ''}{message}")

    def position(self, value: object, path: tuple[object, ...]) -> list[float]:
        if not isinstance(value, (list, tuple)):
            raise self.fail(
                path, f"a position must be an array of 2 or 3 numbers, got {_describe(value)}"
            )
        if len(value) not in (2, 3):
            raise self.fail(
                path,
                "a position must have 2 or 3 numbers [longitude, latitude(, altitude)], "
                f"got {len(value)}",
            )
        out: list[float] = []
        for i, number in enumerate(value):
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise self.fail((*path, i), f"must be a number, got {_describe(number)}")
            try:
                f = float(number)
            except OverflowError:
                f = math.inf
            if not math.isfinite(f):
                raise self.fail((*path, i), f"must be a finite number, got {number!r}")
            out.append(f)
        lon, lat = out[0], out[1]
        if not -180.0 <= lon <= 180.0:
            raise self.fail(
                path,
                f"longitude {lon!r} is outside [-180, 180] "
                "(GeoJSON positions are [longitude, latitude])",
            )
        if not -90.0 <= lat <= 90.0:
            swapped = " (latitude and longitude swapped?)" if -90.0 <= lon <= 90.0 else ""
            raise self.fail(path, f"latitude {lat!r} is outside [-90, 90]{swapped}")
        return out

    def array(self, value: object, path: tuple[object, ...], what: str) -> Sequence[object]:
        if not isinstance(value, (list, tuple)):
            raise self.fail(path, f"{what} must be an array, got {_describe(value)}")
        return value

    def positions(
        self, value: object, path: tuple[object, ...], minimum: int, what: str
    ) -> list[list[float]]:
        items = self.array(value, path, what)
        if len(items) < minimum:
            raise self.fail(path, f"{what} needs at least {minimum} position(s), got {len(items)}")
        return [self.position(p, (*path, i)) for i, p in enumerate(items)]

    def ring(self, value: object, path: tuple[object, ...]) -> list[list[float]]:
        ring = self.positions(value, path, 4, "a linear ring")
        if ring[0] != ring[-1]:
            raise self.fail(
                path,
                "a linear ring must be closed: its first and last positions must be identical",
            )
        return ring

    def polygon(self, value: object, path: tuple[object, ...]) -> list[list[list[float]]]:
        rings = self.array(value, path, "Polygon coordinates")
        if not rings:
            raise self.fail(path, "a Polygon needs at least one linear ring")
        return [self.ring(r, (*path, i)) for i, r in enumerate(rings)]

    def coordinates(self, kind: str, value: object, path: tuple[object, ...]) -> list[Any]:
        if kind == "Point":
            return self.position(value, path)
        if kind == "MultiPoint":
            return self.positions(value, path, 1, "MultiPoint coordinates")
        if kind == "LineString":
            return self.positions(value, path, 2, "a LineString")
        if kind == "Polygon":
            return self.polygon(value, path)
        members = self.array(value, path, f"{kind} coordinates")
        if not members:
            raise self.fail(path, f"a {kind} needs at least one member")
        if kind == "MultiLineString":
            return [self.positions(m, (*path, i), 2, "a LineString") for i, m in enumerate(members)]
        return [self.polygon(m, (*path, i)) for i, m in enumerate(members)]  # MultiPolygon

    def geometry(
        self, value: object, path: tuple[object, ...], allowed: Sequence[str]
    ) -> tuple[dict[str, Any], BaseGeometry]:
        if not isinstance(value, dict):
            raise self.fail(path, f"a GeoJSON geometry must be an object, got {_describe(value)}")
        kind = value.get("type")
        if kind not in allowed:
            hint = ""
            if isinstance(kind, str):
                for name in allowed:
                    if name.lower() == kind.lower():
                        hint = f" (did you mean {name!r}?)"
            got = "no 'type'" if kind is None else repr(kind)
            raise self.fail(
                path, f"unsupported geometry type {got}{hint}; expected one of {', '.join(allowed)}"
            )
        if kind == "GeometryCollection":
            if "geometries" not in value:
                raise self.fail(path, "a GeometryCollection needs a 'geometries' member")
            members = self.array(value["geometries"], (*path, "geometries"), "'geometries'")
            if not members:
                raise self.fail((*path, "geometries"), "must not be empty")
            parsed = [
                self.geometry(m, (*path, "geometries", i), QUERY_GEOMETRY_TYPES)
                for i, m in enumerate(members)
            ]
            normalised: dict[str, Any] = {
                "type": kind,
                "geometries": [geojson for geojson, _ in parsed],
            }
            return normalised, shapely.GeometryCollection([shape for _, shape in parsed])
        if "coordinates" not in value:
            raise self.fail(path, f"a {kind} needs a 'coordinates' member")
        coords = self.coordinates(kind, value["coordinates"], (*path, "coordinates"))
        shape = _build(kind, coords)
        if kind != "Point" and not shapely.is_valid(shape):
            reason = shapely.is_valid_reason(shape)
            raise self.fail(path, f"invalid {kind}: {reason}")
        return {"type": kind, "coordinates": coords}, shape


def _xy(positions: list[list[float]]) -> list[tuple[float, float]]:
    return [(p[0], p[1]) for p in positions]


def _build(kind: str, coords: list[Any]) -> BaseGeometry:
    """Build a 2-D shapely geometry from validated coordinates (altitude dropped)."""
    if kind == "Point":
        return shapely.Point(coords[0], coords[1])
    if kind == "MultiPoint":
        return shapely.MultiPoint(_xy(coords))
    if kind == "LineString":
        return shapely.LineString(_xy(coords))
    if kind == "MultiLineString":
        return shapely.MultiLineString([_xy(line) for line in coords])
    if kind == "Polygon":
        return shapely.Polygon(_xy(coords[0]), [_xy(hole) for hole in coords[1:]])
    return shapely.MultiPolygon(
        [shapely.Polygon(_xy(p[0]), [_xy(h) for h in p[1:]]) for p in coords]
    )


def parse_geometry(
    value: object, *, allow_collection: bool = True, label: str = "Invalid GeoJSON geometry"
) -> tuple[dict[str, Any], BaseGeometry]:
    allowed = GEOMETRY_TYPES if allow_collection else QUERY_GEOMETRY_TYPES
    return _Parser(label).geometry(value, (), allowed)


def validate_geometry(value: object, *, allow_collection: bool = True) -> dict[str, Any]:
    """Validate a GeoJSON geometry and return a normalised copy; raise BadRequestData if invalid.

    Accepted types: Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon and
    (unless ``allow_collection`` is false, as for query geometries) a non-nested, non-empty
    GeometryCollection. Every position has 2 or 3 finite numbers (booleans are not numbers),
    longitude in [-180, 180] and latitude in [-90, 90]. A LineString has >= 2 positions; a
    linear ring has >= 4 positions and is closed; Multi* geometries are non-empty.
    (Multi)Polygons and LineStrings must also be valid in the OGC sense, checked in the
    lon/lat plane (no self-intersecting rings, holes inside their shell, no overlapping
    polygon members, no zero-length LineString) so that every relation is well-defined;
    MongoDB-based brokers reject these too. Ring orientation is not enforced (RFC 7946 7.1).

    The copy holds only ``type`` and ``coordinates`` (or ``geometries``) with every number
    converted to ``float``; foreign members and ``bbox`` are dropped. The input is not modified.
    """
    if isinstance(value, dict) and value.get("type") == "Point" and "coordinates" in value:
        # most stored geometries are Points: validated without building a shapely object
        parser = _Parser("Invalid GeoJSON geometry")
        coords = parser.coordinates("Point", value["coordinates"], ("coordinates",))
        return {"type": "Point", "coordinates": coords}
    return parse_geometry(value, allow_collection=allow_collection)[0]


def geometry_to_wkb(geojson: dict[str, Any]) -> bytes:
    """Validate ``geojson`` and return its 2-D little-endian WKB (altitude dropped), for storage.

    A Point is always the 21-byte ``01 01000000 <lon> <lat>`` form, which
    :meth:`GeoPredicate.matches_wkb` decodes without shapely.
    """
    shape = parse_geometry(geojson)[1]
    return bytes(shapely.to_wkb(shape, output_dimension=2, byte_order=1, include_srid=False))


def geometry_bounds(geojson: dict[str, Any]) -> tuple[float, float, float, float]:
    """Validate ``geojson`` and return its bounds ``(minx, miny, maxx, maxy)`` in degrees."""
    shape = parse_geometry(geojson)[1]
    minx, miny, maxx, maxy = shape.bounds
    return (float(minx), float(miny), float(maxx), float(maxy))


# ---------------------------------------------------------------------------------------------
# Query parsing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GeoQuery:
    """A parsed NGSI-LD geo-query (clause 4.10).

    ``georel`` is the bare relation name; for ``near`` at least one of ``max_distance`` /
    ``min_distance`` (metres) is set, otherwise both are None. ``geometry`` is validated
    GeoJSON (never a GeometryCollection); ``geoproperty`` is the expanded attribute IRI.
    """

    georel: str
    max_distance: float | None
    min_distance: float | None
    geometry: dict[str, Any] = field(hash=False)
    geoproperty: str

    @property
    def georel_text(self) -> str:
        """The ``georel`` string in NGSI-LD syntax, e.g. ``near;maxDistance==500``."""
        parts = [self.georel]
        for key, value in (("maxDistance", self.max_distance), ("minDistance", self.min_distance)):
            if value is not None:
                parts.append(f"{key}=={int(value) if value.is_integer() else value!r}")
        return ";".join(parts)


def _parse_distance(key: str, text: str) -> float:
    if not text:
        raise BadRequestData(
            f"Invalid geo-query: '{key}' needs a value in metres, e.g. near;{key}==500"
        )
    if text.startswith("-"):
        raise BadRequestData(f"Invalid geo-query: '{key}' must not be negative, got {text!r}")
    if not _DISTANCE_RE.fullmatch(text):
        raise BadRequestData(
            f"Invalid geo-query: '{key}' must be a non-negative number of metres, got {text!r}"
        )
    value = float(text)
    if not math.isfinite(value):
        raise BadRequestData(f"Invalid geo-query: '{key}' must be finite, got {text!r}")
    return value


def _parse_georel(text: str) -> tuple[str, float | None, float | None]:
    parts = [p.strip() for p in text.split(";")]
    name = parts[0]
    if name not in GEORELS:
        raise BadRequestData(
            f"Invalid geo-query: unknown georel {name!r}; expected one of {', '.join(GEORELS)}"
        )
    modifiers = parts[1:]
    if name != "near":
        if modifiers:
            raise BadRequestData(
                f"Invalid geo-query: georel {name!r} takes no modifiers, "
                f"got {';'.join(modifiers)!r}"
            )
        return name, None, None
    if not modifiers:
        raise BadRequestData(
            "Invalid geo-query: georel 'near' needs maxDistance and/or minDistance, "
            "e.g. near;maxDistance==500"
        )
    found: dict[str, float] = {}
    for modifier in modifiers:
        key, sep, value = modifier.partition("==")
        key = key.strip()
        if not sep:
            hint = ""
            if key.startswith(_DISTANCE_KEYS) or ":" in modifier or "=" in modifier:
                hint = " (the syntax is maxDistance==<metres> with a double '=')"
            raise BadRequestData(f"Invalid geo-query: invalid near modifier {modifier!r}{hint}")
        if key not in _DISTANCE_KEYS:
            raise BadRequestData(
                f"Invalid geo-query: unknown near modifier {key!r}; "
                "expected maxDistance or minDistance"
            )
        if key in found:
            raise BadRequestData(f"Invalid geo-query: {key!r} given more than once")
        found[key] = _parse_distance(key, value.strip())
    max_d = found.get("maxDistance")
    min_d = found.get("minDistance")
    if max_d is not None and min_d is not None and min_d > max_d:
        raise BadRequestData(
            f"Invalid geo-query: minDistance ({min_d:g}) is greater than maxDistance ({max_d:g})"
        )
    return name, max_d, min_d


def _decode_coordinates(coordinates: object) -> list[Any]:
    if isinstance(coordinates, str):
        text = coordinates.strip()
        if not text:
            raise BadRequestData("Invalid geo-query: 'coordinates' is empty")
        try:
            decoded = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequestData(
                f"Invalid geo-query: 'coordinates' is not valid JSON ({exc}); "
                "expected a JSON array such as [107.5786,16.4698]"
            ) from None
    else:
        decoded = coordinates
    if isinstance(decoded, tuple):
        decoded = list(decoded)
    if not isinstance(decoded, list):
        raise BadRequestData(
            f"Invalid geo-query: 'coordinates' must be a JSON array, got {_describe(decoded)}"
        )
    return decoded


def parse_geo_query(
    georel: str | None,
    geometry: str | None,
    coordinates: str | list[Any] | None,
    geoproperty: str | None,
    expand: Callable[[str], str],
) -> GeoQuery | None:
    """Parse the geo-query parameters; None if none of georel/geometry/coordinates is given.

    ``coordinates`` is JSON text (URL parameter) or an already decoded array (POST query body,
    subscription ``geoQ``). ``georel`` is one of :data:`GEORELS`; ``near`` takes
    ``maxDistance==<m>`` and/or ``minDistance==<m>`` separated by ``;`` (the ABNF of 4.10
    allows one; both together is accepted as an extension, min <= max), and, like Orion-LD,
    requires a Point geometry. ``geometry`` is case-sensitive, as in the specification.
    ``geoproperty`` defaults to :data:`LOCATION_IRI`; a given name is passed to ``expand``.
    A ``geoproperty`` without the other three is ignored (it only qualifies a geo-query).
    Raise BadRequestData when only some of the three are given or any part is invalid.
    """
    given = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
    if all(value is None for value in given.values()):
        return None
    missing = [name for name, value in given.items() if value is None]
    if missing:
        present = [name for name in given if name not in missing]
        raise BadRequestData(
            f"Incomplete geo-query: {' and '.join(repr(m) for m in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing "
            f"(got {' and '.join(repr(p) for p in present)}); "
            "georel, geometry and coordinates must be given together"
        )
    if not isinstance(georel, str):
        raise BadRequestData(
            f"Invalid geo-query: 'georel' must be a string, got {_describe(georel)}"
        )
    if not isinstance(geometry, str):
        raise BadRequestData(
            f"Invalid geo-query: 'geometry' must be a string, got {_describe(geometry)}"
        )
    name, max_d, min_d = _parse_georel(georel)
    if geometry not in QUERY_GEOMETRY_TYPES:
        hint = ""
        for kind in QUERY_GEOMETRY_TYPES:
            if kind.lower() == geometry.lower():
                hint = f" (did you mean {kind!r}?)"
        raise BadRequestData(
            f"Invalid geo-query: unsupported geometry {geometry!r}{hint}; "
            f"expected one of {', '.join(QUERY_GEOMETRY_TYPES)}"
        )
    if name == "near" and geometry != "Point":
        raise BadRequestData(
            f"Invalid geo-query: georel 'near' requires geometry 'Point', got {geometry!r}"
        )
    decoded = _decode_coordinates(coordinates)
    geojson, _ = parse_geometry(
        {"type": geometry, "coordinates": decoded},
        allow_collection=False,
        label="Invalid geo-query",
    )
    return GeoQuery(
        georel=name,
        max_distance=max_d,
        min_distance=min_d,
        geometry=geojson,
        geoproperty=_expand_geoproperty(geoproperty, expand),
    )


def _expand_geoproperty(geoproperty: object, expand: Callable[[str], str]) -> str:
    if geoproperty is None:
        return LOCATION_IRI
    if not isinstance(geoproperty, str) or not geoproperty.strip():
        raise BadRequestData(
            f"Invalid geo-query: 'geoproperty' must be a non-empty attribute name, "
            f"got {_describe(geoproperty)}"
        )
    expanded = expand(geoproperty.strip())
    if not isinstance(expanded, str) or not expanded:
        raise BadRequestData(f"Invalid geo-query: cannot expand geoproperty {geoproperty!r}")
    return expanded
