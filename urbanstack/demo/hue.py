"""The Huế demo dataset: heritage sites, stations, gauges, counters, car parks and wards as
FIWARE Smart Data Models entities (NGSI-LD core @context terms), at real coordinates.

Coordinates are WGS84, longitude first, approximate (from public maps). Flood alarm levels
are those of Decision 05/2020/QĐ-TTg for the Kim Long and Phú Ốc gauges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CITY_CENTRE = (107.5850, 16.4650)
TIME_ZONE = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class Site:
    """A place of the demo: its id suffix, names, coordinates and what it is."""

    key: str
    vi: str
    en: str
    lon: float
    lat: float
    extra: dict[str, Any] | None = None


HERITAGE = [
    Site("imperial-city", "Hoàng thành Huế (Đại Nội)", "Imperial City", 107.5786, 16.4698,
         {"kind": "Museum", "opens": "07:00", "closes": "17:30", "capacity": 9000}),
    Site("thien-mu-pagoda", "Chùa Thiên Mụ", "Thiên Mụ Pagoda", 107.5446, 16.4533,
         {"kind": "PointOfInterest", "opens": "06:00", "closes": "18:00", "capacity": 4000}),
    Site("tomb-tu-duc", "Lăng Tự Đức", "Tomb of Tự Đức", 107.5690, 16.4336,
         {"kind": "Museum", "opens": "07:00", "closes": "17:30", "capacity": 3500}),
    Site("tomb-minh-mang", "Lăng Minh Mạng", "Tomb of Minh Mạng", 107.5716, 16.3870,
         {"kind": "Museum", "opens": "07:00", "closes": "17:30", "capacity": 2500}),
    Site("tomb-khai-dinh", "Lăng Khải Định", "Tomb of Khải Định", 107.5902, 16.3988,
         {"kind": "Museum", "opens": "07:00", "closes": "17:30", "capacity": 3000}),
    Site("dong-ba-market", "Chợ Đông Ba", "Đông Ba Market", 107.5882, 16.4727,
         {"kind": "PointOfInterest", "opens": "05:00", "closes": "19:00", "capacity": 12000}),
    Site("truong-tien-bridge", "Cầu Trường Tiền", "Trường Tiền Bridge", 107.5887, 16.4684,
         {"kind": "PointOfInterest", "opens": "00:00", "closes": "23:59", "capacity": 8000}),
]  # fmt: skip

AIR_STATIONS = [
    Site("imperial-city", "Trạm Đại Nội", "Imperial City station", 107.5790, 16.4690),
    Site("dong-ba", "Trạm Đông Ba", "Đông Ba station", 107.5895, 16.4735),
    Site("phu-hoi", "Trạm Phú Hội", "Phú Hội station", 107.5975, 16.4615),
    Site("an-cuu", "Trạm An Cựu", "An Cựu station", 107.6060, 16.4540),
    Site("kim-long", "Trạm Kim Long", "Kim Long station", 107.5590, 16.4625),
]

WEATHER_STATIONS = [
    Site("hue-city", "Trạm khí tượng Huế", "Huế weather station", 107.5905, 16.4630),
    Site("phu-bai", "Trạm Phú Bài", "Phú Bài station", 107.7027, 16.4015),
]

RIVER_GAUGES = [
    Site("kim-long", "Trạm thủy văn Kim Long", "Kim Long gauge", 107.5625, 16.4651,
         {"river": "Sông Hương", "river_en": "Perfume River", "alarms": (1.0, 2.0, 3.5),
          "base": 0.55}),
    Site("phu-oc", "Trạm thủy văn Phú Ốc", "Phú Ốc gauge", 107.4939, 16.5325,
         {"river": "Sông Bồ", "river_en": "Bồ River", "alarms": (1.5, 3.0, 4.5), "base": 0.9}),
]  # fmt: skip

TRAFFIC_COUNTERS = [
    Site("truong-tien-bridge", "Cầu Trường Tiền", "Trường Tiền Bridge", 107.5883, 16.4680,
         {"lanes": 2, "capacity": 1800}),
    Site("phu-xuan-bridge", "Cầu Phú Xuân", "Phú Xuân Bridge", 107.5835, 16.4640,
         {"lanes": 4, "capacity": 3200}),
    Site("le-loi", "Đường Lê Lợi", "Lê Lợi Street", 107.5930, 16.4655,
         {"lanes": 4, "capacity": 2800}),
    Site("hung-vuong", "Đường Hùng Vương", "Hùng Vương Street", 107.6000, 16.4600,
         {"lanes": 4, "capacity": 3000}),
    Site("dap-da", "Cầu Đập Đá", "Đập Đá Bridge", 107.5975, 16.4745,
         {"lanes": 2, "capacity": 1500}),
]  # fmt: skip

CAR_PARKS = [
    Site("ngo-mon", "Bãi đỗ xe Ngọ Môn", "Ngọ Môn car park", 107.5800, 16.4660, {"spots": 220}),
    Site("dong-ba", "Bãi đỗ xe chợ Đông Ba", "Đông Ba market car park", 107.5900, 16.4718,
         {"spots": 150}),
    Site("le-loi-riverside", "Bãi đỗ xe bờ sông Lê Lợi", "Lê Lợi riverside car park",
         107.5915, 16.4668, {"spots": 120}),
    Site("thien-mu", "Bãi đỗ xe chùa Thiên Mụ", "Thiên Mụ car park", 107.5452, 16.4522,
         {"spots": 90}),
    Site("minh-mang", "Bãi đỗ xe lăng Minh Mạng", "Minh Mạng tomb car park", 107.5700, 16.3885,
         {"spots": 80}),
]  # fmt: skip

#: wards as rough polygons (lon, lat rings); good enough to colour a map, not for cadastre
WARDS = [
    ("thuan-thanh", "Phường Thuận Thành", "Thuận Thành ward",
     [(107.566, 16.470), (107.579, 16.474), (107.582, 16.463), (107.569, 16.459)]),
    ("tay-loc", "Phường Tây Lộc", "Tây Lộc ward",
     [(107.560, 16.482), (107.576, 16.486), (107.579, 16.474), (107.566, 16.470)]),
    ("dong-ba", "Phường Đông Ba", "Đông Ba ward",
     [(107.579, 16.474), (107.592, 16.478), (107.594, 16.468), (107.582, 16.463)]),
    ("kim-long", "Phường Kim Long", "Kim Long ward",
     [(107.540, 16.462), (107.566, 16.470), (107.569, 16.459), (107.545, 16.450)]),
    ("phu-hoi", "Phường Phú Hội", "Phú Hội ward",
     [(107.588, 16.466), (107.603, 16.468), (107.605, 16.458), (107.590, 16.456)]),
    ("vinh-ninh", "Phường Vĩnh Ninh", "Vĩnh Ninh ward",
     [(107.578, 16.462), (107.590, 16.456), (107.588, 16.448), (107.575, 16.452)]),
    ("an-cuu", "Phường An Cựu", "An Cựu ward",
     [(107.590, 16.456), (107.605, 16.458), (107.612, 16.447), (107.596, 16.443)]),
]  # fmt: skip


def _point(site: Site) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [site.lon, site.lat]}}


def _names(vi: str, en: str) -> dict[str, Any]:
    return {"type": "LanguageProperty", "languageMap": {"vi": vi, "en": en}}


def _prop(value: Any, unit: str | None = None) -> dict[str, Any]:
    attr: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        attr["unitCode"] = unit
    return attr


def entity_id(kind: str, key: str) -> str:
    """The demo's entity ids: ``urn:ngsi-ld:<Type>:hue-<key>``."""
    return f"urn:ngsi-ld:{kind}:hue-{key}"


