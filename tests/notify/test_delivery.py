"""Notifications reach real receivers (an HTTP server, a mosquitto broker), in order,
and are never silently dropped: a receiver that is down gets them once it is up."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.postgres_cluster import PostgresCluster, drop_coordination_connection
from tests.receivers import HttpReceiver, Mosquitto, free_port, make_certificates, wait_for
from urbanstack.api.app import create_app
from urbanstack.settings import Settings

BASE = "/ngsi-ld/v1"
ENTITIES = f"{BASE}/entities"
SUBSCRIPTIONS = f"{BASE}/subscriptions"
GAUGE = "urn:ngsi-ld:WaterLevelObserved:perfume-river-kim-long"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


def retrying_client(store_url: str, ca: Path | None = None) -> TestClient:
    """A client whose worker retries failed deliveries after 50 ms (then 100, 200...) and,
    with ``ca``, trusts that CA for https:// and mqtts:// endpoints."""
    settings = Settings(
        store=store_url,
        sqlite_synchronous="NORMAL",
        notification_retry_base=0.05,
        notification_retry_max=0.2,
        notification_ca_file=str(ca) if ca else "",
    )
    return TestClient(create_app(settings))


@pytest.fixture
def fast_retries(store_url: str) -> Iterator[TestClient]:
    with retrying_client(store_url) as client:
        yield client


def first_failure(client: TestClient, sub_id: str) -> Any:
    """The subscription's notification status once a delivery failed (None on time-out)."""

    def failed() -> Any:
        body = client.get(f"{SUBSCRIPTIONS}/{sub_id}").json()["notification"]
        return body if body.get("timesFailed", 0) >= 1 else None

    return wait_for(failed)


def subscribe(client: TestClient, uri: str, **members: Any) -> str:
    notification = {"endpoint": {"uri": uri, "accept": "application/json"}}
    notification.update(members.pop("notification", {}))
    body = {
        "type": "Subscription",
        "entities": [{"type": "WaterLevelObserved"}],
        "notification": notification,
        **members,
    }
    response = client.post(SUBSCRIPTIONS, json=body)
    assert response.status_code == 201, response.text
    return response.headers["Location"].rsplit("/", 1)[1]


def gauge(level: float, entity_id: str = GAUGE, entity_type: str = "WaterLevelObserved") -> dict:
    return {
        "id": entity_id,
        "type": entity_type,
        "waterLevel": {"type": "Property", "value": level, "unitCode": "MTR"},
        "name": "Kim Long",
    }


def level(client: TestClient, value: float, entity_id: str = GAUGE) -> None:
    patch = {"waterLevel": {"type": "Property", "value": value, "unitCode": "MTR"}}
    response = client.patch(f"{ENTITIES}/{entity_id}/attrs", json=patch)
    assert response.status_code == 204


def levels(receiver: HttpReceiver) -> list[Any]:
    return [d["waterLevel"]["value"] for d in receiver.data() if "waterLevel" in d]


def test_an_update_is_notified(client: TestClient, receiver: HttpReceiver) -> None:
    sub_id = subscribe(client, receiver.url)
    client.post(ENTITIES, json=gauge(1.2))
    level(client, 2.7)
    assert wait_for(lambda: len(levels(receiver)) >= 2)
    path, headers, body = receiver.received[-1]
    assert path == "/notify" and headers["Content-Type"] == "application/json"
    assert body["type"] == "Notification" and body["subscriptionId"] == sub_id
    assert body["id"].startswith("urn:") and body["notifiedAt"].endswith("Z")
    assert levels(receiver)[-1] == 2.7


def test_notification_ids_are_unique_with_one_prefix_per_process(
    client: TestClient, receiver: HttpReceiver
) -> None:
    subscribe(client, receiver.url)
    client.post(ENTITIES, json=gauge(1.0))
    level(client, 2.0)
    assert wait_for(lambda: len(levels(receiver)) >= 2)
    ids = [body["id"] for _, _, body in receiver.received]
    prefixes = {i.rsplit("-", 1)[0] for i in ids}
    assert len(set(ids)) == len(ids) and len(prefixes) == 1  # random source read once
    assert ids[0].startswith("urn:ngsi-ld:Notification:")


