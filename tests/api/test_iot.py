"""The IoT agent over HTTP: provisioning in the IoT Agent's shapes, the HTTP southbound,
dead letters, device counters and health, on every store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from tests.receivers import HttpReceiver, wait_for
from urbanstack.api.app import create_app
from urbanstack.ingest.agent import DeviceMessage
from urbanstack.settings import Settings

ENTITIES = "/ngsi-ld/v1/entities"
TEMPORAL = "/ngsi-ld/v1/temporal/entities"
STATION = "urn:ngsi-ld:AirQualityObserved:hue-aq-01"
GROUP = {
    "apikey": "hue-aq",
    "entity_type": "AirQualityObserved",
    "resource": "/iot/json",
    "attributes": [
        {
            "object_id": "t",
            "name": "temperature",
            "type": "Number",
            "unitCode": "CEL",
            "min": -40,
            "max": 60,
        },
        {"object_id": "pm", "name": "pm25", "type": "Number", "unitCode": "GQ", "min": 0},
    ],
    "static_attributes": [{"name": "city", "type": "Text", "value": "Huế"}],
}
DEVICE = {
    "device_id": "hue-aq-01",
    "entity_name": STATION,
    "entity_type": "AirQualityObserved",
    "apikey": "hue-aq",
    "location": "16.4637,107.5909",
    "timezone": "Asia/Ho_Chi_Minh",
    "attributes": [{"object_id": "no2", "name": "no2", "type": "Number", "unitCode": "GQ"}],
}


def provision(client: TestClient, headers: dict[str, str] | None = None) -> None:
    response = client.post("/iot/services", json={"services": [GROUP]}, headers=headers)
    assert response.status_code == 201, response.text
    response = client.post("/iot/devices", json={"devices": [DEVICE]}, headers=headers)
    assert response.status_code == 201, response.text


def measure(client: TestClient, body: Any, device: str = "hue-aq-01", key: str = "hue-aq") -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(f"/iot/json?k={key}&i={device}", content=content)


def entity(client: TestClient, entity_id: str = STATION) -> dict[str, Any]:
    response = client.get(f"{ENTITIES}/{entity_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_a_service_group_is_created_listed_and_read_back(client: TestClient) -> None:
    assert client.post("/iot/services", json={"services": [GROUP]}).status_code == 201
    listing = client.get("/iot/services").json()
    assert listing["count"] == 1
    assert listing["services"][0]["apikey"] == "hue-aq"
    assert listing["services"][0]["attributes"][0]["name"] == "temperature"


def test_a_taken_apikey_is_a_conflict_and_changes_nothing(client: TestClient) -> None:
    client.post("/iot/services", json={"services": [GROUP]})
    other = GROUP | {"entity_type": "Other"}
    response = client.post("/iot/services", json={"services": [other]})
    assert response.status_code == 409
    assert response.json()["type"].endswith("AlreadyExists")
    assert client.get("/iot/services").json()["services"][0]["entity_type"] == "AirQualityObserved"


def test_an_invalid_group_is_refused_with_problem_details(client: TestClient) -> None:
    response = client.post("/iot/services", json={"services": [{"apikey": "k"}]})
    assert response.status_code == 400
    assert response.json()["type"].endswith("BadRequestData")
    assert client.get("/iot/services").json()["count"] == 0


def test_a_group_is_updated_and_deleted_by_apikey(client: TestClient) -> None:
    client.post("/iot/services", json={"services": [GROUP]})
    assert (
        client.put("/iot/services?apikey=hue-aq", json={"entity_type": "Station"}).status_code
        == 204
    )
    assert client.get("/iot/services").json()["services"][0]["entity_type"] == "Station"
    assert client.delete("/iot/services?apikey=hue-aq").status_code == 204
    assert client.get("/iot/services").json()["count"] == 0
    assert client.delete("/iot/services?apikey=hue-aq").status_code == 404


def test_groups_are_per_tenant(client: TestClient) -> None:
    client.post("/iot/services", json={"services": [GROUP]}, headers={"fiware-service": "hue"})
    assert client.get("/iot/services", headers={"fiware-service": "hue"}).json()["count"] == 1
    assert client.get("/iot/services").json()["count"] == 0
    assert client.delete("/iot/services?apikey=hue-aq").status_code == 404


def test_provisioning_a_device_creates_its_entity(client: TestClient) -> None:
    provision(client)
    station = entity(client)
    assert station["type"] == "AirQualityObserved"
    assert station["city"]["value"] == "Huế"
    assert station["location"]["value"] == {"type": "Point", "coordinates": [107.5909, 16.4637]}


def test_a_device_is_read_listed_updated_and_deleted(client: TestClient) -> None:
    provision(client)
    device = client.get("/iot/devices/hue-aq-01").json()
    assert device["entity_name"] == STATION and device["timezone"] == "Asia/Ho_Chi_Minh"
    assert client.get("/iot/devices").json()["count"] == 1
    assert client.put("/iot/devices/hue-aq-01", json={"timezone": "UTC"}).status_code == 204
    assert client.get("/iot/devices/hue-aq-01").json()["timezone"] == "UTC"
    assert client.delete("/iot/devices/hue-aq-01").status_code == 204
    assert client.get("/iot/devices/hue-aq-01").status_code == 404
    assert entity(client)["id"] == STATION  # the entity and its history stay


def test_a_taken_device_id_is_a_conflict(client: TestClient) -> None:
    provision(client)
    response = client.post("/iot/devices", json={"devices": [DEVICE]})
    assert response.status_code == 409


def test_a_measure_updates_the_entity_with_units_and_observation_time(client: TestClient) -> None:
    provision(client)
    response = measure(client, {"t": 31.5, "no2": 18, "TimeInstant": "2026-11-24T14:00:00"})
    assert response.status_code == 200, response.text
    assert response.json() == {"entity": STATION, "accepted": 2, "rejected": []}
    station = entity(client)
    assert station["temperature"]["value"] == 31.5
    assert station["temperature"]["unitCode"] == "CEL"
    # no offset: read in the device's time zone (UTC+7)
    assert station["temperature"]["observedAt"] == "2026-11-24T07:00:00.000Z"
    assert station["no2"]["value"] == 18
    assert station["status"]["value"] == "online"


def test_every_measure_is_its_own_history_instance(client: TestClient) -> None:
    provision(client)
    measure(client, [{"t": 20, "TimeInstant": f"2026-11-24T0{h}:00:00Z"} for h in range(3)])
    measure(client, {"t": 23, "TimeInstant": "2026-11-24T03:00:00Z"})
    history = client.get(f"{TEMPORAL}/{STATION}?attrs=temperature").json()
    assert len(history["temperature"]) == 4
    assert entity(client)["temperature"]["observedAt"] == "2026-11-24T03:00:00.000Z"


def test_batches_decoded_while_others_are_written_are_written_in_arrival_order(
    client: TestClient,
) -> None:
    """Messages come in bursts while earlier batches are being written; one moment for all,
    so the history's order (time, then instance number) is the order of the writes."""
    provision(client)
    agent = client.app.state.ingest  # type: ignore[attr-defined]
    count = 300

    async def send_in_bursts() -> list[Any]:
        outcomes: list[Any] = []
        for start in range(0, count, 10):
            for n in range(start, start + 10):
                payload = orjson.dumps({"pm": n, "TimeInstant": "2026-11-24T05:00:00Z"})
                agent.submit(DeviceMessage("hue-aq", "hue-aq-01", payload, done=outcomes.append))
            await asyncio.sleep(0.001)
        while len(outcomes) < count:
            await asyncio.sleep(0.01)
        return outcomes

    outcomes = client.portal.call(send_in_bursts)  # type: ignore[union-attr]
    assert all(o.accepted == 1 for o in outcomes)
    history = client.get(f"{TEMPORAL}/{STATION}?attrs=pm25&lastN={count}").json()
    assert [i["value"] for i in history["pm25"]] == list(range(count))


