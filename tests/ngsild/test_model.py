"""Entity model shortcuts agree with the general path (pure domain)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import normalize_datetime, parse_instance

NOW = "2026-11-24T00:00:00.000000Z"
TERMS = core_term_map()

moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def reference_normalization(text: str) -> str:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@given(moments, st.sampled_from([0, 3, 6]))
def test_utc_timestamps_normalize_like_the_general_path(moment: datetime, decimals: int) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if decimals:
        text += "." + f"{moment.microsecond:06d}"[:decimals]
    text += "Z"
    assert normalize_datetime(text) == reference_normalization(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-01T00:00:00Z",
        "2026-11-01T25:00:00Z",
        "2026-11-31T00:00:00.000Z",
        "2026-11-01Tab:00:00Z",
    ],
)
def test_impossible_utc_timestamps_are_refused(text: str) -> None:
    with pytest.raises(BadRequestData):
        normalize_datetime(text)


readings = st.fixed_dictionaries(
    {
        "value": st.one_of(
            st.integers(), st.floats(allow_nan=False), st.text(max_size=5), st.booleans()
        )
    },
    optional={
        "observedAt": moments.map(lambda m: m.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"),
        "unitCode": st.sampled_from(["GQ", "CEL", "MTR"]),
        "datasetId": st.sampled_from(["urn:ngsi-ld:Dataset:a", "urn:ngsi-ld:Dataset:b"]),
    },
)


@given(readings)
def test_reading_shortcut_gives_what_the_general_path_gives(raw: dict[str, Any]) -> None:
    typed = {"type": "Property", **raw}
    general = parse_instance(raw, TERMS, NOW, "pm25")  # no "type": the general path
    assert parse_instance(typed, TERMS, NOW, "pm25") == general
    assert list(parse_instance(typed, TERMS, NOW, "pm25")) == list(general)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "Property", "value": None},
        {"type": "Property", "value": 1, "unitCode": ""},
        {"type": "Property", "value": 1, "observedAt": "now"},
        {"type": "Property", "value": 1, "datasetId": "not a uri"},
    ],
)
def test_bad_readings_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(BadRequestData):
        parse_instance(raw, TERMS, NOW, "pm25")


def test_now_timestamp_is_the_current_time_in_the_stored_form() -> None:
    from datetime import UTC, datetime

    from urbanstack.ngsild.model import now_timestamp

    before = datetime.now(UTC)
    stamp = now_timestamp()
    after = datetime.now(UTC)
    assert len(stamp) == 27 and stamp.endswith("Z")
    assert before <= datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) <= after


def test_now_timestamp_follows_the_clock_across_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from urbanstack.ngsild import model

    readings = iter(
        [1_700_000_000_999_999_999, 1_700_000_001_000_000_500, 1_700_000_001_000_123_000]
    )
    monkeypatch.setattr(model, "time", types.SimpleNamespace(time_ns=lambda: next(readings)))
    assert [model.now_timestamp() for _ in range(3)] == [
        "2023-11-14T22:13:20.999999Z",
        "2023-11-14T22:13:21.000000Z",
        "2023-11-14T22:13:21.000123Z",
    ]
