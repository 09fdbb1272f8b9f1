"""Temporal parameters, durations and history rows (pure domain, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.history import (
    VT_BOOL,
    VT_JSON,
    VT_NUMBER,
    VT_TEXT,
    HistoryRow,
    TemporalEntity,
    changed_instances,
    common_window,
    decode_value,
    encode_value,
    history_row,
    instance_id,
    parse_instance_id,
    row_instance,
)
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import parse_entity
from urbanstack.ngsild.temporal import (
    Duration,
    bucket_starts,
    from_micros,
    parse_aggregation,
    parse_duration,
    parse_last_n,
    parse_time_filter,
    parse_timeproperty,
    to_micros,
)
from urbanstack.ngsild.temporal_render import content_range

HOUR = 3600 * 1_000_000
T0 = "2026-11-01T00:00:00.000000Z"


# --- times and durations


def test_micros_round_trip_keeps_milliseconds() -> None:
    micros = to_micros("2026-11-01T07:30:15.250000Z")
    assert from_micros(micros) == "2026-11-01T07:30:15.250Z"


def test_micros_of_the_epoch_is_zero() -> None:
    assert to_micros("1970-01-01T00:00:00.000000Z") == 0


def test_micros_before_the_epoch_are_negative() -> None:
    assert to_micros("1969-12-31T23:00:00.000000Z") == -HOUR


@pytest.mark.parametrize(
    ("text", "months", "micros"),
    [
        ("PT1H", 0, HOUR),
        ("P1D", 0, 24 * HOUR),
        ("P1W", 0, 7 * 24 * HOUR),
        ("PT15M", 0, 15 * 60 * 1_000_000),
        ("PT0.5S", 0, 500_000),
        ("P1M", 1, 0),
        ("P1Y2M10DT2H30M", 14, (10 * 24 + 2) * HOUR + 30 * 60 * 1_000_000),
        ("PT0S", 0, 0),
    ],
)
def test_iso_durations_split_into_months_and_micros(text: str, months: int, micros: int) -> None:
    duration = parse_duration(text)
    assert (duration.months, duration.micros) == (months, micros)


@pytest.mark.parametrize("text", ["", "P", "PT", "1H", "PT1H30", "P-1D", "PT1.5H", 5, "P1DT"])
def test_invalid_durations_are_bad_request_data(text: object) -> None:
    with pytest.raises(BadRequestData):
        parse_duration(text)


def test_month_duration_follows_the_calendar() -> None:
    start = to_micros("2026-01-31T00:00:00.000000Z")
    assert from_micros(Duration(months=1).add_to(start)) == "2026-02-28T00:00:00.000Z"


def test_bucket_starts_cover_the_range() -> None:
    origin = to_micros("2026-01-01T00:00:00.000000Z")
    end = to_micros("2026-03-15T00:00:00.000000Z")
    starts = bucket_starts(origin, end, Duration(months=1))
    assert [from_micros(s)[:10] for s in starts] == ["2026-01-01", "2026-02-01", "2026-03-01"]


# --- temporal query parameters


def test_between_keeps_instants_from_time_at_until_before_end() -> None:
    time = parse_time_filter(
        "between", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", required=True
    )
    assert time is not None
    assert time.bounds() == (to_micros(T0), to_micros(T0) + 24 * HOUR)


def test_before_is_exclusive_and_after_inclusive() -> None:
    before = parse_time_filter("before", "2026-11-01T00:00:00Z", None, required=True)
    after = parse_time_filter("after", "2026-11-01T00:00:00Z", None, required=True)
    assert before is not None and after is not None
    assert before.bounds() == (None, to_micros(T0))
    assert after.bounds() == (to_micros(T0), None)


def test_time_filter_is_optional_for_one_entity() -> None:
    assert parse_time_filter(None, None, None, required=False) is None


@pytest.mark.parametrize(
    ("timerel", "at", "end"),
    [
        (None, None, None),  # required
        ("during", "2026-11-01T00:00:00Z", None),
        ("after", None, None),
        ("after", "yesterday", None),
        ("after", "2026-11-01", None),  # a date without a time
        ("between", "2026-11-01T00:00:00Z", None),
        ("between", "2026-11-02T00:00:00Z", "2026-11-01T00:00:00Z"),
        ("before", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
    ],
)
def test_invalid_time_filters_are_bad_request_data(
    timerel: str | None, at: str | None, end: str | None
) -> None:
    with pytest.raises(BadRequestData):
        parse_time_filter(timerel, at, end, required=True)


def test_time_at_without_timerel_is_refused() -> None:
    with pytest.raises(BadRequestData):
        parse_time_filter(None, "2026-11-01T00:00:00Z", None, required=False)


def test_timeproperty_defaults_to_observed_at_and_refuses_others() -> None:
    assert parse_timeproperty(None) == "observedAt"
    assert parse_timeproperty("modifiedAt") == "modifiedAt"
    with pytest.raises(BadRequestData):
        parse_timeproperty("expiresAt")


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_last_n_must_be_a_positive_integer(value: str) -> None:
    with pytest.raises(BadRequestData):
        parse_last_n(value)


def test_aggregation_needs_methods() -> None:
    with pytest.raises(BadRequestData):
        parse_aggregation(None, "PT1H", wanted=True)


def test_aggregation_refuses_unknown_methods() -> None:
    with pytest.raises(BadRequestData):
        parse_aggregation("avg,median", None, wanted=True)


def test_aggregation_parameters_need_aggregated_values() -> None:
    with pytest.raises(BadRequestData):
        parse_aggregation("avg", None, wanted=False)


def test_zero_period_means_one_period_over_the_whole_range() -> None:
    aggregation = parse_aggregation("avg,max,avg", "PT0S", wanted=True)
    assert aggregation is not None
    assert aggregation.methods == ("avg", "max") and aggregation.period is None


# --- history rows


@pytest.mark.parametrize(
    ("value", "vt"),
    [(12.5, VT_NUMBER), (3, VT_NUMBER), (True, VT_BOOL), ("open", VT_TEXT), ({"a": 1}, VT_JSON)],
)
def test_values_keep_their_json_type_through_the_row(value: object, vt: int) -> None:
    code, stored = encode_value({"type": "Property", "value": value})
    assert code == vt
    assert decode_value(code, stored) == value
    assert type(decode_value(code, stored)) is type(value)


def test_row_instance_restores_members_but_not_times() -> None:
    inst = {
        "type": "Property",
        "value": 30,
        "unitCode": "GQ",
        "datasetId": "urn:ngsi-ld:Dataset:a",
        "observedAt": T0,
        "createdAt": T0,
        "modifiedAt": T0,
    }
    row = history_row("https://ex.org/pm25", inst, T0)
    assert row.has_observed and row.observed == to_micros(T0)
    assert row_instance(row) == {
        "type": "Property",
        "value": 30,
        "unitCode": "GQ",
        "datasetId": "urn:ngsi-ld:Dataset:a",
    }


def test_instance_without_observed_at_is_filed_at_its_modification_time() -> None:
    row = history_row("https://ex.org/name", {"type": "Property", "value": "x"}, T0)
    assert not row.has_observed and row.observed == to_micros(T0)


def test_instance_ids_round_trip_and_foreign_ids_are_none() -> None:
    assert parse_instance_id(instance_id(42)) == 42
    assert parse_instance_id("urn:ngsi-ld:Instance:abc") is None
    assert parse_instance_id("urn:ngsi-ld:attribute:instance:4x") is None


def _entity(value: float, now: str, **extra: object) -> dict:
    body = {"id": "urn:ngsi-ld:S:1", "type": "S", "pm25": value, **extra}
    return parse_entity(body, core_term_map(), now)


def test_a_new_entity_records_every_instance() -> None:
    rows = changed_instances(None, _entity(1.0, T0, name="a"))
    assert sorted(r.attr.rsplit("/", 1)[1] for r in rows) == ["name", "pm25"]


def test_only_changed_instances_are_recorded() -> None:
    old = _entity(1.0, T0, name="a")
    new = _entity(2.0, "2026-11-01T01:00:00.000000Z", name="a")
    new["attrs"][next(k for k in new["attrs"] if k.endswith("name"))] = old["attrs"][
        next(k for k in old["attrs"] if k.endswith("name"))
    ]
    rows = changed_instances(old, new)
    assert [r.val for r in rows] == [2.0]


def test_a_repeated_reading_is_recorded_again() -> None:
    old = _entity(1.0, T0)
    new = _entity(1.0, "2026-11-01T01:00:00.000000Z")
    assert [r.val for r in changed_instances(old, new)] == [1.0]


def test_a_deleted_entity_ends_each_instance_with_null() -> None:
    rows = changed_instances(_entity(1.0, T0), None, "2026-11-24T10:00:00.000000Z")
    assert [(r.val, orjson.loads(r.extra or b"{}")) for r in rows] == [
        ("urn:ngsi-ld:null", {"deletedAt": "2026-11-24T10:00:00.000000Z"})
    ]
    assert rows[0].observed == rows[0].modified and not rows[0].has_observed


def test_nothing_before_and_after_records_nothing() -> None:
    assert changed_instances(None, None) == []


def _row(observed: int) -> HistoryRow:
    return HistoryRow("a", "Property", VT_NUMBER, 1, None, None, observed, True, 0, 0, 1)


def test_common_window_cuts_every_entity_to_the_shortest_page() -> None:
    first = TemporalEntity("urn:a", [], {"a": [_row(1), _row(2)]}, window=(0, 3))
    second = TemporalEntity("urn:b", [], {"a": [_row(1), _row(2), _row(3), _row(4)]}, window=None)
    assert common_window([first, second], "observedAt", descending=False) == (0, 3)
    assert [r.observed for r in second.attrs["a"]] == [1, 2]


def test_content_range_names_the_covered_datetime_range() -> None:
    start, end = to_micros(T0), to_micros(T0) + HOUR
    assert (
        content_range((start, end), False, None)
        == "date-time 2026-11-01T00:00:00.000Z-2026-11-01T01:00:00.000Z/*"
    )
    assert content_range((start, end), True, 5).endswith("00:00:00.000Z/5")


@given(st.integers(min_value=-(10**16), max_value=4 * 10**15))
def test_from_micros_agrees_with_datetime(micros: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    assert from_micros(micros) == expected