def test_an_out_of_range_value_is_rejected_alone_and_dead_lettered(client: TestClient) -> None:
    provision(client)
    response = measure(client, {"t": 99, "pm": 12})
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {"attribute": "temperature", "value": 99, "reason": "99 is above the maximum 60"}
    ]
    assert "temperature" not in entity(client)
    letters = client.get("/iot/deadletters").json()["deadLetters"]
    assert [(d["device_id"], d["attribute"], d["value"]) for d in letters] == [
        ("hue-aq-01", "temperature", 99)
    ]


def test_a_message_with_nothing_usable_is_a_bad_request_and_changes_nothing(
    client: TestClient,
) -> None:
    provision(client)
    before = entity(client)
    for body in (b"{not json", {"t": "hot"}):
        response = measure(client, body)
        assert response.status_code == 400
        assert response.json()["type"].endswith("BadRequestData")
    assert entity(client) == before
    assert client.get("/iot/deadletters").json()["count"] == 2


def test_rejections_are_counted_per_device(client: TestClient) -> None:
    provision(client)
    measure(client, {"t": 99})
    measure(client, {"t": 21, "pm": -1})
    device = client.get("/iot/devices/hue-aq-01").json()
    assert device["rejected"] == 2
    assert device["measures"] == 1
    assert device["last_seen"]


