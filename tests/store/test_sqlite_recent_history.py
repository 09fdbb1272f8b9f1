"""SQLite-only: new history instances wait in ``recent_instances`` and are moved into the
clustered ``attr_instances`` later; every read and change covers both tables, so answers
do not depend on where an instance is."""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from urbanstack.ngsild.history import HistoryRow, history_row
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import Entity, parse_entity
from urbanstack.ngsild.query import EntityQuery
from urbanstack.ngsild.temporal import (
    Aggregation,
    TemporalQuery,
    TimeFilter,
    parse_duration,
    to_micros,
)
from urbanstack.ngsild.typeq import parse_type_query
from urbanstack.store import sqlite_history
from urbanstack.store.base import EntityChange, Write
from urbanstack.store.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio
TERMS = core_term_map()
PM25, NO2 = TERMS.expand("pm25"), TERMS.expand("no2")
STATION_TYPE = TERMS.expand("AirQualityObserved")
HOUR = 3_600_000_000
T0 = to_micros("2026-11-01T00:00:00.000000Z")
METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
NEVER = {"history_recent_rows": 1_000_000, "history_recent_seconds": 3600.0}


def stamp(micros: int) -> str:
    from datetime import UTC, datetime, timedelta

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def station(n: int) -> Entity:
    body = {
        "id": f"urn:ngsi-ld:AirQualityObserved:{n}",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 1},
    }
    return parse_entity(body, TERMS, stamp(T0))


def readings(rng: random.Random, count: int, written: int) -> list[HistoryRow]:
    """Random pm25 and no2 instances (no2 in two datasets), observed out of order."""
    rows = []
    for _ in range(count):
        attr = rng.choice([PM25, NO2])
        inst: dict[str, Any] = {
            "type": "Property",
            "value": rng.choice([1.5, 2, 7, 10.25, -3, "high", True]),
            "observedAt": stamp(T0 + rng.randrange(0, 72 * HOUR, 60_000_000)),
        }
        if attr == NO2 and rng.random() < 0.5:
            inst["datasetId"] = "urn:ngsi-ld:Dataset:b"
        rows.append(history_row(attr, inst, stamp(written)))
    return rows


def record(n: int, rows: list[HistoryRow]) -> EntityChange:
    entity = station(n)
    return EntityChange(entity["id"], lambda current: Write(entity), history=rows)


def table_counts(path: Path) -> tuple[int, int]:
    """Instances in (attr_instances, recent_instances), read from the file."""
    conn = sqlite3.connect(path)
    try:
        return tuple(  # type: ignore[return-value]
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in sqlite_history.TABLES
        )
    finally:
        conn.close()


def table_of(path: Path, iid: Any) -> str | None:
    """The table holding instance ``iid``."""
    conn = sqlite3.connect(path)
    try:
        for table in sqlite_history.TABLES:
            if conn.execute(f"SELECT 1 FROM {table} WHERE iid = ?", (iid,)).fetchone():
                return table
        return None
    finally:
        conn.close()


async def settled(store: SQLiteStore) -> None:
    """Wait for the writer to finish what follows the last commit (a move, when due)."""
    await store._write(None, lambda conn: None)


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[SQLiteStore] = []

    async def open_one(name: str, **options: Any) -> SQLiteStore:
        store = SQLiteStore(tmp_path / name, synchronous="OFF", **options)
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


async def test_new_instances_wait_until_enough_have_arrived(
    open_store: Any, tmp_path: Path
) -> None:
    store = await open_store("h.db", history_recent_rows=10, history_recent_seconds=3600)
    rng = random.Random(1)
    await store.change_entities(None, [record(1, readings(rng, 6, T0))])
    await settled(store)
    assert table_counts(tmp_path / "h.db") == (0, 6)
    await store.change_entities(None, [record(1, readings(rng, 6, T0))])
    await settled(store)
    assert table_counts(tmp_path / "h.db") == (12, 0)


async def test_waiting_instances_are_moved_after_the_longest_wait(
    open_store: Any, tmp_path: Path
) -> None:
    store = await open_store("h.db", history_recent_rows=1000, history_recent_seconds=0.2)
    await store.change_entities(None, [record(1, readings(random.Random(2), 5, T0))])
    for _ in range(100):  # no further write comes: the idle writer moves them
        if table_counts(tmp_path / "h.db") == (5, 0):
            break
        await asyncio.sleep(0.05)
    assert table_counts(tmp_path / "h.db") == (5, 0)


async def test_no_waiting_when_configured_off(open_store: Any, tmp_path: Path) -> None:
    store = await open_store("h.db", history_recent_rows=0)
    await store.change_entities(None, [record(1, readings(random.Random(3), 5, T0))])
    assert table_counts(tmp_path / "h.db") == (5, 0)


async def test_closing_moves_the_waiting_instances(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "h.db", synchronous="OFF", **NEVER)
    await store.open()
    await store.change_entities(None, [record(1, readings(random.Random(4), 5, T0))])
    await store.close()
    assert table_counts(tmp_path / "h.db") == (5, 0)


