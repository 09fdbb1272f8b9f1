"""The MQTT southbound against a real mosquitto: measures become entity updates, bad
messages never stop the agent, and no acknowledged message is lost when the MQTT
broker or the platform restarts."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from starlette.testclient import TestClient

from tests.receivers import Mosquitto, wait_for
from urbanstack.api.app import create_app
from urbanstack.ingest.mqtt import parse_topic
from urbanstack.settings import Settings

ENTITIES = "/ngsi-ld/v1/entities"
TEMPORAL = "/ngsi-ld/v1/temporal/entities"
GAUGE = "urn:ngsi-ld:WaterLevelObserved:kim-long"
GROUP = {
    "apikey": "river",
    "entity_type": "WaterLevelObserved",
    "attributes": [
        {"object_id": "l", "name": "waterLevel", "type": "Number", "unitCode": "MTR"},
        {"object_id": "n", "name": "seq", "type": "Integer"},
    ],
}
DEVICE = {"device_id": "kim-long", "entity_name": GAUGE, "apikey": "river"}


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    broker = Mosquitto(persistent=True).start()
    yield broker
    broker.stop()


def platform(store_url: str, mosquitto: Mosquitto, client_id: str) -> TestClient:
    settings = Settings(
        store=store_url,
        sqlite_synchronous="NORMAL",
        mqtt=f"mqtt://127.0.0.1:{mosquitto.port}",
        mqtt_client_id=client_id,
    )
    return TestClient(create_app(settings))


def connected(client: TestClient) -> bool:
    return client.app.state.southbound.connected.wait(10)  # type: ignore[attr-defined]


@pytest.fixture
def client_id() -> str:
    return f"urbanstack-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app(store_url: str, mosquitto: Mosquitto, client_id: str) -> Iterator[TestClient]:
    with platform(store_url, mosquitto, client_id) as client:
        assert client.post("/iot/services", json={"services": [GROUP]}).status_code == 201
        assert client.post("/iot/devices", json={"devices": [DEVICE]}).status_code == 201
        assert connected(client)
        yield client


class Publisher:
    """A device: a paho client publishing with QoS 1 and waiting for each PUBACK."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        info = self.client.publish(topic, data, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device(mosquitto: Mosquitto) -> Iterator[Publisher]:
    publisher = Publisher(mosquitto.port)
    yield publisher
    publisher.close()


def sequence_numbers(client: TestClient) -> list[int]:
    response = client.get(f"{TEMPORAL}/{GAUGE}?attrs=seq&lastN=1000")
    if response.status_code != 200:
        return []
    return sorted(i["value"] for i in response.json().get("seq", []))


def entity(client: TestClient) -> dict[str, Any]:
    return client.get(f"{ENTITIES}/{GAUGE}").json()


@pytest.mark.parametrize(
    "topic,expected",
    [
        ("/river/kim-long/attrs", ("river", "kim-long", None)),
        ("/json/river/kim-long/attrs", ("river", "kim-long", None)),
        ("/river/kim-long/attrs/l", ("river", "kim-long", "l")),
        ("river/kim-long/attrs", None),
        ("/river/kim-long/cmd", None),
    ],
)
def test_southbound_topics_follow_the_iot_agent(topic: str, expected: Any) -> None:
    assert parse_topic(topic) == expected


def test_a_published_measure_updates_the_entity(app: TestClient, device: Publisher) -> None:
    device.publish("/river/kim-long/attrs", {"l": 2.75, "TimeInstant": "2026-11-24T01:00:00Z"})
    level = wait_for(lambda: entity(app).get("waterLevel"))
    assert level["value"] == 2.75 and level["unitCode"] == "MTR"
    assert level["observedAt"] == "2026-11-24T01:00:00.000Z"


def test_single_attribute_and_json_prefixed_topics(app: TestClient, device: Publisher) -> None:
    device.publish("/river/kim-long/attrs/l", b"3.5")
    assert wait_for(lambda: entity(app).get("waterLevel", {}).get("value") == 3.5)
    device.publish("/json/river/kim-long/attrs", {"l": 3.75})
    assert wait_for(lambda: entity(app).get("waterLevel", {}).get("value") == 3.75)


def test_bad_messages_are_dead_lettered_and_do_not_stop_the_agent(
    app: TestClient, device: Publisher
) -> None:
    device.publish("/river/kim-long/attrs", b"\xff not json")
    device.publish("/nokey/kim-long/attrs", {"l": 1})
    device.publish("/river/kim-long/attrs", {"l": "high"})
    device.publish("/river/kim-long/attrs", {"l": 1.25})
    assert wait_for(lambda: entity(app).get("waterLevel", {}).get("value") == 1.25)
    letters = wait_for(lambda: app.get("/iot/deadletters").json()["deadLetters"])
    reasons = [d["reason"] for d in letters]
    assert any("not JSON" in r for r in reasons)
    assert any("not a number" in r for r in reasons)


