"""The operations dashboard in a real browser against a real platform."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import RESULTS, Platform, open_dashboard
from urbanstack.web.routes import STATIC_DIR as STATIC

pytestmark = pytest.mark.server

GREEN = (0, 228, 0)  # VN_AQI good
VERY_BAD = (143, 63, 151)  # VN_AQI 201-300
FLOOD_ALARM_2 = (255, 126, 0)
PARKING_FULL = (220, 0, 0)

AIR = "urn:ngsi-ld:AirQualityObserved:hue-test-dong-ba"
GAUGE = "urn:ngsi-ld:FloodMonitoring:hue-test-kim-long"
PARKING = "urn:ngsi-ld:OffStreetParking:hue-test-ngo-mon"
SITE = "urn:ngsi-ld:Museum:hue-test-imperial-city"


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def measured(value: Any, unit: str | None = None, at: datetime | None = None) -> dict[str, Any]:
    attr: dict[str, Any] = {"type": "Property", "value": value}
    attr["observedAt"] = stamp(at or datetime.now(UTC))
    if unit:
        attr["unitCode"] = unit
    return attr


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def names(vi: str, en: str) -> dict[str, Any]:
    return {"type": "LanguageProperty", "languageMap": {"vi": vi, "en": en}}


def city() -> list[dict[str, Any]]:
    """A handful of Huế entities, well apart on the map."""
    return [
        {
            "id": AIR,
            "type": "AirQualityObserved",
            "name": names("Trạm Đông Ba", "Đông Ba station"),
            "pm25": measured(12.0, "GQ"),
            "pm10": measured(30.0, "GQ"),
            "location": point(107.5895, 16.4735),
        },
        {
            "id": GAUGE,
            "type": "FloodMonitoring",
            "name": names("Trạm thủy văn Kim Long", "Kim Long gauge"),
            "riverName": names("Sông Hương", "Perfume River"),
            "alarmLevel1": {"type": "Property", "value": 1.0, "unitCode": "MTR"},
            "alarmLevel2": {"type": "Property", "value": 2.0, "unitCode": "MTR"},
            "alarmLevel3": {"type": "Property", "value": 3.5, "unitCode": "MTR"},
            "currentLevel": measured(2.4, "MTR"),
            "location": point(107.5625, 16.4651),
        },
        {
            "id": PARKING,
            "type": "OffStreetParking",
            "name": names("Bãi đỗ xe Ngọ Môn", "Ngọ Môn car park"),
            "totalSpotNumber": {"type": "Property", "value": 220},
            "availableSpotNumber": measured(4),
            "location": point(107.5800, 16.4600),
        },
        {
            "id": SITE,
            "type": "Museum",
            "name": names("Hoàng thành Huế", "Imperial City"),
            "visitorsToday": measured(1234),
            "location": point(107.5786, 16.4720),
        },
    ]


def close_to(rgb: list[int], expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, expected, strict=True))


def test_map_draws_every_entity_in_its_colour(platform: Platform, page: Any) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    platform.upsert(city())
    open_dashboard(page, platform.url)

    dash = "window.__dashboard"
    assert page.evaluate(f"{dash}.markerCount()") == 4
    assert page.evaluate(f"{dash}.markerColor('{AIR}')") == "rgb(0,228,0)"
    assert close_to(page.evaluate(f"{dash}.pixelAt('{AIR}')"), GREEN)
    assert close_to(page.evaluate(f"{dash}.pixelAt('{GAUGE}')"), FLOOD_ALARM_2)
    assert close_to(page.evaluate(f"{dash}.pixelAt('{PARKING}')"), PARKING_FULL)

    tiles = page.locator("#tiles")
    assert "2,4 m" in tiles.locator("[data-tile=river]").inner_text()
    assert "1.234" in tiles.locator("[data-tile=visitors]").inner_text()
    assert tiles.locator("[data-tile=parking] .tile-value").inner_text() == "4"
    alerts = page.locator("#alert-list li")
    assert alerts.count() == 2
    assert alerts.first.get_attribute("data-entity") == GAUGE  # alarm II before a full car park
    assert "báo động II" in alerts.first.inner_text()
    # everything came from the platform itself: no CDN, no tile server
    assert requests and all(url.startswith(platform.url) for url in requests), requests


def test_live_update_recolours_the_marker(platform: Platform, page: Any) -> None:
    platform.upsert(city())
    open_dashboard(page, platform.url)
    page.wait_for_selector("#connection[data-state=live]")
    assert page.evaluate(f"window.__dashboard.markerColor('{AIR}')") == "rgb(0,228,0)"

    reply = platform.http.patch(
        f"/ngsi-ld/v1/entities/{AIR}/attrs", json={"pm25": measured(200.0, "GQ")}
    )
    assert reply.status_code == 204, reply.text
    page.wait_for_function(
        f"window.__dashboard.markerColor('{AIR}') === 'rgb(143,63,151)'", timeout=5_000
    )
    page.wait_for_timeout(100)  # the canvas redraws on the next animation frame
    assert close_to(page.evaluate(f"window.__dashboard.pixelAt('{AIR}')"), VERY_BAD)
    page.wait_for_selector(f"#alert-list li[data-entity='{AIR}']", timeout=5_000)

    # a new entity appears, a deleted one goes
    assert platform.http.delete(f"/ngsi-ld/v1/entities/{PARKING}").status_code == 204
    page.wait_for_function(f"window.__dashboard.markerColor('{PARKING}') === null")
    assert page.evaluate("window.__dashboard.markerCount()") == 3


def test_clicking_a_marker_shows_its_history(platform: Platform, page: Any) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    levels = [1.1, 1.4, 1.9, 2.3, 2.6]
    history = {
        "id": GAUGE,
        "type": "FloodMonitoring",
        "currentLevel": [
            measured(level, "MTR", now - timedelta(minutes=50 - 10 * i))
            for i, level in enumerate(levels)
        ],
    }
    reply = platform.http.post("/ngsi-ld/v1/temporal/entities", json=history)
    assert reply.status_code == 201, reply.text
    gauge = next(e for e in city() if e["id"] == GAUGE)
    del gauge["currentLevel"]
    reply = platform.http.post(f"/ngsi-ld/v1/entities/{GAUGE}/attrs", json=gauge)
    assert reply.status_code == 204, reply.text
    open_dashboard(page, platform.url)

    at = page.evaluate(f"window.__dashboard.markerPosition('{GAUGE}')")
    page.mouse.click(at["x"], at["y"])
    details = page.locator("#details")
    details.wait_for(state="visible")
    assert page.locator("#details-title").inner_text() == "Trạm thủy văn Kim Long"
    assert "2,6 m" in page.locator("#details-attrs").inner_text()
    page.wait_for_selector("#chart[data-state=ready]")
    assert page.get_attribute("#chart", "data-points") == str(len(levels))
    assert page.locator("#chart canvas").count() == 1

    RESULTS.mkdir(exist_ok=True)
    page.screenshot(path=str(RESULTS / "dashboard-history-chart.png"))

    page.get_by_role("button", name="Ngày").click()
    page.wait_for_selector("#chart[data-state=ready]")
    assert 1 <= int(page.get_attribute("#chart", "data-points")) <= len(levels)
    assert page.locator("#details [data-range=day]").get_attribute("aria-pressed") == "true"

    page.locator("#details-close").click()
    details.wait_for(state="hidden")


def test_language_switch_is_remembered(platform: Platform, page: Any) -> None:
    platform.upsert(city())
    open_dashboard(page, platform.url)
    title = page.locator("h1")
    assert title.inner_text() == "Trung tâm điều hành đô thị thông minh Huế"
    assert page.evaluate("document.documentElement.lang") == "vi"
    assert "Bãi đỗ xe" in page.locator("#layer-list").inner_text()

    page.get_by_role("button", name="English").click()
    assert title.inner_text() == "Huế smart city operations centre"
    assert page.evaluate("document.documentElement.lang") == "en"
    assert "Car parks" in page.locator("#layer-list").inner_text()
    assert "above alarm II" in page.locator("#alert-list").inner_text()
    page.evaluate(f"window.__dashboard.select('{SITE}')")
    assert page.locator("#details-title").inner_text() == "Imperial City"

    page.reload()
    open_dashboard(page, platform.url)
    assert title.inner_text() == "Huế smart city operations centre"
    assert page.get_by_role("button", name="English").get_attribute("aria-pressed") == "true"


def test_keyboard_finds_an_entity_by_name(platform: Platform, page: Any) -> None:
    platform.upsert(city())
    open_dashboard(page, platform.url)
    page.get_by_label("Tìm điểm trên bản đồ").fill("kim long")  # no diacritics needed
    results = page.locator("#find-results button")
    assert results.count() == 1
    page.keyboard.press("Enter")
    page.locator("#details").wait_for(state="visible")
    assert page.locator("#details-title").inner_text() == "Trạm thủy văn Kim Long"
    page.get_by_role("button", name="Đóng").focus()
    page.keyboard.press("Enter")
    page.locator("#details").wait_for(state="hidden")


def test_colour_scales_in_the_browser(platform: Platform, page: Any) -> None:
    open_dashboard(page, platform.url)
    results = page.evaluate(
        """async () => {
          const s = await import('/web/scales.js');
          return {
            pm25: [0, 12.5, 25, 50, 80, 150, 250, 350, 500, 900].map((c) => s.vnAqi(c, null)),
            pm10: [50, 150, 600].map((c) => s.vnAqi(null, c)),
            both: s.vnAqi(30, 200),
            none: s.vnAqi(null, null),
            bands: [50, 51, 100, 101, 150, 151, 200, 201, 300, 301].map((a) => s.aqiBand(a).key),
            stages: [0.5, 1.0, 2.0, 3.49, 3.5].map((l) => s.floodStage(l, [1.0, 2.0, 3.5])),
            parking: s.assess('OffStreetParking', {totalSpotNumber: 100, availableSpotNumber: 4}),
            airAlert: [80.5, 82].map((c) => s.assess('AirQualityObserved', {pm25: c}).severity),
          };
        }"""
    )
    assert results["pm25"] == [0, 25, 50, 100, 150, 200, 300, 400, 500, 500]
    assert results["pm10"] == [50, 100, 500]
    assert results["both"] == 125  # PM10 200 µg/m³ outranks PM2.5 30
    assert results["none"] is None
    assert results["bands"] == [
        "aqi.good",
        "aqi.moderate",
        "aqi.moderate",
        "aqi.poor",
        "aqi.poor",
        "aqi.bad",
        "aqi.bad",
        "aqi.veryBad",
        "aqi.veryBad",
        "aqi.hazardous",
    ]
    assert results["stages"] == [0, 1, 2, 2, 3]
    assert results["parking"]["alert"]["key"] == "alert.parking"
    assert results["airAlert"] == [0, 1]  # VN_AQI 150 (rounded) is no alert, 151 is


def test_online_basemap_only_when_configured(tmp_path: Path, page: Any) -> None:
    tile = (STATIC / "vendor" / "leaflet-1.9.4" / "images" / "layers.png").read_bytes()
    fetched: list[str] = []

    def serve_tile(route: Any) -> None:
        fetched.append(route.request.url)
        route.fulfill(status=200, content_type="image/png", body=tile)

    page.route("http://tiles.invalid/**", serve_tile)
    srv = Platform(
        tmp_path / "tiles.db",
        basemap_url="http://tiles.invalid/{z}/{x}/{y}.png",
        basemap_attribution="© Tile Makers",
    )
    try:
        srv.upsert(city())
        open_dashboard(page, srv.url)
        page.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length > 0")
        assert fetched and all(re.search(r"/14/\d+/\d+\.png$", url) for url in fetched), fetched
        assert "© Tile Makers" in page.locator(".leaflet-control-attribution").inner_text()
        assert page.evaluate("window.__dashboard.markerCount()") == 4
    finally:
        srv.stop()


def test_reconnects_and_catches_up_after_a_restart(
    tmp_path: Path, page: Any, expected_page_errors: list[str]
) -> None:
    # the browser logs the broken stream and the refused reconnections
    expected_page_errors.append("net::ERR_")
    store = tmp_path / "restart.db"
    first = Platform(store)
    try:
        first.upsert(city())
        open_dashboard(page, first.url)
        page.wait_for_selector("#connection[data-state=live]")
    finally:
        first.stop()
    page.wait_for_selector("#connection[data-state=reconnecting]", timeout=10_000)
    again = Platform(store, port=first.port)
    try:
        # changed while the page may still be disconnected: caught up when it reconnects
        reply = again.http.patch(
            f"/ngsi-ld/v1/entities/{AIR}/attrs", json={"pm25": measured(200.0, "GQ")}
        )
        assert reply.status_code == 204, reply.text
        page.wait_for_function(
            f"window.__dashboard.markerColor('{AIR}') === 'rgb(143,63,151)'", timeout=20_000
        )
        page.wait_for_selector("#connection[data-state=live]")
    finally:
        again.stop()


def test_a_tenant_is_shown_when_the_page_names_it(platform: Platform, page: Any) -> None:
    hcmc = {"NGSILD-Tenant": "hcmc"}
    platform.upsert(city())  # the default tenant: Huế
    ben_thanh = {
        "id": "urn:ngsi-ld:OffStreetParking:ben-thanh",
        "type": "OffStreetParking",
        "name": names("Bãi xe Bến Thành", "Ben Thanh car park"),
        "availableSpotNumber": measured(80),
        "totalSpotNumber": measured(200),
        "location": point(106.698, 10.772),
    }
    reply = platform.http.post("/ngsi-ld/v1/entities", json=ben_thanh, headers=hcmc)
    assert reply.status_code == 201, reply.text
    page.goto(platform.url + "/?tenant=hcmc")
    page.wait_for_function("window.__dashboard && window.__dashboard.ready", timeout=20_000)
    assert page.evaluate("window.__dashboard.markerCount()") == 1
    assert page.locator("#tenant").inner_text() == "hcmc"
    page.wait_for_selector("#connection[data-state=live]")

    patch = {"availableSpotNumber": measured(0)}  # live changes of that tenant arrive too
    reply = platform.http.patch(
        f"/ngsi-ld/v1/entities/{ben_thanh['id']}/attrs", json=patch, headers=hcmc
    )
    assert reply.status_code == 204
    page.wait_for_selector(f"#alert-list li[data-entity='{ben_thanh['id']}']", timeout=5_000)
