"""Plausible, reproducible measurement series for the demo devices (no I/O).

Every value is a pure function of (seed, device, time): diurnal PM2.5 and traffic peaks at
the morning and evening rush hours (local time, Asia/Ho_Chi_Minh), temperature and humidity
following the sun, visitors following opening hours and weekdays, car parks filling with
them, and rain events that raise the rivers past their alarm levels and let them recede.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from urbanstack.demo.hue import TIME_ZONE, Site

LOCAL = ZoneInfo(TIME_ZONE)


@dataclass(frozen=True)
class RainEvent:
    """Heavy rain from ``start`` for 40 % of ``hours``; rivers peak at half of it and are
    back to normal at the end. ``peak`` is the level reached above each alarm III (m)."""

    start: datetime
    hours: float
    peak: float = 0.3

    def phase(self, when: datetime) -> float | None:
        """Where ``when`` falls in the event, 0..1, or None outside it."""
        elapsed = (when - self.start).total_seconds() / 3600.0
        if elapsed < 0 or elapsed > self.hours:
            return None
        return elapsed / self.hours


def _noise(seed: int, key: str, when: datetime, scale: float) -> float:
    """A reproducible jitter in [-scale, scale] per device and 5-minute step."""
    step = int(when.timestamp() // 300)
    return (random.Random(f"{seed}:{key}:{step}").random() * 2.0 - 1.0) * scale


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-(((hour - centre) / width) ** 2))


def _local_hour(when: datetime) -> tuple[float, int]:
    local = when.astimezone(LOCAL)
    return local.hour + local.minute / 60.0 + local.second / 3600.0, local.weekday()


def rush(when: datetime) -> float:
    """0..1 traffic demand: rush hours 7:00 and 17:30, lighter at weekends and nights."""
    hour, weekday = _local_hour(when)
    demand = 0.15 + 0.85 * max(_bump(hour, 7.2, 1.3), _bump(hour, 17.5, 1.6))
    demand += 0.35 * _bump(hour, 12.0, 3.0)
    if hour < 5 or hour > 22:
        demand *= 0.3
    return min(1.0, demand * (0.75 if weekday >= 5 else 1.0))


def rain(when: datetime, events: list[RainEvent]) -> float:
    """Precipitation in mm per hour."""
    for event in events:
        phase = event.phase(when)
        if phase is not None and phase < 0.4:
            return 35.0 * math.sin(math.pi * phase / 0.4) + 5.0
    return 0.0


def air(seed: int, site: Site, when: datetime, events: list[RainEvent]) -> dict[str, Any]:
    """PM2.5, PM10, NO₂, O₃ (µg/m³), temperature, humidity of an air-quality station."""
    hour, _ = _local_hour(when)
    washout = 0.45 if rain(when, events) > 0 else 1.0
    pm25 = (14 + 38 * rush(when) + _noise(seed, site.key + "pm", when, 6)) * washout
    pm25 = max(3.0, pm25 + (8 if site.key in ("dong-ba", "an-cuu") else 0))
    no2 = max(4.0, 12 + 40 * rush(when) + _noise(seed, site.key + "no2", when, 5))
    o3 = max(5.0, 25 + 70 * _bump(hour, 14.0, 3.0) + _noise(seed, site.key + "o3", when, 8))
    weather = weather_at(seed, site, when, events)
    return {
        "pm25": round(pm25, 1),
        "pm10": round(pm25 * 1.6 + abs(_noise(seed, site.key + "pm10", when, 5)), 1),
        "no2": round(no2, 1),
        "o3": round(o3, 1),
        "t": weather["t"],
        "h": weather["h"],
    }


def weather_at(seed: int, site: Site, when: datetime, events: list[RainEvent]) -> dict[str, Any]:
    """Temperature (°C), relative humidity (0..1), precipitation (mm/h), wind (m/s)."""
    hour, _ = _local_hour(when)
    month = when.astimezone(LOCAL).month
    seasonal = 4.0 * math.cos((month - 6.5) / 12.0 * 2 * math.pi)  # hot June, cool January
    wet = rain(when, events)
    temperature = 25 + seasonal + 4.5 * math.sin((hour - 9.0) / 24.0 * 2 * math.pi)
    temperature += _noise(seed, site.key + "t", when, 0.6) - (3.0 if wet else 0.0)
    humidity = 0.78 - 0.15 * math.sin((hour - 9.0) / 24.0 * 2 * math.pi)
    humidity = min(
        0.99, humidity + (0.15 if wet else 0.0) + _noise(seed, site.key + "h", when, 0.03)
    )
    wind = max(0.0, 2.0 + (6.0 if wet else 0.0) + _noise(seed, site.key + "w", when, 1.0))
    return {
        "t": round(temperature, 1),
        "h": round(humidity, 2),
        "rain": round(wet, 1),
        "wind": round(wind, 1),
    }


def river(seed: int, site: Site, when: datetime, events: list[RainEvent]) -> dict[str, Any]:
    """Water level (m) of a gauge: its base level, a small tide, and flood waves."""
    extra = site.extra or {}
    base = float(extra.get("base", 0.5))
    alarm3 = float(extra.get("alarms", (1, 2, 3))[2])
    hour, _ = _local_hour(when)
    level = base + 0.08 * math.sin(hour / 12.4 * 2 * math.pi)
    for event in events:
        phase = event.phase(when)
        if phase is None:
            continue
        peak = alarm3 + event.peak - base
        if phase < 0.5:
            level += peak * (phase / 0.5) ** 1.5
        else:
            level += peak * ((1.0 - phase) / 0.5) ** 1.2
    return {"level": round(max(0.0, level + _noise(seed, site.key + "lvl", when, 0.02)), 2)}


def traffic(seed: int, site: Site, when: datetime) -> dict[str, Any]:
    """Vehicles per hour, average speed (km/h), occupancy (0..1), congestion."""
    capacity = float((site.extra or {}).get("capacity", 2000))
    demand = rush(when) * (1.0 + _noise(seed, site.key + "q", when, 0.08))
    intensity = max(0, int(capacity * 0.95 * demand))
    occupancy = min(1.0, round(demand * 0.9, 2))
    speed = round(max(8.0, 45.0 * (1.0 - 0.75 * occupancy)), 1)
    return {"q": intensity, "v": speed, "occ": occupancy, "jam": occupancy > 0.8}


def _arrivals_per_hour(site: Site, hour: float, weekday: int) -> float:
    extra = site.extra or {}
    opens = int(str(extra.get("opens", "07:00"))[:2])
    closes = int(str(extra.get("closes", "17:30"))[:2])
    if hour < opens or hour >= closes + 0.5:
        return 0.0
    daily = float(extra.get("capacity", 3000)) * (1.4 if weekday >= 5 else 1.0)
    shape = 0.6 * _bump(hour, 9.5, 1.6) + 0.5 * _bump(hour, 14.5, 1.8) + 0.05
    return daily * shape / 8.0


def visitors(seed: int, site: Site, when: datetime) -> dict[str, Any]:
    """Visitors so far today (local day) at a heritage site."""
    local = when.astimezone(LOCAL)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    total = 0.0
    step = timedelta(minutes=15)
    moment = midnight
    while moment < local:
        hour = moment.hour + moment.minute / 60.0
        total += _arrivals_per_hour(site, hour, moment.weekday()) / 4.0
        moment += step
    jitter = 1.0 + _noise(seed, site.key + "v" + str(local.date()), midnight, 0.1)
    return {"today": int(total * jitter)}


def parking(seed: int, site: Site, when: datetime) -> dict[str, Any]:
    """Free spots of a car park: it fills with visitors by day and empties at night."""
    spots = int((site.extra or {}).get("spots", 100))
    hour, weekday = _local_hour(when)
    busy = 0.15 + 0.8 * max(_bump(hour, 10.0, 2.2), _bump(hour, 15.0, 2.0))
    busy *= 1.15 if weekday >= 5 else 1.0
    busy = min(1.0, max(0.0, busy + _noise(seed, site.key + "p", when, 0.05)))
    return {"free": round(spots * (1.0 - busy))}
