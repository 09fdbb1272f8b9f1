"""`urbanstack migrate`: a whole platform copied from a SQLite store to another store
(every backend), resumable, verified by counts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from urbanstack.api.app import create_app
from urbanstack.migrate import Checkpoint, count, migrate
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.settings import Settings
from urbanstack.store import store_from_url

NGSI = "/ngsi-ld/v1"
GAUGE = "urn:ngsi-ld:WaterLevelObserved:kim-long"
RAIN = "urn:ngsi-ld:RainGauge:phu-oc"


def gauge_history() -> dict[str, Any]:
    return {
        "id": GAUGE,
        "type": "WaterLevelObserved",
        "level": [
            {"type": "Property", "value": 0.5 + h / 10, "observedAt": f"2026-11-20T0{h}:00:00Z"}
            for h in range(8)
        ],
    }


@pytest.fixture
def source(tmp_path: Path) -> str:
    """A SQLite platform with entities of several types, history, a subscription, a
    hosted @context, IoT provisioning and a second tenant."""
    url = f"sqlite:///{tmp_path / 'source.db'}"
    with TestClient(create_app(Settings(store=url, sqlite_synchronous="NORMAL"))) as client:
        assert client.post(f"{NGSI}/temporal/entities", json=gauge_history()).status_code == 201
        entities = [
            {
                "id": f"urn:ngsi-ld:ParkingSpot:{n}",
                "type": ["ParkingSpot", "Asset"] if n % 5 == 0 else "ParkingSpot",
                "status": {"type": "Property", "value": "free"},
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Point", "coordinates": [107.58 + n / 1000, 16.46]},
                },
            }
            for n in range(1200)
        ]
        for start in range(0, len(entities), 500):
            reply = client.post(
                f"{NGSI}/entityOperations/upsert", json=entities[start : start + 500]
            )
            assert reply.status_code in (201, 204), reply.text
        for n in range(3):
            patch = {"status": {"type": "Property", "value": f"busy-{n}"}}
            client.patch(f"{NGSI}/entities/urn:ngsi-ld:ParkingSpot:0/attrs", json=patch)
        subscription = {
            "type": "Subscription",
            "entities": [{"type": "WaterLevelObserved"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/alerts"}},
        }
        assert client.post(f"{NGSI}/subscriptions", json=subscription).status_code == 201
        context = {"@context": {"level": "https://example.org/level"}}
        assert client.post(f"{NGSI}/jsonldContexts", json=context).status_code == 201
        group = {"apikey": "river", "entity_type": "WaterLevelObserved"}
        assert client.post("/iot/services", json={"services": [group]}).status_code == 201
        device = {"device_id": "kim-long", "entity_name": GAUGE, "apikey": "river"}
        assert client.post("/iot/devices", json={"devices": [device]}).status_code == 201
        # a rain gauge taken down: no entity of its types is left, its history is kept
        rain = {
            "id": RAIN,
            "type": ["RainGauge", "Sensor"],
            "rain": [{"type": "Property", "value": 12.5, "observedAt": "2026-11-20T01:00:00Z"}],
        }
        assert client.post(f"{NGSI}/temporal/entities", json=rain).status_code == 201
        assert client.delete(f"{NGSI}/entities/{RAIN}").status_code == 204
        hue = {"NGSILD-Tenant": "hue"}
        museum = {"id": "urn:ngsi-ld:Museum:imperial-city", "type": "Museum"}
        assert client.post(f"{NGSI}/entities", json=museum, headers=hue).status_code == 201
    return url


def test_migrate_copies_everything_and_verifies_counts(
    source: str, store_url: str, tmp_path: Path
) -> None:
    command = [
        sys.executable, "-m", "urbanstack.cli", "migrate", "--from", source, "--to", store_url,
        "--checkpoint", str(tmp_path / "progress.json"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "counts verified" in result.stdout
    with TestClient(create_app(Settings(store=store_url, sqlite_synchronous="NORMAL"))) as client:
        history = client.get(f"{NGSI}/temporal/entities/{GAUGE}?options=temporalValues").json()
        assert [v for v, _ in history["level"]["values"]] == [0.5 + h / 10 for h in range(8)]
        spot = client.get(f"{NGSI}/entities/urn:ngsi-ld:ParkingSpot:0?options=keyValues").json()
        assert spot["status"] == "busy-2" and spot["type"] == ["ParkingSpot", "Asset"]
        near = client.get(
            f"{NGSI}/entities",
            params={
                "type": "ParkingSpot",
                "georel": "near;maxDistance==50",
                "geometry": "Point",
                "coordinates": "[107.58,16.46]",
            },
        ).json()
        assert [e["id"] for e in near] == ["urn:ngsi-ld:ParkingSpot:0"]
        assert len(client.get(f"{NGSI}/subscriptions").json()) == 1
        assert client.get("/iot/devices/kim-long").json()["entity_name"] == GAUGE
        museum = client.get(
            f"{NGSI}/entities/urn:ngsi-ld:Museum:imperial-city", headers={"NGSILD-Tenant": "hue"}
        )
        assert museum.status_code == 200


def test_migrate_keeps_the_history_of_deleted_entities_with_their_types(
    source: str, store_url: str, tmp_path: Path
) -> None:
    rain_types = [core_term_map().expand(t) for t in ("RainGauge", "Sensor")]

    async def run() -> tuple[list[str], dict[str, list[str]], int]:
        src, dst = store_from_url(source), store_from_url(store_url)
        await src.open()
        await dst.open()
        try:
            differences = await migrate(src, dst, Checkpoint.load(tmp_path / "progress.json"))
            types = await dst.history_entity_types(None, [RAIN])
            return differences, types, await dst.count_history(None, rain_types[0])
        finally:
            await src.close()
            await dst.close()

    differences, types, rain_instances = asyncio.run(run())
    assert differences == []
    assert types == {RAIN: rain_types} and rain_instances == 2  # the reading, the deletion
    with TestClient(create_app(Settings(store=store_url, sqlite_synchronous="NORMAL"))) as client:
        assert client.get(f"{NGSI}/entities/{RAIN}").status_code == 404
        history = client.get(f"{NGSI}/temporal/entities/{RAIN}").json()
        assert [i["value"] for i in history["rain"]] == [12.5, "urn:ngsi-ld:null"]


def test_an_interrupted_migration_resumes_without_copying_twice(
    source: str, store_url: str, tmp_path: Path
) -> None:
    checkpoint_file = tmp_path / "progress.json"

    class Interrupted(Exception):
        pass

    async def run(stop_after: int | None) -> list[str]:
        src, dst = store_from_url(source), store_from_url(store_url)
        await src.open()
        await dst.open()
        seen = 0

        def progress(n: int) -> None:
            nonlocal seen
            seen += n
            if stop_after is not None and seen >= stop_after:
                raise Interrupted

        try:
            return await migrate(src, dst, Checkpoint.load(checkpoint_file), progress)
        finally:
            await src.close()
            await dst.close()

    for stop_after in (1, 700, 1300):  # inside the entities, then inside the history
        with pytest.raises(Interrupted):
            asyncio.run(run(stop_after))
    assert asyncio.run(run(None)) == []

    async def history_counts() -> tuple[Any, Any]:
        src, dst = store_from_url(source), store_from_url(store_url)
        await src.open()
        await dst.open()
        try:
            return (await count(src)).history, (await count(dst)).history
        finally:
            await src.close()
            await dst.close()

    before, after = asyncio.run(history_counts())
    assert before == after
    assert sum(before.values()) > 1200