def test_changes_to_other_types_are_not_notified(
    client: TestClient, receiver: HttpReceiver
) -> None:
    subscribe(client, receiver.url)
    client.post(ENTITIES, json=gauge(9.9, "urn:ngsi-ld:Other:1", "RainfallObserved"))
    client.post(ENTITIES, json=gauge(1.0))
    assert wait_for(lambda: receiver.data())
    assert [d["id"] for d in receiver.data()] == [GAUGE]


def test_q_filters_notifications(client: TestClient, receiver: HttpReceiver) -> None:
    subscribe(client, receiver.url, q="waterLevel>2.5")
    client.post(ENTITIES, json=gauge(1.0))
    for value in (2.0, 2.6, 1.5, 3.1):
        level(client, value)
    assert wait_for(lambda: len(levels(receiver)) >= 2)
    time.sleep(0.2)
    assert levels(receiver) == [2.6, 3.1]


def test_watched_attributes_ignore_other_changes(
    client: TestClient, receiver: HttpReceiver
) -> None:
    client.post(ENTITIES, json=gauge(1.0))
    subscribe(client, receiver.url, watchedAttributes=["waterLevel"])
    client.patch(f"{ENTITIES}/{GAUGE}/attrs", json={"name": "Kim Long gauge"})
    level(client, 2.0)
    assert wait_for(lambda: receiver.data())
    time.sleep(0.2)
    assert levels(receiver) == [2.0]


def test_notification_attributes_and_key_values(client: TestClient, receiver: HttpReceiver) -> None:
    subscribe(
        client, receiver.url, notification={"attributes": ["waterLevel"], "format": "keyValues"}
    )
    client.post(ENTITIES, json=gauge(1.4))
    [item] = wait_for(lambda: receiver.data())
    assert item == {"id": GAUGE, "type": "WaterLevelObserved", "waterLevel": 1.4}


def test_receiver_info_becomes_headers(client: TestClient, receiver: HttpReceiver) -> None:
    endpoint = {
        "uri": receiver.url,
        "accept": "application/json",
        "receiverInfo": [{"key": "X-Hue-Token", "value": "flood-2026"}],
    }
    subscribe(client, receiver.url, notification={"endpoint": endpoint})
    client.post(ENTITIES, json=gauge(1.0))
    assert wait_for(lambda: receiver.received)
    assert receiver.received[0][1]["X-Hue-Token"] == "flood-2026"


def test_notifications_arrive_in_the_order_of_the_changes(
    client: TestClient, receiver: HttpReceiver
) -> None:
    subscribe(client, receiver.url, watchedAttributes=["waterLevel"])
    client.post(ENTITIES, json=gauge(0.0))
    values = [round(0.1 * n, 1) for n in range(1, 41)]
    for value in values:
        level(client, value)
    assert wait_for(lambda: len(levels(receiver)) >= 41)
    assert levels(receiver) == [0.0, *values]


def test_status_counts_sent_notifications(client: TestClient, receiver: HttpReceiver) -> None:
    sub_id = subscribe(client, receiver.url)
    client.post(ENTITIES, json=gauge(1.0))
    assert wait_for(lambda: receiver.data())

    def sent() -> Any:
        body = client.get(f"{SUBSCRIPTIONS}/{sub_id}").json()["notification"]
        return body if body.get("timesSent", 0) >= 1 else None

    notification = wait_for(sent)
    assert notification["status"] == "ok" and notification["lastSuccess"].endswith("Z")


def test_a_receiver_that_was_down_gets_everything_once_up(fast_retries: TestClient) -> None:
    client = fast_retries
    receiver = HttpReceiver()  # not started: connection refused
    sub_id = subscribe(client, receiver.url)
    client.post(ENTITIES, json=gauge(1.0))
    level(client, 2.0)
    notification = first_failure(client, sub_id)
    assert notification["status"] == "failed" and notification["lastFailure"].endswith("Z")
    receiver.start()
    try:
        assert wait_for(lambda: len(levels(receiver)) >= 2)
        assert levels(receiver) == [1.0, 2.0]
    finally:
        receiver.stop()