def test_unknown_apikey_and_device_are_not_found(client: TestClient) -> None:
    client.post("/iot/services", json={"services": [GROUP | {"autoprovision": False}]})
    assert measure(client, {"t": 1}, key="nope").status_code == 404
    assert measure(client, {"t": 1}, device="stranger").status_code == 404
    assert client.get(f"{ENTITIES}/urn:ngsi-ld:AirQualityObserved:stranger").status_code == 404


def test_unknown_devices_are_provisioned_when_the_group_allows_it(client: TestClient) -> None:
    client.post("/iot/services", json={"services": [GROUP]})
    assert measure(client, {"t": 25}, device="hue-aq-99").status_code == 200
    assert client.get("/iot/devices/hue-aq-99").json()["apikey"] == "hue-aq"
    created = entity(client, "urn:ngsi-ld:AirQualityObserved:hue-aq-99")
    assert created["temperature"]["value"] == 25 and created["city"]["value"] == "Huế"


def test_southbound_needs_apikey_and_device(client: TestClient) -> None:
    response = client.post("/iot/json?k=hue-aq", content=b"{}")
    assert response.status_code == 400


def test_dead_letters_are_per_tenant_and_bounded(store_url: str) -> None:
    settings = Settings(store=store_url, sqlite_synchronous="NORMAL", iot_dead_letter_keep=3)
    with TestClient(create_app(settings)) as client:
        provision(client, {"fiware-service": "hue"})
        for value in range(5):
            client.post("/iot/json?k=hue-aq&i=hue-aq-01", content=orjson.dumps({"t": 100 + value}))
        letters = client.get("/iot/deadletters", headers={"fiware-service": "hue"}).json()
        assert [d["value"] for d in letters["deadLetters"]] == [104, 103, 102]
        assert client.get("/iot/deadletters").json()["count"] == 0


@pytest.fixture
def quick_offline(store_url: str) -> Iterator[TestClient]:
    settings = Settings(store=store_url, sqlite_synchronous="NORMAL", iot_offline_after=0.3)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_silent_device_turns_offline_and_back_online(quick_offline: TestClient) -> None:
    client = quick_offline
    provision(client)
    measure(client, {"t": 20})
    assert entity(client)["status"]["value"] == "online"
    assert wait_for(lambda: entity(client)["status"]["value"] == "offline", timeout=10)
    # the device record follows the entity in a second, short write
    assert wait_for(
        lambda: client.get("/iot/devices/hue-aq-01").json()["status"] == "offline", timeout=10
    )
    measure(client, {"t": 21})
    assert entity(client)["status"]["value"] == "online"
    statuses = client.get(f"{TEMPORAL}/{STATION}?attrs=status").json()["status"]
    assert [s["value"] for s in statuses] == ["online", "offline", "online"]


def test_subscriptions_are_notified_of_measures(client: TestClient) -> None:
    receiver = HttpReceiver().start()
    try:
        provision(client)
        subscription = {
            "type": "Subscription",
            "entities": [{"type": "AirQualityObserved"}],
            "watchedAttributes": ["pm25"],
            "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}},
        }
        assert client.post("/ngsi-ld/v1/subscriptions", json=subscription).status_code == 201
        measure(client, {"pm": 42})
        received = wait_for(lambda: receiver.received)
        assert received[0][2]["data"][0]["pm25"]["value"] == 42
    finally:
        receiver.stop()
