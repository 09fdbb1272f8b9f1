"""/subscriptions over HTTP (GS CIM 009 clauses 5.8, 6.10-6.11): create, read, list,
update, delete, and the errors; delivery itself is tested in tests/notify."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

BASE = "/ngsi-ld/v1"
SUBSCRIPTIONS = f"{BASE}/subscriptions"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
ENDPOINT = "http://127.0.0.1:9/notify"


def subscription(**members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "WaterLevelObserved"}],
        "watchedAttributes": ["waterLevel"],
        "q": "waterLevel>2.5",
        "notification": {
            "attributes": ["waterLevel"],
            "format": "keyValues",
            "endpoint": {"uri": ENDPOINT, "accept": "application/json"},
        },
    }
    body.update(members)
    return body


def error_type(response: Any) -> str:
    return response.json()["type"].removeprefix(ERRORS)


def create(client: TestClient, **members: Any) -> str:
    response = client.post(SUBSCRIPTIONS, json=subscription(**members))
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert location.startswith(f"{SUBSCRIPTIONS}/")
    return location.rsplit("/", 1)[1]


def test_created_subscription_reads_back(client: TestClient) -> None:
    sub_id = create(client)
    body = client.get(f"{SUBSCRIPTIONS}/{sub_id}").json()
    assert body["id"] == sub_id and body["type"] == "Subscription"
    assert body["entities"] == [{"type": "WaterLevelObserved"}]
    assert body["watchedAttributes"] == ["waterLevel"]
    assert body["q"] == "waterLevel>2.5"
    assert body["notification"]["endpoint"]["uri"] == ENDPOINT
    assert body["notification"]["format"] == "keyValues"
    assert body["status"] == "active"
    assert body["notification"]["timesSent"] == 0


def test_subscription_keeps_a_given_id(client: TestClient) -> None:
    sub_id = create(client, id="urn:ngsi-ld:Subscription:flood-warning")
    assert sub_id == "urn:ngsi-ld:Subscription:flood-warning"


def test_a_taken_id_is_already_exists(client: TestClient) -> None:
    create(client, id="urn:ngsi-ld:Subscription:flood-warning")
    response = client.post(
        SUBSCRIPTIONS, json=subscription(id="urn:ngsi-ld:Subscription:flood-warning")
    )
    assert response.status_code == 409 and error_type(response) == "AlreadyExists"


@pytest.mark.parametrize(
    "members",
    [
        {"entities": None, "watchedAttributes": None},
        {"notification": {"endpoint": {"uri": "ftp://127.0.0.1/x"}}},
        {"notification": {"endpoint": {"uri": ENDPOINT, "accept": "text/html"}}},
        {"notification": None},
        {"q": "waterLevel>>2"},
        {"entities": [{"id": "not a uri", "type": "WaterLevelObserved"}]},
        {"type": "Registration"},
        {"expiresAt": "2001-01-01T00:00:00Z"},
        {"timeInterval": 60},  # with watchedAttributes
        {"watchedAttributes": []},
    ],
)
def test_invalid_subscriptions_are_bad_request_and_store_nothing(
    client: TestClient, members: dict[str, Any]
) -> None:
    body = {k: v for k, v in subscription(**members).items() if v is not None}
    response = client.post(SUBSCRIPTIONS, json=body)
    assert response.status_code == 400, response.text
    assert error_type(response) == "BadRequestData"
    assert client.get(SUBSCRIPTIONS).json() == []


def test_list_pages_with_count_and_links(client: TestClient) -> None:
    ids = [create(client) for _ in range(3)]
    response = client.get(SUBSCRIPTIONS, params={"limit": 2, "count": "true"})
    assert [s["id"] for s in response.json()] == ids[:2]
    assert response.headers["NGSILD-Results-Count"] == "3"
    assert 'rel="next"' in response.headers["Link"]
    second = client.get(SUBSCRIPTIONS, params={"limit": 2, "offset": 2}).json()
    assert [s["id"] for s in second] == ids[2:]


def test_patch_changes_members(client: TestClient) -> None:
    sub_id = create(client)
    response = client.patch(f"{SUBSCRIPTIONS}/{sub_id}", json={"q": "waterLevel>3.0"})
    assert response.status_code == 204
    assert client.get(f"{SUBSCRIPTIONS}/{sub_id}").json()["q"] == "waterLevel>3.0"


def test_patch_with_bad_member_changes_nothing(client: TestClient) -> None:
    sub_id = create(client)
    response = client.patch(f"{SUBSCRIPTIONS}/{sub_id}", json={"q": "waterLevel>>"})
    assert response.status_code == 400
    assert client.get(f"{SUBSCRIPTIONS}/{sub_id}").json()["q"] == "waterLevel>2.5"


def test_paused_subscription_reads_as_paused(client: TestClient) -> None:
    sub_id = create(client)
    client.patch(f"{SUBSCRIPTIONS}/{sub_id}", json={"isActive": False})
    assert client.get(f"{SUBSCRIPTIONS}/{sub_id}").json()["status"] == "paused"


def test_deleted_subscription_is_gone(client: TestClient) -> None:
    sub_id = create(client)
    assert client.delete(f"{SUBSCRIPTIONS}/{sub_id}").status_code == 204
    response = client.get(f"{SUBSCRIPTIONS}/{sub_id}")
    assert response.status_code == 404 and error_type(response) == "ResourceNotFound"
    assert client.delete(f"{SUBSCRIPTIONS}/{sub_id}").status_code == 404


def test_unknown_subscription_is_not_found(client: TestClient) -> None:
    response = client.get(f"{SUBSCRIPTIONS}/urn:ngsi-ld:Subscription:nothing")
    assert response.status_code == 404 and error_type(response) == "ResourceNotFound"
    response = client.patch(f"{SUBSCRIPTIONS}/urn:ngsi-ld:Subscription:nothing", json={"q": "a>1"})
    assert response.status_code == 404


def test_subscriptions_are_per_tenant(client: TestClient) -> None:
    headers = {"NGSILD-Tenant": "hue"}
    response = client.post(SUBSCRIPTIONS, json=subscription(), headers=headers)
    assert response.status_code == 201
    assert len(client.get(SUBSCRIPTIONS, headers=headers).json()) == 1
    assert client.get(SUBSCRIPTIONS).json() == []