def test_a_receiver_answering_errors_is_retried(
    fast_retries: TestClient, receiver: HttpReceiver
) -> None:
    receiver.status = 503
    subscribe(fast_retries, receiver.url)
    fast_retries.post(ENTITIES, json=gauge(1.0))
    time.sleep(0.3)
    receiver.status = 200
    assert wait_for(lambda: levels(receiver) == [1.0])


def test_a_failing_receiver_does_not_delay_the_others(
    client: TestClient, receiver: HttpReceiver
) -> None:
    subscribe(client, f"http://127.0.0.1:{free_port()}/dead")
    subscribe(client, receiver.url)
    started = time.monotonic()
    client.post(ENTITIES, json=gauge(1.0))
    assert wait_for(lambda: receiver.data(), timeout=2)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("version", ["mqtt3.1.1", "mqtt5.0"])
def test_mqtt_endpoint_receives_the_notification(client: TestClient, version: str) -> None:
    import paho.mqtt.client as mqtt

    broker = Mosquitto().start()
    messages: list[Any] = []
    subscribed = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_message = lambda c, u, m: messages.append((m.topic, json.loads(m.payload)))
    listener.on_subscribe = lambda *args: subscribed.set()
    listener.connect("127.0.0.1", broker.port)
    listener.subscribe("hue/flood", qos=1)
    listener.loop_start()
    try:
        assert subscribed.wait(5)
        endpoint = {
            "uri": f"mqtt://127.0.0.1:{broker.port}/hue/flood",
            "accept": "application/json",
            "notifierInfo": [
                {"key": "MQTT-QoS", "value": "1"},
                {"key": "MQTT-Version", "value": version},
            ],
        }
        subscribe(client, endpoint["uri"], notification={"endpoint": endpoint})
        client.post(ENTITIES, json=gauge(3.3))
        assert wait_for(lambda: messages)
        topic, message = messages[0]
        assert topic == "hue/flood"
        assert message["body"]["type"] == "Notification"
        assert message["body"]["data"][0]["waterLevel"]["value"] == 3.3
        assert message["metadata"]["Content-Type"] == "application/json"
    finally:
        listener.loop_stop()
        listener.disconnect()
        broker.stop()


def test_time_interval_notifies_current_state_periodically(
    client: TestClient, receiver: HttpReceiver
) -> None:
    client.post(ENTITIES, json=gauge(1.5))
    client.post(ENTITIES, json=gauge(9.0, "urn:ngsi-ld:RainfallObserved:1", "RainfallObserved"))
    subscribe(client, receiver.url, timeInterval=1)
    assert wait_for(lambda: len(receiver.notifications()) >= 2, timeout=6)
    first, second = receiver.notifications()[:2]
    assert [d["id"] for d in first["data"]] == [GAUGE]
    assert [d["id"] for d in second["data"]] == [GAUGE]
    level(client, 2.2)  # a change is not notified by a periodic subscription...
    count = len(receiver.notifications())
    assert wait_for(lambda: len(receiver.notifications()) > count, timeout=4)
    assert levels(receiver)[-1] == 2.2  # ...but the next period carries it


def test_deletion_is_notified_with_deleted_at(client: TestClient, receiver: HttpReceiver) -> None:
    client.post(ENTITIES, json=gauge(1.0))
    subscribe(client, receiver.url, notificationTrigger=["entityDeleted"])
    level(client, 2.0)  # not an entityDeleted
    assert client.delete(f"{ENTITIES}/{GAUGE}").status_code == 204
    [item] = wait_for(lambda: receiver.data())
    assert item["id"] == GAUGE and item["deletedAt"].endswith("Z")


