"""Multi-tenancy (ETSI GS CIM 009 v1.8.1 clause 4.14 and the NGSILD-Tenant header, 6.3.14).

A tenant is created implicitly by an operation that creates information in it; other
operations on a tenant that does not exist fail with NonexistentTenant (404, table
6.3.2-1). Tenants are isolated from each other and from the default tenant.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

API = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
IMPERIAL = "urn:ngsi-ld:HeritageSite:imperial-city"
STATION = "urn:ngsi-ld:AirQualityObserved:hue-citadel"


def tenant(name: str) -> dict[str, str]:
    return {"NGSILD-Tenant": name}


def site(name: str = "Imperial City", year: int = 1804) -> dict[str, Any]:
    return {
        "id": IMPERIAL,
        "type": "HeritageSite",
        "name": {"type": "Property", "value": name},
        "yearBuilt": {"type": "Property", "value": year},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [107.5786, 16.4698]},
        },
    }


def air_station() -> dict[str, Any]:
    return {
        "id": STATION,
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 35.2, "unitCode": "GQ"},
    }


def create(client: TestClient, body: dict[str, Any], name: str | None = None) -> None:
    response = client.post(f"{API}/entities", json=body, headers=tenant(name) if name else {})
    assert response.status_code == 201, response.text


def query_ids(client: TestClient, name: str | None = None, **params: Any) -> list[str]:
    response = client.get(f"{API}/entities", params=params, headers=tenant(name) if name else {})
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()]


def assert_nonexistent_tenant(response: Any) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["type"] == ERRORS + "NonexistentTenant"


def test_create_with_tenant_header_creates_the_tenant(client: TestClient) -> None:
    create(client, site(), "hue")
    response = client.get(f"{API}/entities/{IMPERIAL}", headers=tenant("hue"))
    assert response.status_code == 200
    assert response.json()["name"]["value"] == "Imperial City"


def test_batch_create_with_tenant_header_creates_the_tenant(client: TestClient) -> None:
    response = client.post(
        f"{API}/entityOperations/create", json=[site(), air_station()], headers=tenant("hue")
    )
    assert response.status_code == 201, response.text
    assert sorted(query_ids(client, "hue", type="HeritageSite,AirQualityObserved")) == sorted(
        [IMPERIAL, STATION]
    )


def test_query_of_unknown_tenant_is_nonexistent_tenant(client: TestClient) -> None:
    response = client.get(
        f"{API}/entities", params={"type": "HeritageSite"}, headers=tenant("danang")
    )
    assert_nonexistent_tenant(response)


def test_retrieve_from_unknown_tenant_is_nonexistent_tenant(client: TestClient) -> None:
    create(client, site())
    assert_nonexistent_tenant(client.get(f"{API}/entities/{IMPERIAL}", headers=tenant("danang")))


@pytest.mark.parametrize("path", ["/types", "/attributes", "/types/HeritageSite"])
def test_discovery_of_unknown_tenant_is_nonexistent_tenant(client: TestClient, path: str) -> None:
    assert_nonexistent_tenant(client.get(f"{API}{path}", headers=tenant("danang")))


def test_reading_unknown_tenant_does_not_create_it(client: TestClient) -> None:
    client.get(f"{API}/entities", params={"type": "HeritageSite"}, headers=tenant("danang"))
    response = client.get(
        f"{API}/entities", params={"type": "HeritageSite"}, headers=tenant("danang")
    )
    assert_nonexistent_tenant(response)


def test_delete_in_unknown_tenant_is_nonexistent_tenant(client: TestClient) -> None:
    response = client.delete(f"{API}/entities/{IMPERIAL}", headers=tenant("danang"))
    assert_nonexistent_tenant(response)


def test_delete_in_unknown_tenant_does_not_create_it(client: TestClient) -> None:
    client.delete(f"{API}/entities/{IMPERIAL}", headers=tenant("danang"))
    assert_nonexistent_tenant(client.get(f"{API}/types", headers=tenant("danang")))


def test_update_in_unknown_tenant_is_nonexistent_tenant(client: TestClient) -> None:
    response = client.patch(
        f"{API}/entities/{IMPERIAL}/attrs",
        json={"yearBuilt": {"type": "Property", "value": 1805}},
        headers=tenant("danang"),
    )
    assert_nonexistent_tenant(response)


def test_failed_create_does_not_create_the_tenant(client: TestClient) -> None:
    invalid = {**site(), "id": "not a uri"}
    response = client.post(f"{API}/entities", json=invalid, headers=tenant("danang"))
    assert response.status_code == 400, response.text
    assert_nonexistent_tenant(client.get(f"{API}/types", headers=tenant("danang")))


def test_tenant_entities_are_invisible_from_the_default_tenant(client: TestClient) -> None:
    create(client, site(), "hue")
    response = client.get(f"{API}/entities/{IMPERIAL}")
    assert response.status_code == 404
    assert response.json()["type"] == ERRORS + "ResourceNotFound"
    assert query_ids(client, type="HeritageSite") == []


def test_default_tenant_entities_are_invisible_from_a_tenant(client: TestClient) -> None:
    create(client, site())
    create(client, air_station(), "hue")
    assert query_ids(client, "hue", type="HeritageSite") == []
    response = client.get(f"{API}/entities/{IMPERIAL}", headers=tenant("hue"))
    assert response.status_code == 404
    assert response.json()["type"] == ERRORS + "ResourceNotFound"


def test_tenant_entities_are_invisible_from_another_tenant(client: TestClient) -> None:
    create(client, site(), "hue")
    create(client, air_station(), "danang")
    assert query_ids(client, "danang", type="HeritageSite,AirQualityObserved") == [STATION]
    assert query_ids(client, "hue", type="HeritageSite,AirQualityObserved") == [IMPERIAL]


def test_same_id_may_exist_in_two_tenants(client: TestClient) -> None:
    create(client, site("Imperial City", 1804), "hue")
    create(client, site("Hoàng thành Huế", 1805), "hue-archive")
    hue = client.get(f"{API}/entities/{IMPERIAL}", headers=tenant("hue")).json()
    archive = client.get(f"{API}/entities/{IMPERIAL}", headers=tenant("hue-archive")).json()
    assert hue["name"]["value"] == "Imperial City"
    assert archive["name"]["value"] == "Hoàng thành Huế"
    assert archive["yearBuilt"]["value"] == 1805


def test_same_id_in_tenant_and_default_do_not_collide(client: TestClient) -> None:
    create(client, site("Imperial City"))
    create(client, site("Đại Nội"), "hue")
    assert client.get(f"{API}/entities/{IMPERIAL}").json()["name"]["value"] == "Imperial City"
    tenant_copy = client.get(f"{API}/entities/{IMPERIAL}", headers=tenant("hue")).json()
    assert tenant_copy["name"]["value"] == "Đại Nội"


def test_delete_in_one_tenant_leaves_the_other(client: TestClient) -> None:
    create(client, site(), "hue")
    create(client, site(), "danang")
    response = client.delete(f"{API}/entities/{IMPERIAL}", headers=tenant("hue"))
    assert response.status_code == 204
    assert client.get(f"{API}/entities/{IMPERIAL}", headers=tenant("danang")).status_code == 200
    assert client.get(f"{API}/entities/{IMPERIAL}", headers=tenant("hue")).status_code == 404


def test_update_in_one_tenant_leaves_the_other(client: TestClient) -> None:
    create(client, site(), "hue")
    create(client, site(), "danang")
    response = client.patch(
        f"{API}/entities/{IMPERIAL}/attrs",
        json={"yearBuilt": {"type": "Property", "value": 1805}},
        headers=tenant("hue"),
    )
    assert response.status_code == 204, response.text
    danang = client.get(f"{API}/entities/{IMPERIAL}", headers=tenant("danang")).json()
    assert danang["yearBuilt"]["value"] == 1804


def test_discovery_is_per_tenant(client: TestClient) -> None:
    create(client, site(), "hue")
    create(client, air_station())
    assert client.get(f"{API}/types", headers=tenant("hue")).json()["typeList"] == ["HeritageSite"]
    assert client.get(f"{API}/types").json()["typeList"] == ["AirQualityObserved"]
    attributes = client.get(f"{API}/attributes", headers=tenant("hue")).json()["attributeList"]
    assert "pm25" not in attributes


def test_existing_tenant_with_no_match_answers_an_empty_list(client: TestClient) -> None:
    create(client, site(), "hue")
    assert query_ids(client, "hue", type="AirQualityObserved") == []


INVALID_TENANTS = ["../hue", "hue/../../etc", "..", "hue/phu-xuan", "hue\\kim-long"]


@pytest.mark.parametrize("name", INVALID_TENANTS)
def test_invalid_tenant_name_on_write_is_bad_request(client: TestClient, name: str) -> None:
    response = client.post(f"{API}/entities", json=site(), headers=tenant(name))
    assert response.status_code == 400, response.text
    assert response.json()["type"] == ERRORS + "BadRequestData"
    assert client.get(f"{API}/entities/{IMPERIAL}").status_code == 404


@pytest.mark.parametrize("name", INVALID_TENANTS)
def test_invalid_tenant_name_on_read_is_bad_request(client: TestClient, name: str) -> None:
    response = client.get(f"{API}/entities", params={"type": "HeritageSite"}, headers=tenant(name))
    assert response.status_code == 400, response.text
    assert response.json()["type"] == ERRORS + "BadRequestData"
