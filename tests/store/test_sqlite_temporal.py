"""SQLite-only routing of temporal reads: the last few instances of named attributes are
read on the event loop, everything else on the reader threads; the answers are the same."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from urbanstack.ngsild.history import history_row
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import parse_entity
from urbanstack.ngsild.temporal import Aggregation, TemporalQuery, from_micros, to_micros
from urbanstack.store.base import EntityChange, Write
from urbanstack.store.sqlite import SQLiteStore
from urbanstack.store.sqlite_temporal import SMALL_HISTORY_READ, is_small_history_read

pytestmark = pytest.mark.anyio
TERMS = core_term_map()
PM25 = TERMS.expand("pm25")
NO2 = TERMS.expand("no2")
T0 = to_micros("2026-11-01T00:00:00.000000Z")
STATION = "urn:ngsi-ld:AirQualityObserved:hue-1"


@pytest.mark.parametrize(
    "query,small",
    [
        (TemporalQuery(last_n=100, attrs=frozenset({PM25})), True),
        (TemporalQuery(last_n=SMALL_HISTORY_READ // 2, attrs=frozenset({PM25, NO2})), True),
        (TemporalQuery(last_n=SMALL_HISTORY_READ + 1, attrs=frozenset({PM25})), False),
        (TemporalQuery(last_n=100), False),  # every attribute: unbounded
        (TemporalQuery(attrs=frozenset({PM25})), False),  # a whole time line
        (
            TemporalQuery(
                last_n=10, attrs=frozenset({PM25}), aggregation=Aggregation(("totalCount",))
            ),
            False,
        ),
    ],
)
def test_only_bounded_last_n_reads_are_small(query: TemporalQuery, small: bool) -> None:
    assert is_small_history_read(query) is small


async def test_a_small_read_answers_without_the_reader_threads(
    tmp_path: Path, forbid_reader_threads: Callable[[Any], None]
) -> None:
    store = SQLiteStore(tmp_path / "h.db", synchronous="OFF")
    await store.open()
    try:
        rows = [
            history_row(
                PM25,
                {"type": "Property", "value": v, "observedAt": from_micros(T0 + v * 3_600_000_000)},
                "2026-11-23T00:00:00.000Z",
            )
            for v in range(20)
        ]
        pm25 = {"type": "Property", "value": 19}
        body = {"id": STATION, "type": "AirQualityObserved", "pm25": pm25}
        entity = parse_entity(body, TERMS, "2026-11-23T00:00:00.000Z")
        await store.change_entities(
            None, [EntityChange(STATION, lambda current: Write(entity), history=rows)]
        )

        forbid_reader_threads(store)
        recent = TemporalQuery(last_n=3, attrs=frozenset({PM25}))
        last = await store.get_history(None, STATION, recent)
        assert last is not None
        assert [row.val for row in last.attrs[PM25]] == [17, 18, 19]
        with pytest.raises(AssertionError, match="reader thread"):
            await store.get_history(None, STATION, TemporalQuery(attrs=frozenset({PM25})))
    finally:
        await store.close()