def test_show_changes_carries_the_previous_value(
    client: TestClient, receiver: HttpReceiver
) -> None:
    client.post(ENTITIES, json=gauge(1.0))
    subscribe(client, receiver.url, notification={"showChanges": True})
    level(client, 2.5)
    [item] = wait_for(lambda: receiver.data())
    assert item["waterLevel"]["value"] == 2.5 and item["waterLevel"]["previousValue"] == 1.0


def test_ld_json_endpoint_gets_the_context_in_the_body(
    client: TestClient, receiver: HttpReceiver
) -> None:
    endpoint = {"uri": receiver.url, "accept": "application/ld+json"}
    subscribe(client, receiver.url, notification={"endpoint": endpoint})
    client.post(ENTITIES, json=gauge(1.0))
    assert wait_for(lambda: receiver.received)
    _, headers, body = receiver.received[0]
    assert headers["Content-Type"] == "application/ld+json"
    assert "ngsi-ld-core-context" in json.dumps(body["@context"])


def test_tenant_notifications_name_their_tenant(client: TestClient, receiver: HttpReceiver) -> None:
    headers = {"NGSILD-Tenant": "hue"}
    body = {
        "type": "Subscription",
        "entities": [{"type": "WaterLevelObserved"}],
        "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}},
    }
    assert client.post(SUBSCRIPTIONS, json=body, headers=headers).status_code == 201
    client.post(ENTITIES, json=gauge(1.0))  # the default tenant: nobody subscribed there
    client.post(ENTITIES, json=gauge(4.0), headers=headers)
    assert wait_for(lambda: receiver.received)
    time.sleep(0.2)
    assert [h["NGSILD-Tenant"] for _, h, _ in receiver.received] == ["hue"]
    assert levels(receiver) == [4.0]


def test_paused_subscription_sends_nothing(client: TestClient, receiver: HttpReceiver) -> None:
    paused = subscribe(client, receiver.url)
    client.patch(f"{SUBSCRIPTIONS}/{paused}", json={"isActive": False})
    subscribe(client, receiver.url, q="waterLevel>5")
    client.post(ENTITIES, json=gauge(1.0))
    client.post(ENTITIES, json=gauge(6.0, "urn:ngsi-ld:WaterLevelObserved:2"))
    assert wait_for(lambda: receiver.data())
    time.sleep(0.2)
    assert levels(receiver) == [6.0]


# --- TLS: https:// and mqtts:// endpoints, verified against the configured CA


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 it signed: (CA, certificate, key)."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_https_endpoint_signed_by_the_configured_ca_is_notified(
    store_url: str, certificates: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = certificates
    receiver = HttpReceiver(tls=(cert, key)).start()
    try:
        with retrying_client(store_url, ca) as client:
            assert receiver.url.startswith("https://")
            subscribe(client, receiver.url)
            client.post(ENTITIES, json=gauge(4.2))
            assert wait_for(lambda: levels(receiver)) == [4.2]
    finally:
        receiver.stop()


def test_https_endpoint_with_an_untrusted_certificate_fails(
    store_url: str, certificates: tuple[Path, Path, Path]
) -> None:
    _, cert, key = certificates
    receiver = HttpReceiver(tls=(cert, key)).start()
    try:
        with retrying_client(store_url, None) as client:  # the system CAs only
            sub_id = subscribe(client, receiver.url)
            client.post(ENTITIES, json=gauge(4.2))
            notification = first_failure(client, sub_id)
            assert notification["status"] == "failed"
            assert receiver.data() == []
    finally:
        receiver.stop()


def test_mqtts_endpoint_receives_the_notification(
    store_url: str, certificates: tuple[Path, Path, Path]
) -> None:
    import paho.mqtt.client as mqtt

    ca, cert, key = certificates
    broker = Mosquitto(tls=(ca, cert, key)).start()
    messages: list[Any] = []
    subscribed = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.tls_set(ca_certs=str(ca))
    listener.on_message = lambda c, u, m: messages.append(json.loads(m.payload))
    listener.on_subscribe = lambda *args: subscribed.set()
    listener.connect("127.0.0.1", broker.port)
    listener.subscribe("hue/flood", qos=1)
    listener.loop_start()
    try:
        assert subscribed.wait(5)
        with retrying_client(store_url, ca) as client:
            uri = f"mqtts://127.0.0.1:{broker.port}/hue/flood"
            endpoint = {
                "uri": uri,
                "accept": "application/json",
                "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
            }
            subscribe(client, uri, notification={"endpoint": endpoint})
            client.post(ENTITIES, json=gauge(5.1))
            assert wait_for(lambda: messages)
            assert messages[0]["body"]["data"][0]["waterLevel"]["value"] == 5.1
    finally:
        listener.loop_stop()
        listener.disconnect()
        broker.stop()


