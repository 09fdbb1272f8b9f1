"""The simulator feeds a real `urbanstack serve` through its public API and IoT agent;
`urbanstack demo` brings the whole demo up with one command."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.receivers import Mosquitto, free_port, wait_for
from tests.server.test_serve import Server
from urbanstack.demo import hue
from urbanstack.demo.series import RainEvent
from urbanstack.demo.simulator import Simulator, demo_devices

pytestmark = pytest.mark.server
NGSI = "/ngsi-ld/v1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "demo.db")
    try:
        yield srv
    finally:
        srv.stop(signal.SIGKILL)


def count(url: str, entity_type: str) -> int:
    reply = httpx.get(
        f"{url}{NGSI}/entities", params={"type": entity_type, "count": "true", "limit": "0"}
    )
    return int(reply.headers["NGSILD-Results-Count"])


def test_the_dataset_and_devices_are_loaded_through_the_api(server: Server) -> None:
    now = datetime.now(UTC)
    sim = Simulator(server.url, events=[RainEvent(now - timedelta(hours=30), 24.0)])

    async def run() -> int:
        async with httpx.AsyncClient(timeout=60) as client:
            await sim.load_dataset(client)
            await sim.provision(client)
            return await sim.backfill(client, timedelta(days=2), timedelta(hours=1), end=now)

    sent = asyncio.run(run())
    assert sent == 48 * len(demo_devices())
    assert count(server.url, "AirQualityObserved") == len(hue.AIR_STATIONS)
    assert count(server.url, "Museum") == 4 and count(server.url, "PointOfInterest") == 3
    assert count(server.url, "AdministrativeArea") == len(hue.WARDS)
    devices = httpx.get(f"{server.url}/iot/devices", params={"limit": 100}).json()
    assert devices["count"] == len(demo_devices())
    gauge = hue.entity_id("FloodMonitoring", "kim-long")
    history = httpx.get(
        f"{server.url}{NGSI}/temporal/entities/{gauge}",
        params={"attrs": "currentLevel", "options": "temporalValues", "lastN": "100"},
    ).json()
    levels = [value for value, _ in history["currentLevel"]["values"]]
    assert len(levels) == 48
    assert max(levels) > 3.5  # the flood of the backfilled past crossed alarm III


def test_a_fast_simulation_never_writes_in_the_future(server: Server) -> None:
    sim = Simulator(server.url, speed=3600.0, interval=0.2)  # an hour of the city a second

    async def run() -> int:
        async with httpx.AsyncClient(timeout=60) as client:
            await sim.load_dataset(client)
            await sim.provision(client)
            return await sim.run(client, duration=2.0)

    assert asyncio.run(run()) >= 2
    finished = datetime.now(UTC)
    gauge = hue.entity_id("FloodMonitoring", "kim-long")
    level = httpx.get(f"{server.url}{NGSI}/entities/{gauge}").json()["currentLevel"]
    observed = datetime.fromisoformat(level["observedAt"].replace("Z", "+00:00"))
    assert finished - timedelta(seconds=10) <= observed <= finished


def test_simulate_publishes_live_over_mqtt(tmp_path: Path) -> None:
    broker = Mosquitto().start()
    srv = Server(tmp_path / "live.db", mqtt=f"mqtt://127.0.0.1:{broker.port}")
    try:
        command = [
            sys.executable, "-m", "urbanstack.cli", "simulate", "--url", srv.url,
            "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--interval", "0.5", "--duration", "4",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        parking = hue.entity_id("OffStreetParking", "ngo-mon")

        def free_spots() -> object:
            reply = httpx.get(
                f"{srv.url}{NGSI}/entities/{parking}", params={"options": "keyValues"}
            )
            return reply.json().get("availableSpotNumber")

        assert wait_for(lambda: free_spots() is not None, timeout=20)
        assert 0 <= free_spots() <= 220  # type: ignore[operator]
    finally:
        srv.stop(signal.SIGKILL)
        broker.stop()


def test_demo_command_serves_a_living_city(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "URBANSTACK_LOG_LEVEL": "warning"}
    command = [
        sys.executable, "-m", "urbanstack.cli", "demo", "--port", str(port), "--backfill", "6h",
        "--store", f"sqlite:///{tmp_path / 'demo.db'}",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        deadline = time.monotonic() + 90
        line = ""
        while time.monotonic() < deadline and "open http" not in line:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
        assert f"open http://127.0.0.1:{port}/" in line
        url = f"http://127.0.0.1:{port}"
        assert count(url, "FloodMonitoring") == 2
        station = hue.entity_id("AirQualityObserved", "imperial-city")
        reply = httpx.get(f"{url}{NGSI}/entities/{station}", params={"options": "keyValues"})
        assert reply.json()["status"] == "online"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
