"""The demo's devices: provisioned and fed through the IoT agent, like real ones.

The simulator talks to a running platform over its public API only: it upserts the Huế
dataset, provisions one service group per kind of device and one device per station,
then publishes measures (MQTT when a broker is given, else the HTTP southbound). History
is backfilled by sending past measures, with their ``TimeInstant``, in arrays.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from urbanstack.demo import hue, series
from urbanstack.demo.hue import Site

LOGGER = logging.getLogger(__name__)
BATCH_ENTITIES = 200
BACKFILL_CHUNK = 500  # measures per southbound message

#: kind -> (apikey, entity type, attribute mappings)
GROUPS: dict[str, tuple[str, str, list[dict[str, Any]]]] = {
    "air": (
        "hue-demo-air",
        "AirQualityObserved",
        [
            {"object_id": "pm25", "name": "pm25", "type": "Number", "unitCode": "GQ", "min": 0},
            {"object_id": "pm10", "name": "pm10", "type": "Number", "unitCode": "GQ", "min": 0},
            {"object_id": "no2", "name": "no2", "type": "Number", "unitCode": "GQ", "min": 0},
            {"object_id": "o3", "name": "o3", "type": "Number", "unitCode": "GQ", "min": 0},
            {"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"},
            {"object_id": "h", "name": "relativeHumidity", "type": "Number", "min": 0, "max": 1},
        ],
    ),
    "weather": (
        "hue-demo-weather",
        "WeatherObserved",
        [
            {"object_id": "t", "name": "temperature", "type": "Number", "unitCode": "CEL"},
            {"object_id": "h", "name": "relativeHumidity", "type": "Number", "min": 0, "max": 1},
            {"object_id": "rain", "name": "precipitation", "type": "Number", "unitCode": "MMT"},
            {"object_id": "wind", "name": "windSpeed", "type": "Number", "unitCode": "MTS"},
        ],
    ),
    "river": (
        "hue-demo-river",
        "FloodMonitoring",
        [
            {
                "object_id": "level",
                "name": "currentLevel",
                "type": "Number",
                "unitCode": "MTR",
                "min": 0,
                "max": 30,
            }
        ],
    ),
    "traffic": (
        "hue-demo-traffic",
        "TrafficFlowObserved",
        [
            {"object_id": "q", "name": "intensity", "type": "Integer", "min": 0},
            {"object_id": "v", "name": "averageVehicleSpeed", "type": "Number", "unitCode": "KMH"},
            {"object_id": "occ", "name": "occupancy", "type": "Number", "min": 0, "max": 1},
            {"object_id": "jam", "name": "congested", "type": "Boolean"},
        ],
    ),
    "parking": (
        "hue-demo-parking",
        "OffStreetParking",
        [{"object_id": "free", "name": "availableSpotNumber", "type": "Integer", "min": 0}],
    ),
    "visitors": (
        "hue-demo-visitors",
        "Museum",
        [{"object_id": "today", "name": "visitorsToday", "type": "Integer", "min": 0}],
    ),
}


@dataclass(frozen=True)
class DemoDevice:
    """One simulated device and the entity it feeds."""

    kind: str
    site: Site
    entity_id: str
    entity_type: str

    @property
    def device_id(self) -> str:
        return f"{self.kind}-{self.site.key}"

    @property
    def apikey(self) -> str:
        return GROUPS[self.kind][0]


def demo_devices() -> list[DemoDevice]:
    """Every device of the demo city."""
    measured = (
        ("air", hue.AIR_STATIONS, "AirQualityObserved"),
        ("weather", hue.WEATHER_STATIONS, "WeatherObserved"),
        ("river", hue.RIVER_GAUGES, "FloodMonitoring"),
        ("traffic", hue.TRAFFIC_COUNTERS, "TrafficFlowObserved"),
        ("parking", hue.CAR_PARKS, "OffStreetParking"),
    )
    devices = [
        DemoDevice(kind, site, hue.entity_id(entity_type, site.key), entity_type)
        for kind, sites, entity_type in measured
        for site in sites
    ]
    for site in hue.HERITAGE:
        kind = (site.extra or {})["kind"]
        devices.append(DemoDevice("visitors", site, hue.entity_id(kind, site.key), kind))
    return devices


def measure(device: DemoDevice, when: datetime, seed: int, events: list[series.RainEvent]) -> dict:
    """What ``device`` reports at ``when`` (short names, as it would publish them)."""
    site = device.site
    if device.kind == "air":
        return series.air(seed, site, when, events)
    if device.kind == "weather":
        return series.weather_at(seed, site, when, events)
    if device.kind == "river":
        return series.river(seed, site, when, events)
    if device.kind == "traffic":
        return series.traffic(seed, site, when)
    if device.kind == "parking":
        return series.parking(seed, site, when)
    return series.visitors(seed, site, when)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_span(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``45s`` as a timedelta."""
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 30d, 12h, 90m or 45s")
    value, unit = float(match.group(1)), match.group(2)
    return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Simulator:
    """Loads the demo city into a platform and keeps its devices talking."""

    base_url: str
    seed: int = 1
    speed: float = 1.0
    interval: float = 10.0
    mqtt_url: str = ""
    tenant: str | None = None
    events: list[series.RainEvent] = field(default_factory=list)
    devices: list[DemoDevice] = field(default_factory=demo_devices)

    def _headers(self) -> dict[str, str]:
        return {"NGSILD-Tenant": self.tenant} if self.tenant else {}

    async def load_dataset(self, client: httpx.AsyncClient) -> int:
        """Upsert the Huế entities (sites, stations, wards); how many."""
        entities = hue.dataset()
        url = f"{self.base_url}/ngsi-ld/v1/entityOperations/upsert"
        for start in range(0, len(entities), BATCH_ENTITIES):
            chunk = entities[start : start + BATCH_ENTITIES]
            response = await client.post(url, json=chunk, headers=self._headers())
            response.raise_for_status()
        return len(entities)

    async def provision(self, client: httpx.AsyncClient) -> None:
        """One service group per kind of device, one device per station (kept if present)."""
        groups = [
            {"apikey": key, "entity_type": etype, "attributes": attrs, "timezone": hue.TIME_ZONE}
            for key, etype, attrs in GROUPS.values()
        ]
        headers = self._headers()
        for group in groups:
            response = await client.post(
                f"{self.base_url}/iot/services", json={"services": [group]}, headers=headers
            )
            if response.status_code not in (201, 409):
                response.raise_for_status()
        for device in self.devices:
            body = {
                "device_id": device.device_id,
                "entity_name": device.entity_id,
                "entity_type": device.entity_type,
                "apikey": device.apikey,
                "transport": "MQTT" if self.mqtt_url else "HTTP",
            }
            response = await client.post(
                f"{self.base_url}/iot/devices", json={"devices": [body]}, headers=headers
            )
            if response.status_code not in (201, 409):
                response.raise_for_status()

    def backfill_plan(
        self, since: timedelta, step: timedelta, end: datetime
    ) -> Iterator[tuple[DemoDevice, list[dict[str, Any]]]]:
        """(device, measures) chunks covering ``[end - since, end)`` every ``step``."""
        start = end - since
        for device in self.devices:
            chunk: list[dict[str, Any]] = []
            when = start
            while when < end:
                item = measure(device, when, self.seed, self.events)
                item["TimeInstant"] = _stamp(when)
                chunk.append(item)
                if len(chunk) >= BACKFILL_CHUNK:
                    yield device, chunk
                    chunk = []
                when += step
            if chunk:
                yield device, chunk

    async def backfill(
        self,
        client: httpx.AsyncClient,
        since: timedelta,
        step: timedelta = timedelta(minutes=15),
        progress: Callable[[int], None] | None = None,
        end: datetime | None = None,
    ) -> int:
        """Send past measures through the HTTP southbound; how many were accepted."""
        end = end or datetime.now(UTC)
        accepted = 0
        for device, chunk in self.backfill_plan(since, step, end):
            response = await client.post(
                f"{self.base_url}/iot/json",
                params={"k": device.apikey, "i": device.device_id},
                content=orjson.dumps(chunk),
                headers=self._headers(),
                timeout=120,
            )
            response.raise_for_status()
            accepted += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return accepted

    def backfill_size(self, since: timedelta, step: timedelta) -> int:
        """How many measures :meth:`backfill` sends (for a progress bar)."""
        per_device = int(since.total_seconds() // step.total_seconds()) + 1
        return per_device * len(self.devices)

    async def run(self, client: httpx.AsyncClient, duration: float | None = None) -> int:
        """Publish every device's measure each ``interval`` seconds until ``duration`` or
        cancellation. The series run ``speed`` times faster than the clock (a day of
        traffic in minutes), but measures are stamped with the real time: nothing is
        written in the future."""
        publish = self._mqtt_publisher() if self.mqtt_url else None
        began = time.monotonic()
        origin = datetime.now(UTC)
        rounds = 0
        try:
            while duration is None or time.monotonic() - began < duration:
                when = origin + timedelta(seconds=(time.monotonic() - began) * self.speed)
                stamp = _stamp(datetime.now(UTC))
                for device in self.devices:
                    item = measure(device, when, self.seed, self.events)
                    item["TimeInstant"] = stamp
                    if publish is not None:
                        publish(f"/{device.apikey}/{device.device_id}/attrs", orjson.dumps(item))
                    else:
                        await client.post(
                            f"{self.base_url}/iot/json",
                            params={"k": device.apikey, "i": device.device_id},
                            content=orjson.dumps(item),
                            headers=self._headers(),
                        )
                rounds += 1
                await asyncio.sleep(self.interval)
        finally:
            if publish is not None:
                publish("", b"")  # closes the MQTT client
        return rounds

    def _mqtt_publisher(self) -> Callable[[str, bytes], None]:
        from urllib.parse import urlsplit

        import paho.mqtt.client as mqtt

        parts = urlsplit(self.mqtt_url)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if parts.username:
            client.username_pw_set(parts.username, parts.password)
        client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        client.loop_start()

        def publish(topic: str, payload: bytes) -> None:
            if not topic:
                client.disconnect()
                client.loop_stop()
                return
            client.publish(topic, payload, qos=1)

        return publish