async def test_instances_left_waiting_by_a_crash_are_read_then_moved(
    open_store: Any, tmp_path: Path
) -> None:
    store = await open_store("h.db", **NEVER)
    await store.change_entities(None, [record(1, readings(random.Random(5), 8, T0))])
    await settled(store)
    before = await store.get_history(None, "urn:ngsi-ld:AirQualityObserved:1", TemporalQuery())
    # the files as a killed process leaves them: committed, never moved
    for suffix in ("", "-wal"):
        shutil.copy(tmp_path / f"h.db{suffix}", tmp_path / f"crashed.db{suffix}")
    restarted = await open_store("crashed.db", history_recent_rows=1000, history_recent_seconds=0.2)
    after = await restarted.get_history(None, "urn:ngsi-ld:AirQualityObserved:1", TemporalQuery())
    assert after == before
    await restarted.change_entities(None, [])  # opens the writer, which finds them waiting
    for _ in range(100):
        if table_counts(tmp_path / "crashed.db") == (8, 0):
            break
        await asyncio.sleep(0.05)
    assert table_counts(tmp_path / "crashed.db") == (8, 0)
    assert await restarted.get_history(None, after.id, TemporalQuery()) == before


def queries() -> list[TemporalQuery]:
    """Reads that take every path: time ranges both ways, lastN, windows cut by the
    instance limit, another time property, attributes, and each kind of aggregation."""
    between = TimeFilter("between", T0 + 10 * HOUR, T0 + 40 * HOUR)
    return [
        TemporalQuery(),
        TemporalQuery(last_n=3),
        TemporalQuery(time=between),
        TemporalQuery(time=TimeFilter("before", T0 + 30 * HOUR)),
        TemporalQuery(time=TimeFilter("after", T0 + 20 * HOUR), instance_limit=5),
        TemporalQuery(time=TimeFilter("before", T0 + 50 * HOUR), instance_limit=4),
        TemporalQuery(timeproperty="modifiedAt", last_n=7),
        TemporalQuery(attrs=frozenset({NO2}), last_n=5),
        TemporalQuery(aggregation=Aggregation(METHODS)),
        TemporalQuery(time=between, aggregation=Aggregation(METHODS, parse_duration("PT1H"))),
        TemporalQuery(aggregation=Aggregation(("max", "totalCount"), parse_duration("P1M"))),
        TemporalQuery(
            timeproperty="modifiedAt", aggregation=Aggregation(METHODS, parse_duration("P1D"))
        ),
    ]


async def answers(store: SQLiteStore) -> list[Any]:
    """Everything the store says about the stations' history."""
    ids = [f"urn:ngsi-ld:AirQualityObserved:{n}" for n in range(3)]
    out: list[Any] = []
    for query in queries():
        out += [await store.get_history(None, entity_id, query) for entity_id in ids]
    types = parse_type_query("AirQualityObserved", TERMS.expand)
    page = await store.query_history(None, EntityQuery(types=types, limit=10), TemporalQuery())
    out.append(page.entities)
    out.append(await store.count_history(None, STATION_TYPE))
    out.append([batch async for batch in store.export_history(None, STATION_TYPE, 7)])
    return out


@pytest.mark.parametrize("seed", range(4))
async def test_answers_and_changes_agree_wherever_instances_are(open_store: Any, seed: int) -> None:
    """The same writes to a store that keeps new instances waiting (some moved, the later
    ones still waiting) and to one that writes them straight into the clustered table."""
    waiting = await open_store("waiting.db", **NEVER)
    clustered = await open_store("clustered.db", history_recent_rows=0)
    rng = random.Random(seed)
    writes = [record(n % 3, readings(rng, rng.randrange(1, 12), T0 + n * HOUR)) for n in range(24)]
    for n, change in enumerate(writes):
        for store in (waiting, clustered):
            await store.change_entities(None, [change])
        if n == 11:
            await waiting._write(None, sqlite_history.move_recent)
    counts = table_counts(waiting.path)
    assert counts[0] > 0 and counts[1] > 0  # both tables hold some
    assert await answers(waiting) == await answers(clustered)

    first = "urn:ngsi-ld:AirQualityObserved:0"
    found = await clustered.get_history(None, first, TemporalQuery())
    assert found is not None
    iids = [row.iid for row in found.attrs[PM25]]
    early, *_, later, late = sorted(iids)  # numbered in writing order: moved, then waiting
    assert table_of(waiting.path, early) == "attr_instances"
    assert table_of(waiting.path, later) == table_of(waiting.path, late) == "recent_instances"
    replacement = readings(random.Random(seed), 1, T0)[0]
    replacement.attr = PM25
    for store in (waiting, clustered):
        assert await store.update_instance(None, first, PM25, late, replacement)
        assert await store.delete_instance(None, first, PM25, early)
        assert not await store.delete_instance(None, first, PM25, early)
        assert await store.delete_instance(None, first, PM25, later)
        dataset = "urn:ngsi-ld:Dataset:b"
        assert await store.delete_attribute_history(None, first, NO2, dataset, False)
        assert await store.prune_history(None, T0 + 5 * HOUR) > 0
        assert await store.delete_history(None, "urn:ngsi-ld:AirQualityObserved:1")
    assert await answers(waiting) == await answers(clustered)


def test_the_wait_starts_with_the_first_waiting_instance() -> None:
    tally = sqlite_history.RecentTally()
    tally.add(0)  # an empty table found at start-up
    assert tally.since is None
    tally.add(3)
    first = tally.since
    assert first is not None
    tally.add(2)
    assert (tally.rows, tally.since) == (5, first)