def heritage_entities() -> list[dict[str, Any]]:
    """Museums and points of interest with multilingual names and opening hours."""
    out = []
    for site in HERITAGE:
        extra = site.extra or {}
        kind = extra["kind"]
        days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
        out.append(
            {
                "id": entity_id(kind, site.key),
                "type": kind,
                "name": _names(site.vi, site.en),
                "category": _prop(["heritage"] if kind == "Museum" else ["landmark"]),
                "openingHoursSpecification": _prop(
                    [{"dayOfWeek": days, "opens": extra["opens"], "closes": extra["closes"]}]
                ),
                "address": _prop({"addressLocality": "Huế", "addressCountry": "VN"}),
                "location": _point(site),
            }
        )
    return out


def station_entities() -> list[dict[str, Any]]:
    """Air-quality and weather stations, river gauges, traffic counters and car parks
    (current values come from the simulator)."""
    out: list[dict[str, Any]] = []
    for site in AIR_STATIONS:
        out.append(
            {
                "id": entity_id("AirQualityObserved", site.key),
                "type": "AirQualityObserved",
                "name": _names(site.vi, site.en),
                "location": _point(site),
            }
        )
    for site in WEATHER_STATIONS:
        out.append(
            {
                "id": entity_id("WeatherObserved", site.key),
                "type": "WeatherObserved",
                "name": _names(site.vi, site.en),
                "location": _point(site),
            }
        )
    for site in RIVER_GAUGES:
        extra = site.extra or {}
        first, second, third = extra["alarms"]
        out.append(
            {
                "id": entity_id("FloodMonitoring", site.key),
                "type": "FloodMonitoring",
                "name": _names(site.vi, site.en),
                "riverName": _names(extra["river"], extra["river_en"]),
                "alarmLevel1": _prop(first, "MTR"),
                "alarmLevel2": _prop(second, "MTR"),
                "alarmLevel3": _prop(third, "MTR"),
                "location": _point(site),
            }
        )
    for site in TRAFFIC_COUNTERS:
        extra = site.extra or {}
        out.append(
            {
                "id": entity_id("TrafficFlowObserved", site.key),
                "type": "TrafficFlowObserved",
                "name": _names(site.vi, site.en),
                "laneId": _prop(extra["lanes"]),
                "location": _point(site),
            }
        )
    for site in CAR_PARKS:
        extra = site.extra or {}
        out.append(
            {
                "id": entity_id("OffStreetParking", site.key),
                "type": "OffStreetParking",
                "name": _names(site.vi, site.en),
                "totalSpotNumber": _prop(extra["spots"]),
                "location": _point(site),
            }
        )
    return out


def ward_entities() -> list[dict[str, Any]]:
    """Wards as AdministrativeArea polygons."""
    out = []
    for key, vi, en, ring in WARDS:
        coordinates = [[list(p) for p in [*ring, ring[0]]]]
        out.append(
            {
                "id": entity_id("AdministrativeArea", key),
                "type": "AdministrativeArea",
                "name": _names(vi, en),
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Polygon", "coordinates": coordinates},
                },
            }
        )
    return out


def dataset() -> list[dict[str, Any]]:
    """Every demo entity, ready for ``POST /entityOperations/upsert``."""
    return [*heritage_entities(), *station_entities(), *ward_entities()]
