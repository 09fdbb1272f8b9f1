"""SQLite-only: fixed periods read one index range each (dense series) answer exactly what
the grouping of every instance by period answers."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from urbanstack.ngsild.history import VT_NUMBER, deletion_row, history_row
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import parse_entity
from urbanstack.ngsild.temporal import (
    Aggregation,
    TemporalQuery,
    TimeFilter,
    parse_duration,
    to_micros,
)
from urbanstack.ngsild.temporal_render import format_time
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
        moment = format_time(T0 + 7 * MINUTE + i * spacing)
        if value is None:
            rows.append(deletion_row(PM25, {"type": "Property"}, moment))
        else:
            inst = {"type": "Property", "value": value, "observedAt": moment}
            rows.append(history_row(PM25, inst, moment))
    body = {"id": f"urn:ngsi-ld:S:{n}", "type": "S", "pm25": {"type": "Property", "value": 1}}
    entity = parse_entity(body, TERMS, format_time(T0))
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


async def shapes_of(store: SQLiteStore) -> dict[int, int]:
    return await store._read(None, lambda c: dict(c.execute("SELECT * FROM history_shapes")))


ONLY = {  # numbers of one type: reals, reals with zeros (read the general way), integers
    "reals": [1.5, 10.25, -3.0, 7.0, 0.1, 1e-5, 123456.789],
    "zeros": [1.5, 0.0, -0.0, 7.0],
    "integers": [2, 7, -3, 0, 11, 2**40],
}


@pytest.mark.parametrize("recent", [0, 1_000_000], ids=["clustered", "recent"])
@pytest.mark.parametrize("period", ["PT1H", "P1D", "P1M", None])
@pytest.mark.parametrize("only", list(ONLY))
async def test_a_numbers_only_attribute_is_measured_without_types_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recent: int, period: str | None, only: str
) -> None:
    store = SQLiteStore(tmp_path / "u.db", synchronous="OFF", history_recent_rows=recent)
    await store.open()
    try:
        rng = random.Random(3)
        values = [rng.choice(ONLY[only]) for _ in range(400)]
        await stored_series(store, 1, values, 5 * MINUTE)
        duration = parse_duration(period) if period else None
        query = TemporalQuery(time=TIMES["between"], aggregation=Aggregation(METHODS, duration))
        seen: list[Any] = []
        uniform = sqlite_aggregate._uniform
        monkeypatch.setattr(
            sqlite_aggregate, "_uniform", lambda s: seen.append(uniform(s)) or seen[-1]
        )
        fast = await store.get_history(None, "urn:ngsi-ld:S:1", query)
        monkeypatch.setattr(sqlite_aggregate, "_uniform", lambda s: None)
        checked = await store.get_history(None, "urn:ngsi-ld:S:1", query)
        assert seen and seen[0] is not None
        assert fast is not None and checked is not None
        assert fast.aggregates == checked.aggregates
    finally:
        await store.close()


async def test_each_value_type_written_is_recorded_per_attribute(store: SQLiteStore) -> None:
    await stored_series(store, 1, [1.5, 2.5], MINUTE)
    [(pid, reals)] = (await shapes_of(store)).items()
    assert sqlite_aggregate._uniform(reals) == (0, VT_NUMBER, True)
    await stored_series(store, 2, ["text"], MINUTE)
    assert sqlite_aggregate._uniform((await shapes_of(store))[pid]) is None


async def test_integers_and_reals_of_one_attribute_are_not_uniform(store: SQLiteStore) -> None:
    await stored_series(store, 1, [1, 2], MINUTE)
    [(pid, integers)] = (await shapes_of(store)).items()
    assert sqlite_aggregate._uniform(integers) == (0, VT_NUMBER, False)
    await stored_series(store, 2, [2.5], MINUTE)
    assert sqlite_aggregate._uniform((await shapes_of(store))[pid]) is None


async def test_a_deletion_makes_an_attribute_not_uniform(store: SQLiteStore) -> None:
    await stored_series(store, 1, [1, 2, None], MINUTE)
    assert sqlite_aggregate._uniform(next(iter((await shapes_of(store)).values()))) is None


async def test_an_instance_replaced_by_text_makes_its_attribute_not_uniform(
    store: SQLiteStore,
) -> None:
    await stored_series(store, 1, [1, 2, 3], MINUTE)
    found = await store.get_history(None, "urn:ngsi-ld:S:1", TemporalQuery())
    assert found is not None
    row = found.attrs[PM25][1]
    inst = {"type": "Property", "value": "now text", "observedAt": format_time(row.observed)}
    assert await store.update_instance(
        None, "urn:ngsi-ld:S:1", PM25, row.iid, history_row(PM25, inst, format_time(T0))
    )
    assert sqlite_aggregate._uniform(next(iter((await shapes_of(store)).values()))) is None
    query = TemporalQuery(aggregation=Aggregation(METHODS, None))
    answer = await store.get_history(None, "urn:ngsi-ld:S:1", query)
    assert answer is not None and answer.aggregates is not None
    [bucket] = answer.aggregates[PM25][0].buckets
    assert bucket.values["sum"] == 4 and bucket.values["avg"] == 2  # of the two numbers


async def test_upgrading_a_file_records_the_shapes_of_its_history(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "old.db", synchronous="OFF", history_recent_rows=0)
    await store.open()
    await stored_series(store, 1, [1, 2.5], MINUTE)
    await stored_series(store, 2, [3], MINUTE)
    await store.close()
    conn = sqlite3.connect(tmp_path / "old.db")  # as schema 7 left it: no such table
    expected = dict(conn.execute("SELECT * FROM history_shapes"))
    conn.execute("DROP TABLE history_shapes")
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    store = SQLiteStore(tmp_path / "old.db", synchronous="OFF")
    await store.open()
    try:
        assert await shapes_of(store) == expected
    finally:
        await store.close()
