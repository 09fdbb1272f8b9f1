"""The demo's series: reproducible, plausible, and the rain event floods the rivers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from urbanstack.demo import hue, series
from urbanstack.demo.simulator import demo_devices, measure, parse_span

KIM_LONG = hue.RIVER_GAUGES[0]
IMPERIAL_CITY = hue.HERITAGE[0]
# 2026-11-24 is a Tuesday; local time is UTC+7
MORNING_RUSH = datetime(2026, 11, 24, 0, 15, tzinfo=UTC)  # 07:15 local
NIGHT = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)  # 03:00 local


def test_the_same_seed_gives_the_same_values() -> None:
    when = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    for device in demo_devices():
        assert measure(device, when, 7, []) == measure(device, when, 7, [])


def test_another_seed_gives_other_values() -> None:
    station = hue.AIR_STATIONS[0]
    when = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    assert series.air(1, station, when, []) != series.air(2, station, when, [])


def test_pm25_and_traffic_peak_at_the_morning_rush() -> None:
    station, counter = hue.AIR_STATIONS[0], hue.TRAFFIC_COUNTERS[0]
    assert (
        series.air(1, station, MORNING_RUSH, [])["pm25"] > series.air(1, station, NIGHT, [])["pm25"]
    )
    assert (
        series.traffic(1, counter, MORNING_RUSH)["q"] > 3 * series.traffic(1, counter, NIGHT)["q"]
    )


def test_visitors_come_during_opening_hours_and_add_up() -> None:
    assert series.visitors(1, IMPERIAL_CITY, NIGHT)["today"] == 0
    noon = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    evening = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert series.visitors(1, IMPERIAL_CITY, noon)["today"] > 0
    assert (
        series.visitors(1, IMPERIAL_CITY, noon)["today"]
        < series.visitors(1, IMPERIAL_CITY, evening)["today"]
    )


def test_car_parks_never_report_more_free_spots_than_they_have() -> None:
    for site in hue.CAR_PARKS:
        for hour in range(24):
            free = series.parking(1, site, NIGHT + timedelta(hours=hour))["free"]
            assert 0 <= free <= site.extra["spots"]  # type: ignore[index]


def test_the_rain_event_raises_the_river_past_alarm_three_and_lets_it_recede() -> None:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    event = series.RainEvent(start, 48.0)
    levels = [
        series.river(1, KIM_LONG, start + timedelta(hours=h), [event])["level"]
        for h in range(0, 49)
    ]
    alarm_three = KIM_LONG.extra["alarms"][2]  # type: ignore[index]
    assert max(levels) > alarm_three
    assert levels[0] < 1.0 and levels[-1] < 1.0
    assert series.river(1, KIM_LONG, start - timedelta(hours=5), [event])["level"] < 1.0
    assert series.rain(start + timedelta(hours=4), [event]) > 10


def test_durations_are_parsed() -> None:
    assert parse_span("30d") == timedelta(days=30)
    assert parse_span("90m") == timedelta(minutes=90)
