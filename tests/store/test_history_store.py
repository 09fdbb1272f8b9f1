"""The history half of the storage contract, run against every backend."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import empty_store_url
from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.history import common_window, deletion_row, history_row
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
from urbanstack.store import store_from_url
from urbanstack.store.base import Delete, EntityChange, EntityStore, Keep, Write

pytestmark = pytest.mark.anyio
#: SQLite runs the suite twice: with new instances waiting in recent_instances (the
#: default; moved after seconds) and with them written straight into the clustered table
STORES: dict[str, tuple[str, dict[str, Any]]] = {
    "sqlite": ("sqlite", {}),
    "sqlite-clustered": ("sqlite", {"history_recent_rows": 0}),
    "postgres": ("postgres", {}),
}
TERMS = core_term_map()
PM25 = TERMS.expand("pm25")
HOUR = 3_600_000_000
DELETED = object()  # marks a deletion instance in the test series
T0 = to_micros("2026-11-01T00:00:00.000000Z")


@pytest.fixture(params=list(STORES))
def store_and_options(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    kind, options = STORES[request.param]
    return empty_store_url(kind, request, tmp_path), options


@pytest.fixture
async def store(store_and_options: tuple[str, dict[str, Any]]) -> AsyncIterator[EntityStore]:
    """A fresh, open store on every backend (SQLite in both history layouts)."""
    url, options = store_and_options
    backend = store_from_url(url, **options)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def stamp(micros: int) -> str:
    from datetime import UTC, datetime, timedelta

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def station(n: int, value: Any, observed: int, now: str = "2026-11-23T10:00:00.000000Z") -> Entity:
    body = {
        "id": f"urn:ngsi-ld:AirQualityObserved:{n}",
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": value, "observedAt": stamp(observed)},
    }
    return parse_entity(body, TERMS, now)


def reading(value: Any, observed: int) -> Any:
    """A history row of pm25 observed at ``observed`` (written at T0)."""
    inst = {"type": "Property", "value": value, "observedAt": stamp(observed)}
    return history_row(PM25, inst, stamp(T0))


def with_history(entity: Entity, rows: list[Any]) -> EntityChange:
    """Write ``entity`` recording ``rows`` as its history (as temporal writes do)."""
    return EntityChange(entity["id"], lambda current: Write(entity), history=rows)


def upsert(entity: Entity) -> EntityChange:
    return EntityChange(entity["id"], lambda current: Write(entity))


def refuse(entity_id: str) -> EntityChange:
    def apply(current: Entity | None) -> Write:
        raise BadRequestData("refused")

    return EntityChange(entity_id, apply)


def delete(entity_id: str, **options: Any) -> EntityChange:
    return EntityChange(entity_id, lambda c: Delete() if c else Keep(), **options)


async def values(store: EntityStore, entity_id: str, **query: Any) -> list[Any] | None:
    found = await store.get_history(None, entity_id, TemporalQuery(**query))
    if found is None:
        return None
    return [row.val for row in found.attrs.get(PM25, [])]


@pytest.mark.parametrize("attrs", [None, (PM25,)], ids=["all", "named"])
async def test_every_dataset_of_an_attribute_is_its_own_series(
    store: EntityStore, attrs: tuple[str, ...] | None
) -> None:
    datasets = [None, "urn:ngsi-ld:Dataset:a", "urn:ngsi-ld:Dataset:b"]
    rows = []
    for i, dataset in enumerate(datasets):
        inst = {"type": "Property", "value": i, "observedAt": stamp(T0 + i * HOUR)}
        if dataset:
            inst["datasetId"] = dataset
        rows.append(history_row(PM25, inst, stamp(T0)))
    entity = station(1, 0, T0)
    await store.change_entities(None, [with_history(entity, rows)])
    found = await store.get_history(None, entity["id"], TemporalQuery(attrs=attrs))
    assert found is not None
    assert sorted((r.dataset_id or "", r.val) for r in found.attrs[PM25]) == [
        ("", 0),
        ("urn:ngsi-ld:Dataset:a", 1),
        ("urn:ngsi-ld:Dataset:b", 2),
    ]


async def test_each_write_records_its_changed_instances(store: EntityStore) -> None:
    for hour in range(3):
        await store.change_entities(None, [upsert(station(1, hour * 10, T0 + hour * HOUR))])
    assert await values(store, "urn:ngsi-ld:AirQualityObserved:1") == [0, 10, 20]


async def test_changes_in_one_call_are_recorded_in_order(store: EntityStore) -> None:
    changes = [upsert(station(1, v, T0 + v * HOUR)) for v in (3, 1, 2)]
    await store.change_entities(None, changes)
    found = await store.get_history(None, "urn:ngsi-ld:AirQualityObserved:1", TemporalQuery())
    assert found is not None
    rows = found.attrs[PM25]
    assert [r.val for r in rows] == [1, 2, 3]  # by time
    assert [r.iid for r in sorted(rows, key=lambda r: r.iid or 0)] == sorted(r.iid for r in rows)
    assert len({r.iid for r in rows}) == 3


async def test_a_refused_change_records_nothing(store: EntityStore) -> None:
    await store.change_entities(None, [upsert(station(1, 5, T0))])
    results = await store.change_entities(None, [refuse("urn:ngsi-ld:AirQualityObserved:1")])
    assert not results[0].ok
    assert await values(store, "urn:ngsi-ld:AirQualityObserved:1") == [5]


async def test_keep_writes_no_history(store: EntityStore) -> None:
    await store.change_entities(None, [upsert(station(1, 5, T0))])
    keep = EntityChange("urn:ngsi-ld:AirQualityObserved:1", lambda c: Keep())
    await store.change_entities(None, [keep])
    assert await values(store, "urn:ngsi-ld:AirQualityObserved:1") == [5]


async def test_explicit_history_rows_replace_derived_ones(store: EntityStore) -> None:
    entity = station(1, 5, T0)
    rows = [
        history_row(
            PM25, {"type": "Property", "value": v, "observedAt": stamp(T0 - v * HOUR)}, stamp(T0)
        )
        for v in (1, 2)
    ]
    await store.change_entities(
        None, [EntityChange(entity["id"], lambda c: Write(entity), history=rows)]
    )
    assert await values(store, entity["id"]) == [2, 1]


async def test_deleting_keeps_history_unless_told(store: EntityStore) -> None:
    await store.change_entities(None, [upsert(station(1, 5, T0)), upsert(station(2, 6, T0))])
    await store.change_entities(None, [delete("urn:ngsi-ld:AirQualityObserved:1")])
    assert await values(store, "urn:ngsi-ld:AirQualityObserved:1") == [5, "urn:ngsi-ld:null"]
    await store.change_entities(
        None, [delete("urn:ngsi-ld:AirQualityObserved:2", drop_history=True)]
    )
    assert await values(store, "urn:ngsi-ld:AirQualityObserved:2") is None


async def test_store_configured_to_drop_history_on_delete(store_url: str) -> None:
    backend = store_from_url(store_url)
    backend.keep_history_on_delete = False
    await backend.open()
    try:
        entity_id = "urn:ngsi-ld:AirQualityObserved:1"
        await backend.change_entities(None, [upsert(station(1, 5, T0))])
        # deleted then re-created in one call: only the new entity's history remains
        await backend.change_entities(None, [delete(entity_id), upsert(station(1, 7, T0 + HOUR))])
        assert await values(backend, entity_id) == [7]
    finally:
        await backend.close()


def reference_aggregate(
    points: list[tuple[int, float]], origin: int, step: int
) -> dict[int, dict[str, float]]:
    """Pure-Python aggregation of (time, value) points per fixed period, for checking SQL."""
    buckets: dict[int, list[float]] = {}
    for moment, value in points:
        buckets.setdefault((moment - origin) // step, []).append(value)
    out = {}
    for index, vals in buckets.items():
        n = len(vals)
        mean = sum(vals) / n
        out[index] = {
            "totalCount": n,
            "distinctCount": len(set(vals)),
            "sum": sum(vals),
            "avg": mean,
            "min": min(vals),
            "max": max(vals),
            "sumsq": sum(v * v for v in vals),
            "stddev": 0.0 if n == 1 else math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)),
        }
    return out


@pytest.mark.parametrize("period", ["PT1H", "PT15M", "P1D"])
async def test_sql_aggregation_agrees_with_python_on_random_data(
    store: EntityStore, period: str
) -> None:
    rng = random.Random(period)
    points = sorted(
        {
            T0 + rng.randrange(0, 48 * HOUR, 60_000_000): rng.choice([1.5, 2, 7, 10.25, -3])
            for _ in range(300)
        }.items()
    )
    entity = station(1, points[-1][1], points[-1][0])
    rows = [
        history_row(PM25, {"type": "Property", "value": v, "observedAt": stamp(t)}, stamp(T0))
        for t, v in points
    ]
    await store.change_entities(
        None, [EntityChange(entity["id"], lambda c: Write(entity), history=rows)]
    )
    methods = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
    duration = parse_duration(period)
    query = TemporalQuery(time=TimeFilter("after", T0), aggregation=Aggregation(methods, duration))
    found = await store.get_history(None, entity["id"], query)
    assert found is not None and found.aggregates is not None
    [series] = found.aggregates[PM25]
    expected = reference_aggregate(points, T0, duration.micros)
    assert len(series.buckets) == len(expected)
    for bucket in series.buckets:
        index = (bucket.start - T0) // duration.micros
        assert bucket.end - bucket.start == duration.micros
        for method in methods:
            assert bucket.values[method] == pytest.approx(expected[index][method]), method


async def test_aggregating_a_mixed_series_agrees_with_each_period_alone(
    store: EntityStore,
) -> None:
    # numbers-only series take a shorter query; a period holding text, JSON or a deletion
    # sends the series to the general one: both must give the same periods
    periods: list[list[Any]] = [
        [1, 2.5],  # numbers
        [True, False],  # booleans
        ["a", "b"],  # text
        ["c", 3],  # text among numbers, a number last
        [{"k": 1}, 4],  # JSON among numbers
        [True, 7],  # a boolean and a number
        [6, DELETED, 8],  # a deletion among numbers
        [5],  # numbers, last of the series
    ]
    methods = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
    query = TemporalQuery(
        time=TimeFilter("after", T0), aggregation=Aggregation(methods, parse_duration("PT1H"))
    )

    async def aggregate(n: int, points: list[tuple[int, Any]]) -> list[Any]:
        entity = station(n, points[-1][1], points[-1][0])
        rows = [
            deletion_row(PM25, {"type": "Property"}, stamp(moment))
            if value is DELETED
            else reading(value, moment)
            for moment, value in points
        ]
        await store.change_entities(None, [with_history(entity, rows)])
        found = await store.get_history(None, entity["id"], query)
        assert found is not None and found.aggregates is not None
        [series] = found.aggregates[PM25]
        return [(b.start - T0, b.values) for b in series.buckets]

    def points_of(index: int) -> list[tuple[int, Any]]:
        return [(T0 + index * HOUR + k * 60_000_000, v) for k, v in enumerate(periods[index])]

    whole = await aggregate(0, [p for i in range(len(periods)) for p in points_of(i)])
    alone = [await aggregate(i + 1, points_of(i)) for i in range(len(periods))]
    assert [offset for offset, _ in whole] == [i * HOUR for i in range(len(periods))]
    for i, (offset, values) in enumerate(whole):
        [(alone_offset, alone_values)] = alone[i]
        assert alone_offset == offset and alone_values == values, periods[i]
    assert whole[0][1]["sum"] == 3.5 and whole[7][1]["max"] == 5
    assert whole[2][1]["sum"] is None and whole[2][1]["min"] == "a"
    assert whole[6][1]["totalCount"] == 2 and whole[6][1]["sum"] == 14


@pytest.mark.parametrize("period", [None, "P1M"])
async def test_aggregating_a_whole_range_or_months_leaves_deletions_out(
    store: EntityStore, period: str | None
) -> None:
    # the same numbers with and without a deletion among them, the last value a number:
    # one series takes the numbers-only query, the other the general one
    methods = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
    duration = parse_duration(period) if period else None
    query = TemporalQuery(time=TimeFilter("after", T0), aggregation=Aggregation(methods, duration))
    answers = []
    for n, with_deletion in ((1, False), (2, True)):
        values: list[Any] = [1, 2.5, 4, DELETED, 5] if with_deletion else [1, 2.5, 4, 5]
        moments = [T0 + i * HOUR for i in range(len(values))]
        rows = [
            deletion_row(PM25, {"type": "Property"}, stamp(moment))
            if value is DELETED
            else reading(value, moment)
            for moment, value in zip(moments, values, strict=True)
        ]
        entity = station(n, 5, moments[-1])
        await store.change_entities(None, [with_history(entity, rows)])
        found = await store.get_history(None, entity["id"], query)
        assert found is not None and found.aggregates is not None
        [series] = found.aggregates[PM25]
        [bucket] = series.buckets
        answers.append(bucket.values)
    assert answers[0] == answers[1]
    assert answers[0]["totalCount"] == 4 and answers[0]["distinctCount"] == 4
    assert answers[0]["sum"] == 12.5 and answers[0]["min"] == 1 and answers[0]["max"] == 5


async def test_paging_through_windows_returns_every_instance_once(store: EntityStore) -> None:
    rng = random.Random(7)
    moments = sorted({T0 + rng.randrange(0, 100) * HOUR for _ in range(60)})
    entity = station(1, 0, moments[-1])
    rows = [
        history_row(PM25, {"type": "Property", "value": i, "observedAt": stamp(t)}, stamp(T0))
        for i, t in enumerate(moments)
    ]
    await store.change_entities(
        None, [EntityChange(entity["id"], lambda c: Write(entity), history=rows)]
    )
    seen: list[int] = []
    start = T0
    for _ in range(100):
        query = TemporalQuery(time=TimeFilter("after", start), instance_limit=7)
        found = await store.get_history(None, entity["id"], query)
        assert found is not None
        window = common_window([found], "observedAt", descending=False)
        seen += [r.val for r in found.attrs.get(PM25, [])]
        if window is None:
            break
        start = window[1]
    assert seen == list(range(len(moments)))


async def test_query_history_selects_on_current_state(store: EntityStore) -> None:
    await store.change_entities(None, [upsert(station(n, n, T0)) for n in range(5)])
    query = EntityQuery(
        types=parse_type_query("AirQualityObserved", TERMS.expand), limit=2, count=True
    )
    page = await store.query_history(None, query, TemporalQuery(time=TimeFilter("after", T0)))
    assert page.total == 5
    assert [e.id for e in page.entities] == [
        "urn:ngsi-ld:AirQualityObserved:0",
        "urn:ngsi-ld:AirQualityObserved:1",
    ]


async def test_instances_can_be_replaced_and_deleted(store: EntityStore) -> None:
    entity_id = "urn:ngsi-ld:AirQualityObserved:1"
    await store.change_entities(None, [upsert(station(1, 5, T0)), upsert(station(1, 6, T0 + HOUR))])
    found = await store.get_history(None, entity_id, TemporalQuery())
    assert found is not None
    first = found.attrs[PM25][0].iid
    assert first is not None
    replacement = history_row(
        PM25, {"type": "Property", "value": 50, "observedAt": stamp(T0)}, stamp(T0)
    )
    assert await store.update_instance(None, entity_id, PM25, first, replacement)
    assert await values(store, entity_id) == [50, 6]
    assert await store.delete_instance(None, entity_id, PM25, first)
    assert not await store.delete_instance(None, entity_id, PM25, first)
    assert await values(store, entity_id) == [6]
    assert await store.delete_attribute_history(None, entity_id, PM25, None, False)
    assert await values(store, entity_id) == []
    assert await store.delete_history(None, entity_id)
    assert await values(store, entity_id) is None


async def test_prune_deletes_only_older_instances(store: EntityStore) -> None:
    await store.change_entities(None, [upsert(station(1, v, T0 + v * HOUR)) for v in range(4)])
    assert await store.prune_history(None, T0 + 2 * HOUR) == 2
    assert await values(store, "urn:ngsi-ld:AirQualityObserved:1") == [2, 3]


async def test_export_yields_every_instance_of_the_type_in_batches(store: EntityStore) -> None:
    await store.change_entities(
        None, [upsert(station(n, v, T0 + v * HOUR)) for n in range(3) for v in range(4)]
    )
    type_iri = TERMS.expand("AirQualityObserved")
    assert await store.count_history(None, type_iri) == 12
    batches = [b async for b in store.export_history(None, type_iri, batch_size=5)]
    assert all(0 < len(b) <= 5 for b in batches)
    exported = [(entity_id, row.val) for batch in batches for entity_id, row in batch]
    assert exported == [
        (f"urn:ngsi-ld:AirQualityObserved:{n}", v) for n in range(3) for v in range(4)
    ]
    assert await store.count_history(None, TERMS.expand("Streetlight")) == 0


async def test_history_types_count_deleted_entities_too(store: EntityStore) -> None:
    await store.change_entities(None, [upsert(station(1, 5, T0)), upsert(station(2, 6, T0))])
    await store.change_entities(None, [delete("urn:ngsi-ld:AirQualityObserved:1")])
    station_type = TERMS.expand("AirQualityObserved")
    assert await store.history_types(None) == {station_type: 2}
    types = await store.history_entity_types(
        None, ["urn:ngsi-ld:AirQualityObserved:1", "urn:ngsi-ld:Nothing:9"]
    )
    assert types == {"urn:ngsi-ld:AirQualityObserved:1": [station_type]}
