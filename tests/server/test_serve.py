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

import httpx
import pytest

from tests.receivers import HttpReceiver, wait_for

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

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "URBANSTACK_STORE": f"sqlite:///{store}"}
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