def test_no_acknowledged_message_is_lost_when_the_mqtt_broker_restarts(
    app: TestClient, device: Publisher, mosquitto: Mosquitto
) -> None:
    for n in range(100):
        device.publish("/river/kim-long/attrs", {"n": n})
    mosquitto.restart()
    assert wait_for(lambda: connected(app), timeout=30)
    publisher = Publisher(mosquitto.port)
    try:
        for n in range(100, 200):
            publisher.publish("/river/kim-long/attrs", {"n": n})
    finally:
        publisher.close()
    assert wait_for(lambda: set(sequence_numbers(app)) == set(range(200)), timeout=30), sorted(
        set(range(200)) - set(sequence_numbers(app))
    )


def test_messages_queued_while_the_platform_was_away_are_all_acknowledged(
    app: TestClient, mosquitto: Mosquitto
) -> None:
    # the MQTT broker sends a session's queued messages right after CONNACK, before the
    # SUBACK: their acknowledgements must count, or the broker sends them all again at the
    # next reconnection (and stops sending once its in-flight window is full)
    mosquitto.restart()
    publisher = Publisher(mosquitto.port)
    try:  # before the platform's client reconnects (its back-off is at least 1 s)
        for n in range(100):
            publisher.publish("/river/kim-long/attrs", {"n": n})
    finally:
        publisher.close()
    assert wait_for(lambda: set(sequence_numbers(app)) == set(range(100)), timeout=30)
    time.sleep(0.5)  # the acknowledgements reach the broker
    mosquitto.restart()
    publisher = Publisher(mosquitto.port)
    try:
        publisher.publish("/river/kim-long/attrs", {"n": 100})
    finally:
        publisher.close()
    assert wait_for(lambda: 100 in sequence_numbers(app), timeout=30)
    time.sleep(0.5)  # anything sent again would arrive with or just after the marker
    assert sequence_numbers(app) == list(range(101))


def test_health_tells_that_the_mqtt_southbound_is_subscribed(app: TestClient) -> None:
    assert connected(app)
    assert app.get("/health").json()["mqtt"] == "subscribed"


def test_health_without_mqtt_says_nothing_of_it(client: TestClient) -> None:
    assert "mqtt" not in client.get("/health").json()


def test_a_dead_mqtt_client_process_is_replaced_and_loses_nothing(
    app: TestClient, device: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    southbound = app.app.state.southbound  # type: ignore[attr-defined]
    agent = app.app.state.ingest  # type: ignore[attr-defined]
    passing = threading.Event()
    dropped: list[object] = []
    submit = agent.submit

    def submit_once_passing(message: object) -> None:
        if passing.is_set():
            submit(message)
        else:  # as if lost with the child: never written, never acknowledged
            dropped.append(message)

    monkeypatch.setattr(agent, "submit", submit_once_passing)
    for n in range(50):
        device.publish("/river/kim-long/attrs", {"n": n})
    assert wait_for(lambda: len(dropped) >= 50, timeout=10)
    first = southbound._child
    first.kill()  # only the MQTT broker's persistent session still holds messages 0-49
    passing.set()
    for n in range(50, 100):
        device.publish("/river/kim-long/attrs", {"n": n})
    assert wait_for(lambda: southbound._child is not first and connected(app), timeout=30)
    assert wait_for(lambda: set(sequence_numbers(app)) == set(range(100)), timeout=30), sorted(
        set(range(100)) - set(sequence_numbers(app))
    )


def test_the_mqtt_client_process_ends_with_the_platform(
    store_url: str, mosquitto: Mosquitto, client_id: str
) -> None:
    with platform(store_url, mosquitto, client_id) as client:
        assert connected(client)
        child = client.app.state.southbound._child  # type: ignore[attr-defined]
        assert child.is_alive()
    assert not child.is_alive()


def test_stopping_while_a_dead_client_process_waits_for_its_restart_is_prompt(
    store_url: str, mosquitto: Mosquitto, client_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("urbanstack.ingest.mqtt.CHILD_RESTART_S", (30.0, 30.0))
    with platform(store_url, mosquitto, client_id) as client:
        southbound = client.app.state.southbound  # type: ignore[attr-defined]
        assert connected(client)
        southbound._child.kill()
        assert wait_for(lambda: southbound.state == "connecting", timeout=10)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5


def test_messages_sent_while_the_platform_is_down_arrive_when_it_is_back(
    store_url: str, mosquitto: Mosquitto, client_id: str, device: Publisher
) -> None:
    with platform(store_url, mosquitto, client_id) as client:
        client.post("/iot/services", json={"services": [GROUP]})
        client.post("/iot/devices", json={"devices": [DEVICE]})
        assert connected(client)
    for n in range(50):
        device.publish("/river/kim-long/attrs", {"n": n})
    with platform(store_url, mosquitto, client_id) as client:
        assert wait_for(lambda: sequence_numbers(client) == list(range(50)), timeout=30)
