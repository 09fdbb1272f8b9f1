"""Against a real `urbanstack serve` process on 127.0.0.1: startup, shutdown, durability."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receivers import HttpReceiver, Mosquitto, wait_for

pytestmark = pytest.mark.server

ENTITY = {
    "id": "urn:ngsi-ld:WaterObserved:kim-long",
    "type": "WaterObserved",
    "height": {"type": "Property", "value": 1.2, "unitCode": "MTR"},
    "location": {
        "type": "GeoProperty",
        "value": {"type": "Point", "coordinates": [107.5625, 16.4651]},
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A urbanstack serve subprocess on a free port."""

    def __init__(self, store: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "URBANSTACK_STORE": f"sqlite:///{store}"}
        env |= {f"URBANSTACK_{name.upper()}": value for name, value in settings.items()}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "urbanstack.cli",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "info",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    self.proc.stdout.read().decode() if self.proc.stdout else "exited"
                )
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise RuntimeError("urbanstack serve did not become healthy")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.proc.stdout.read().decode() if self.proc.stdout else ""


def count_after_restart(store_file: Path) -> int:
    """Start a new server on the same store and count its WaterObserved entities."""
    again = Server(store_file)
    try:
        reply = httpx.get(
            again.url + "/ngsi-ld/v1/entities",
            params={"type": "WaterObserved", "count": "true", "limit": "0"},
        )
        return int(reply.headers["NGSILD-Results-Count"])
    finally:
        again.stop(signal.SIGKILL)


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    return tmp_path / "city.db"


@pytest.fixture
def server(store_file: Path) -> Iterator[Server]:
    srv = Server(store_file)
    try:
        yield srv
    finally:
        srv.stop(signal.SIGKILL)


def test_served_broker_creates_and_retrieves_entity(server: Server) -> None:
    created = httpx.post(server.url + "/ngsi-ld/v1/entities", json=ENTITY)
    assert created.status_code == 201
    got = httpx.get(
        server.url + "/ngsi-ld/v1/entities/" + ENTITY["id"], params={"options": "keyValues"}
    )
    assert got.json()["height"] == 1.2


def test_sigterm_exits_cleanly_and_keeps_data(server: Server, store_file: Path) -> None:
    httpx.post(server.url + "/ngsi-ld/v1/entities", json=ENTITY).raise_for_status()
    # uvicorn re-raises the signal once shut down, so the exit status names SIGTERM
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    log = server.output()
    assert "store closed" in log and "Traceback" not in log
    again = Server(store_file)
    try:
        assert httpx.get(again.url + "/ngsi-ld/v1/entities/" + ENTITY["id"]).status_code == 200
    finally:
        again.stop(signal.SIGKILL)


def test_sigterm_lets_in_flight_request_finish(server: Server, store_file: Path) -> None:
    batch = [{**ENTITY, "id": f"urn:ngsi-ld:WaterObserved:{n}"} for n in range(10000)]
    answers: list[int] = []

    def send() -> None:
        reply = httpx.post(
            server.url + "/ngsi-ld/v1/entityOperations/upsert", json=batch, timeout=60
        )
        answers.append(reply.status_code)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.3)  # the upload is done and the batch is being written
    server.stop(signal.SIGTERM)
    sender.join(60)
    assert answers == [201]
    assert count_after_restart(store_file) == 10000


def test_acknowledged_writes_survive_kill_9(server: Server, store_file: Path) -> None:
    for n in range(50):
        entity = {**ENTITY, "id": f"urn:ngsi-ld:WaterObserved:g{n}"}
        assert httpx.post(server.url + "/ngsi-ld/v1/entities", json=entity).status_code == 201
    server.stop(signal.SIGKILL)
    assert count_after_restart(store_file) == 50


def test_acknowledged_history_survives_kill_9(server: Server, store_file: Path) -> None:
    url = server.url + "/ngsi-ld/v1/entities"
    assert httpx.post(url, json=ENTITY).status_code == 201
    for n in range(30):
        patch = {
            "height": {"type": "Property", "value": n, "observedAt": f"2026-11-01T00:{n:02d}:00Z"}
        }
        reply = httpx.patch(f"{url}/{ENTITY['id']}/attrs", json=patch)
        assert reply.status_code == 204
    server.stop(signal.SIGKILL)
    again = Server(store_file)
    try:
        reply = httpx.get(
            f"{again.url}/ngsi-ld/v1/temporal/entities/{ENTITY['id']}",
            params={"attrs": "height", "options": "temporalValues"},
        )
        values = [v for v, _ in reply.json()["height"]["values"]]
        # the created instance has no observedAt: it is filed at its write time, the latest
        assert values == [*range(30), 1.2]
    finally:
        again.stop(signal.SIGKILL)


def test_notification_pending_at_a_crash_is_delivered_after_restart(
    server: Server, store_file: Path
) -> None:
    receiver = HttpReceiver()  # down while the server writes
    subscription = {
        "type": "Subscription",
        "entities": [{"type": "WaterObserved"}],
        "notification": {"endpoint": {"uri": receiver.url, "accept": "application/json"}},
    }
    reply = httpx.post(server.url + "/ngsi-ld/v1/subscriptions", json=subscription)
    assert reply.status_code == 201
    assert httpx.post(server.url + "/ngsi-ld/v1/entities", json=ENTITY).status_code == 201
    server.stop(signal.SIGKILL)  # the change is acknowledged; its notification never left
    receiver.start()
    again = Server(store_file)
    try:
        data = wait_for(lambda: receiver.data(), timeout=20)
        assert [item["id"] for item in data] == [ENTITY["id"]]
    finally:
        again.stop(signal.SIGKILL)
        receiver.stop()


