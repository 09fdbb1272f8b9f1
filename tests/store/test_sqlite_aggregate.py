"""SQLite-only: fixed periods read one index range each (dense series) answer exactly what
the grouping of every instance by period answers."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from urbanstack.ngsild.history import deletion_row, history_row
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import parse_entity
from urbanstack.ngsild.temporal import (
    Aggregation,
    TemporalQuery,
    TimeFilter,
    parse_duration,
    to_micros,
)
from urbanstack.store import sqlite_aggregate
from urbanstack.store.base import EntityChange, Write
from urbanstack.store.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
TERMS = core_term_map()
PM25 = TERMS.expand("pm25")
HOUR = 3_600_000_000
MINUTE = 60_000_000
T0 = to_micros("2026-11-01T00:00:00.000000Z")
METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")


def stamp(micros: int) -> str:
    from datetime import UTC, datetime, timedelta

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """Instances go straight into the clustered table, where the joined reading applies."""
    backend = SQLiteStore(tmp_path / "a.db", synchronous="OFF", history_recent_rows=0)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def stored_series(store: SQLiteStore, n: int, values: list[Any], spacing: int) -> None:
    """Entity ``n`` with pm25 instances of ``values`` (None: a deletion), ``spacing`` apart."""
    rows = []
    for i, value in enumerate(values):
        moment = stamp(T0 + 7 * MINUTE + i * spacing)
        if value is None:
            rows.append(deletion_row(PM25, {"type": "Property"}, moment))
        else:
            inst = {"type": "Property", "value": value, "observedAt": moment}
            rows.append(history_row(PM25, inst, moment))
    body = {"id": f"urn:ngsi-ld:S:{n}", "type": "S", "pm25": {"type": "Property", "value": 1}}
    entity = parse_entity(body, TERMS, stamp(T0))
    change = EntityChange(entity["id"], lambda current: Write(entity), history=rows)
    await store.change_entities(None, [change])


async def both_readings(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, n: int, query: TemporalQuery
) -> tuple[Any, Any, list[Any]]:
    """The aggregates read joined (where dense enough) and grouped, and what the density
    probe decided each time the joined reading was possible."""
    decided: list[Any] = []
    probe = sqlite_aggregate._joined_periods

    def spy(*args: Any) -> Any:
        decided.append(probe(*args))
        return decided[-1]

    monkeypatch.setattr(sqlite_aggregate, "_joined_periods", spy)
    joined = await store.get_history(None, f"urn:ngsi-ld:S:{n}", query)
    monkeypatch.setattr(sqlite_aggregate, "_joined_periods", lambda *args: None)
    grouped = await store.get_history(None, f"urn:ngsi-ld:S:{n}", query)
    assert joined is not None and grouped is not None
    return joined.aggregates, grouped.aggregates, decided


def numbers(rng: random.Random, count: int) -> list[Any]:
    return [rng.choice([1.5, 2, 7, 10.25, -3, 0.0, -0.0, 1e120]) for _ in range(count)]


def mixed(rng: random.Random, count: int) -> list[Any]:
    kinds = [1.5, 2, 7, -3, 0.0, "high", "low", True, False, None, {"k": 1}]
    return [rng.choice(kinds) for _ in range(count)]


TIMES = {
    "all": None,
    "after": TimeFilter("after", T0 + 5 * HOUR + 13 * MINUTE),
    "before": TimeFilter("before", T0 + 40 * HOUR + 1),
    "between": TimeFilter("between", T0 + 3 * HOUR, T0 + 30 * HOUR + 30 * MINUTE),
}


@pytest.mark.parametrize("values", [numbers, mixed])
@pytest.mark.parametrize("time", list(TIMES))
@pytest.mark.parametrize("period", ["PT1H", "PT6H", "P1D"])
async def test_dense_periods_read_joined_answer_as_grouped(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, values: Any, time: str, period: str
) -> None:
    await stored_series(store, 1, values(random.Random(f"{period}{time}"), 600), 5 * MINUTE)
    query = TemporalQuery(
        time=TIMES[time], aggregation=Aggregation(METHODS, parse_duration(period))
    )
    joined, grouped, decided = await both_readings(store, monkeypatch, 1, query)
    assert decided and all(d is not None for d in decided)  # 12+ instances a period
    assert joined == grouped
    assert joined[PM25][0].starts  # something was measured


async def test_sparse_periods_are_grouped(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one instance every 3 hours, hourly periods: most periods empty, no index range each
    await stored_series(store, 1, numbers(random.Random(1), 50), 3 * HOUR)
    query = TemporalQuery(aggregation=Aggregation(METHODS, parse_duration("PT1H")))
    joined, grouped, decided = await both_readings(store, monkeypatch, 1, query)
    assert decided == [None]
    assert joined == grouped and len(joined[PM25][0].starts) == 50


async def test_more_periods_than_the_numbers_table_are_grouped(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_aggregate, "MAX_JOINED_PERIODS", 16)
    await stored_series(store, 1, numbers(random.Random(2), 200), 5 * MINUTE)
    query = TemporalQuery(aggregation=Aggregation(METHODS, parse_duration("PT30M")))
    joined, grouped, decided = await both_readings(store, monkeypatch, 1, query)
    assert decided == [None]  # 34 periods
    assert joined == grouped