def test_a_subscription_pattern_too_slow_to_match_fails_no_write(
    client: TestClient, receiver: HttpReceiver
) -> None:
    pattern = "urn:ngsi-ld:WaterLevelObserved:(a|aa)+$"
    slow = {"entities": [{"idPattern": pattern, "type": "WaterLevelObserved"}]}
    subscribe(client, receiver.url, **slow)
    subscribe(client, receiver.url)  # every gauge, the one that must still be told
    stuck = "urn:ngsi-ld:WaterLevelObserved:" + "a" * 40 + "!"
    assert client.post(ENTITIES, json=gauge(1.0, stuck)).status_code == 201
    assert client.post(ENTITIES, json=gauge(2.0)).status_code == 201
    assert wait_for(lambda: sorted(levels(receiver)) == [1.0, 2.0])
    assert client.get(f"{ENTITIES}/{stuck}").status_code == 200


def _drop_coordination(client: TestClient) -> None:
    """End the app's PostgreSQL coordination connection from the server side."""
    store = client.app.state.broker.store  # type: ignore[attr-defined]
    asyncio.run(drop_coordination_connection(store))


def _notified_once(client: TestClient, receiver: HttpReceiver) -> None:
    """Subscribe, create the gauge at 1.0 and wait for its notification."""
    subscribe(client, receiver.url)
    client.post(ENTITIES, json=gauge(1.0))
    assert wait_for(lambda: levels(receiver) == [1.0])


def test_notifications_flow_again_after_the_lock_connection_is_lost(
    postgres_cluster: PostgresCluster, receiver: HttpReceiver
) -> None:
    settings = Settings(store=postgres_cluster.empty_store())
    with TestClient(create_app(settings)) as client:
        _notified_once(client, receiver)

        _drop_coordination(client)
        for value in (2.0, 3.0):
            level(client, value)

        assert wait_for(lambda: levels(receiver) == [1.0, 2.0, 3.0])


def test_a_subscription_made_while_announcements_were_lost_is_loaded_after_reconnecting(
    postgres_cluster: PostgresCluster, receiver: HttpReceiver
) -> None:
    url = postgres_cluster.empty_store()
    with (
        TestClient(create_app(Settings(store=url))) as writer,
        TestClient(create_app(Settings(store=url))) as other,
    ):
        index = other.app.state.broker.subscriptions  # type: ignore[attr-defined]
        # made on the other process's store without telling anyone, as when its NOTIFY
        # was lost: the other process does not know it
        sub_id = subscribe(writer, receiver.url)
        index.remove(None, sub_id)
        assert index.get(None, sub_id) is None

        _drop_coordination(other)

        assert wait_for(lambda: index.get(None, sub_id) is not None)


def test_a_database_restart_loses_no_write_and_no_notification(
    postgres_cluster: PostgresCluster, receiver: HttpReceiver
) -> None:
    settings = Settings(store=postgres_cluster.empty_store())
    with TestClient(create_app(settings)) as client:
        subscribe(client, receiver.url)
        client.post(ENTITIES, json=gauge(1.0))
        level(client, 2.0)
        assert wait_for(lambda: levels(receiver) == [1.0, 2.0])

        postgres_cluster.restart()
        level(client, 3.0)

        assert wait_for(lambda: levels(receiver) == [1.0, 2.0, 3.0])
        entity = client.get(f"{ENTITIES}/{GAUGE}").json()
        assert entity["waterLevel"]["value"] == 3.0
