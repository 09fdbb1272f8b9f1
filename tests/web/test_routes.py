"""The dashboard's routes in-process: the page, its files, cache headers and configuration."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from urbanstack.api.app import create_app
from urbanstack.settings import Settings
from urbanstack.web.routes import STATIC_DIR

BASEMAP = "https://tiles.example.org/{z}/{x}/{y}.png"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'web.db'}",
        sqlite_synchronous="NORMAL",
        basemap_url=BASEMAP,
        basemap_attribution="© Example",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_page_is_served_at_the_root_and_revalidated(client: TestClient) -> None:
    reply = client.get("/")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert reply.headers["cache-control"] == "no-cache"
    assert "etag" in reply.headers
    again = client.get("/", headers={"If-None-Match": reply.headers["etag"]})
    assert again.status_code == 304


def test_every_file_the_page_names_is_shipped(client: TestClient) -> None:
    page = client.get("/").text
    refs = re.findall(r'(?:src|href)="(web/[^"]+)"', page)
    assert len(refs) >= 5
    for ref in refs:
        reply = client.get("/" + ref)
        assert reply.status_code == 200, ref
    for module in STATIC_DIR.glob("*.js"):
        for imported in re.findall(r"from '\./([\w.]+)'", module.read_text("utf-8")):
            assert (STATIC_DIR / imported).is_file(), f"{module.name} imports {imported}"


def test_vendored_libraries_are_cached_long_and_own_files_revalidated(
    client: TestClient,
) -> None:
    leaflet = client.get("/web/vendor/leaflet-1.9.4/leaflet.js")
    assert leaflet.status_code == 200
    assert "immutable" in leaflet.headers["cache-control"]
    assert client.get("/web/app.js").headers["cache-control"] == "no-cache"
    assert client.get("/web/app.js").headers["content-type"].startswith("text/javascript")
    for library in ("leaflet-1.9.4", "uplot-1.6.32"):
        assert (STATIC_DIR / "vendor" / library / "LICENSE").is_file()


def test_config_names_the_basemap(client: TestClient) -> None:
    reply = client.get("/web/config.json")
    assert reply.json() == {"basemapUrl": BASEMAP, "basemapAttribution": "© Example"}
    assert reply.headers["cache-control"] == "no-store"


def test_missing_file_is_a_problem_details_404(client: TestClient) -> None:
    reply = client.get("/web/nothing-here.js")
    assert reply.status_code == 404
    assert reply.json()["type"].endswith("ResourceNotFound")


def test_translation_tables_have_the_same_keys() -> None:
    import json

    vi = json.loads((STATIC_DIR / "i18n" / "vi.json").read_text("utf-8"))
    en = json.loads((STATIC_DIR / "i18n" / "en.json").read_text("utf-8"))
    assert vi.keys() == en.keys()
    used: set[str] = set()
    for path in [*STATIC_DIR.glob("*.js"), STATIC_DIR / "index.html"]:
        text = path.read_text("utf-8")
        used |= set(re.findall(r"""\bt\(['"]([a-z]+\.[\w.]+)['"]""", text))
        used |= set(re.findall(r'data-i18n="([a-z]+\.[\w.]+)"', text))
        used |= set(re.findall(r"(?:aria-label|title|placeholder):([a-z]+\.[\w.]+)", text))
    missing = sorted(k for k in used if k not in vi)
    assert not missing, f"keys used but not translated: {missing}"