def test_stream_sends_committed_changes_and_ends_on_sigterm(server: Server) -> None:
    events: list[str] = []
    connected = threading.Event()

    def listen() -> None:
        url = server.url + "/api/stream"
        with httpx.stream("GET", url, params={"type": "WaterObserved"}, timeout=30) as reply:
            for line in reply.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith(("event:", "data:")):
                    events.append(line)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(10)
    other = {**ENTITY, "id": "urn:ngsi-ld:Other:1", "type": "Other"}
    assert httpx.post(server.url + "/ngsi-ld/v1/entities", json=other).status_code == 201
    assert httpx.post(server.url + "/ngsi-ld/v1/entities", json=ENTITY).status_code == 201
    assert wait_for(lambda: len(events) >= 2)
    assert events[0] == "event: created"
    assert json.loads(events[1].removeprefix("data: "))["id"] == ENTITY["id"]
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    assert time.monotonic() - started < 10  # the open stream did not hold the shutdown
    listener.join(5)
    assert events[-2:] == ["event: end", "data: {}"]


def test_version_flag_prints_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "urbanstack.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "urbanstack" in out.stdout


def test_invalid_setting_is_reported_without_traceback() -> None:
    env = {**os.environ, "URBANSTACK_PORT": "http"}
    out = subprocess.run(
        [sys.executable, "-m", "urbanstack.cli", "serve"], capture_output=True, text=True, env=env
    )
    assert out.returncode != 0
    assert "URBANSTACK_PORT" in out.stderr and "Traceback" not in out.stderr


def health(url: str) -> dict[str, Any]:
    reply = httpx.get(f"{url}/health")
    return reply.json() if reply.is_success else {}


def test_measures_acknowledged_by_mqtt_survive_a_kill_9_of_the_platform(store_file: Path) -> None:
    import paho.mqtt.client as mqtt

    broker = Mosquitto(persistent=True).start()
    mqtt_settings = {"mqtt": f"mqtt://127.0.0.1:{broker.port}", "mqtt_client_id": "hue-node-1"}
    server = Server(store_file, **mqtt_settings)
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    gauge = "urn:ngsi-ld:WaterLevelObserved:kim-long"

    def seen(url: str) -> set[int]:
        reply = httpx.get(f"{url}/ngsi-ld/v1/temporal/entities/{gauge}?attrs=seq&lastN=1000")
        return {i["value"] for i in reply.json().get("seq", [])} if reply.is_success else set()

    def publish(n: int) -> None:
        info = publisher.publish("/river/kim-long/attrs", json.dumps({"n": n}), qos=1)
        info.wait_for_publish(10)  # acknowledged by the MQTT broker
        assert info.is_published()

    try:
        group = {
            "apikey": "river",
            "entity_type": "WaterLevelObserved",
            "attributes": [{"object_id": "n", "name": "seq", "type": "Integer"}],
        }
        assert httpx.post(server.url + "/iot/services", json={"services": [group]}).is_success
        device = {"device_id": "kim-long", "entity_name": gauge, "apikey": "river"}
        assert httpx.post(server.url + "/iot/devices", json={"devices": [device]}).is_success
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        assert wait_for(lambda: health(server.url).get("mqtt") == "subscribed", timeout=30)
        publish(0)
        assert wait_for(lambda: 0 in seen(server.url), timeout=20)  # subscribed
        for n in range(1, 300):
            publish(n)
            if n == 150:
                server.stop(signal.SIGKILL)
        server = Server(store_file, **mqtt_settings)
        assert wait_for(lambda: seen(server.url) == set(range(300)), timeout=30), sorted(
            set(range(300)) - seen(server.url)
        )
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        server.stop(signal.SIGKILL)
        broker.stop()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs 2 CPUs or more")
def test_serve_runs_its_event_loop_and_writer_on_the_cpu_it_names(store_file: Path) -> None:
    srv = Server(store_file)
    try:
        loop_cpus = os.sched_getaffinity(srv.proc.pid)  # the main thread's: the event loop
        others = [
            os.sched_getaffinity(int(tid))
            for tid in os.listdir(f"/proc/{srv.proc.pid}/task")
            if int(tid) != srv.proc.pid
        ]
    finally:
        srv.stop()
    banner = srv.output()
    assert len(loop_cpus) == 1
    assert loop_cpus in others  # the SQLite writer (Python 3.11 names no OS thread)
    (cpu,) = loop_cpus
    assert f"event loop and writer on CPU {cpu}" in banner


def test_serve_pins_nothing_when_told_not_to(store_file: Path) -> None:
    srv = Server(store_file, cpu_pinning="off")
    try:
        cpus = os.sched_getaffinity(srv.proc.pid)
    finally:
        srv.stop()
    assert cpus == os.sched_getaffinity(0)
    assert "event loop and writer on CPU" not in srv.output()
