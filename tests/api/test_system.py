"""Operator endpoints: /health and /version."""

from __future__ import annotations

from starlette.testclient import TestClient

import urbanstack


def test_health_answers_ok(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status"] == "ok"


def test_health_is_not_under_the_ngsi_ld_root(client: TestClient) -> None:
    assert client.get("/ngsi-ld/v1/health").status_code == 404


def test_version_names_the_package_version(client: TestClient) -> None:
    response = client.get("/version")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["urbanstack"] == urbanstack.__version__


def test_version_names_the_ngsi_ld_specification_version(client: TestClient) -> None:
    assert client.get("/version").json()["ngsi-ld"] == "1.8.1"


def test_version_names_the_store_backend(client: TestClient, store_url: str) -> None:
    store = client.get("/version").json()["store"]
    assert store["backend"] == store_url.split(":", 1)[0]
    assert isinstance(store["version"], str)
    assert store["version"]


def test_health_and_version_reject_other_methods(client: TestClient) -> None:
    for path in ("/health", "/version"):
        response = client.post(path, json={})
        assert response.status_code == 405
        assert response.json()["status"] == 405


def test_head_on_a_get_route_answers_like_get_without_body(client: TestClient) -> None:
    response = client.head("/health")
    assert response.status_code == 200
    assert response.content == b""
