"""Aggregated periods (per-method columns, their rendering) and the instance budget of a read."""

from __future__ import annotations

import math

from urbanstack.ngsild.history import (
    VT_BOOL,
    VT_JSON,
    VT_NUMBER,
    VT_TEXT,
    AttributeAggregate,
    TemporalEntity,
    instance_budget,
    period_columns,
)
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.representation import RenderOptions
from urbanstack.ngsild.temporal import Aggregation, TemporalQuery, from_micros
from urbanstack.ngsild.temporal_render import render_temporal_entity

ALL = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
HOUR = 3_600_000_000


def measured(**columns: list[object]) -> dict[str, list[object]]:
    n = len(next(iter(columns.values())))
    base: dict[str, list[object]] = {
        name: [None] * n
        for name in ("count", "distinct", "numbers", "sum", "squares", "min", "max")
    }
    return {**base, "vt": [VT_NUMBER] * n, **columns}


def test_number_periods_get_every_method() -> None:
    m = measured(
        count=[3, 1],
        distinct=[2, 1],
        numbers=[3, 1],
        sum=[6.0, 5.0],
        squares=[14.0, 25.0],
        min=[1.0, 5.0],
        max=[3.0, 5.0],
    )
    values = period_columns(ALL, m, ["Property", "Property"])
    assert values["totalCount"] == [3, 1]
    assert values["distinctCount"] == [2, 1]
    assert values["sum"] == [6.0, 5.0]
    assert values["avg"] == [2.0, 5.0]
    assert values["min"] == [1.0, 5.0] and values["max"] == [3.0, 5.0]
    assert values["sumsq"] == [14.0, 25.0]
    assert math.isclose(values["stddev"][0], 1.0) and values["stddev"][1] == 0.0


def test_only_the_requested_methods_are_returned() -> None:
    m = measured(count=[2], numbers=[2], sum=[3.0])
    assert period_columns(("avg", "totalCount"), m, ["Property"]) == {
        "avg": [1.5],
        "totalCount": [2],
    }


def test_text_periods_have_no_average_nor_deviation() -> None:
    m = measured(count=[2], distinct=[2], numbers=[0], min=["a"], max=["b"], vt=[VT_TEXT])
    values = period_columns(ALL, m, ["Property"])
    assert values["avg"] == [None] and values["stddev"] == [None]
    assert values["min"] == ["a"] and values["max"] == ["b"]


def test_boolean_minimum_and_maximum_are_booleans_only_in_boolean_periods() -> None:
    m = measured(count=[2, 1], min=[0, 4.0], max=[1, 4.0], vt=[VT_BOOL, VT_NUMBER])
    values = period_columns(("min", "max"), m, ["Property", "Property"])
    assert values["min"] == [False, 4.0] and values["max"] == [True, 4.0]
    assert type(values["min"][0]) is bool and type(values["min"][1]) is float


def test_json_and_relationship_periods_have_no_minimum_nor_maximum() -> None:
    m = measured(count=[1, 1, 1], min=["{}", "urn:a", 2.0], max=["{}", "urn:a", 2.0])
    m["vt"] = [VT_JSON, VT_TEXT, VT_NUMBER]
    values = period_columns(("min", "max"), m, ["JsonProperty", "Relationship", "Property"])
    assert values["min"] == [None, None, 2.0] and values["max"] == [None, None, 2.0]


def test_given_values_replace_the_measured_sum_minimum_and_maximum() -> None:
    m = measured(count=[2], numbers=[2], sum=[3.0], min=[1.0], max=[2.0], squares=[5.0])
    given = {"sum": [3], "min": [1], "max": [2]}
    values = period_columns(("sum", "min", "max", "avg"), m, ["Property"], given)
    assert values == {"sum": [3], "min": [1], "max": [2], "avg": [1.5]}
    assert type(values["sum"][0]) is int


def test_buckets_list_each_period_with_its_values() -> None:
    aggregate = AttributeAggregate(
        "https://x/pm25", "Property", None, [0, HOUR], [HOUR, 2 * HOUR], {"sum": [1.0, 2.0]}
    )
    [first, second] = aggregate.buckets
    assert (first.start, first.end, first.values) == (0, HOUR, {"sum": 1.0})
    assert (second.start, second.end, second.values) == (HOUR, 2 * HOUR, {"sum": 2.0})


def test_rendering_pairs_each_value_with_its_own_period() -> None:
    # the second period does not start where the first ends (a gap, as with calendar
    # periods left empty), so each end is its own time
    aggregate = AttributeAggregate(
        "https://x/pm25",
        "Property",
        "urn:ngsi-ld:Dataset:a",
        [0, 3 * HOUR],
        [HOUR, 4 * HOUR],
        {"totalCount": [2, 5], "sum": [1.5, 7.0]},
    )
    entity = TemporalEntity("urn:ngsi-ld:X:1", ["https://x/X"], {}, {"https://x/pm25": [aggregate]})
    query = TemporalQuery(aggregation=Aggregation(("sum", "totalCount")))
    out = render_temporal_entity(
        entity, core_term_map(), "aggregatedValues", query, RenderOptions()
    )
    t = [from_micros(h * HOUR) for h in range(5)]
    assert out["https://x/pm25"] == {
        "type": "Property",
        "datasetId": "urn:ngsi-ld:Dataset:a",
        "sum": [(1.5, t[0], t[1]), (7.0, t[3], t[4])],
        "totalCount": [(2, t[0], t[1]), (5, t[3], t[4])],
    }


def test_rendering_formats_a_shared_boundary_once_but_correctly() -> None:
    aggregate = AttributeAggregate(
        "https://x/pm25", "Property", None, [0, HOUR], [HOUR, 2 * HOUR], {"max": [1, 2]}
    )
    entity = TemporalEntity("urn:ngsi-ld:X:1", ["https://x/X"], {}, {"https://x/pm25": [aggregate]})
    query = TemporalQuery(aggregation=Aggregation(("max",)))
    out = render_temporal_entity(
        entity, core_term_map(), "aggregatedValues", query, RenderOptions()
    )
    t = [from_micros(h * HOUR) for h in range(3)]
    assert out["https://x/pm25"]["max"] == [(1, t[0], t[1]), (2, t[1], t[2])]


def test_instance_budget_fetches_one_more_than_the_limit_to_see_a_cut() -> None:
    assert instance_budget(TemporalQuery(instance_limit=100)) == (100, 101)
    assert instance_budget(TemporalQuery(instance_limit=100, last_n=500)) == (100, 101)


def test_instance_budget_of_last_n_within_the_limit_is_exactly_last_n() -> None:
    assert instance_budget(TemporalQuery(instance_limit=100, last_n=10)) == (10, 10)
    assert instance_budget(TemporalQuery(instance_limit=100, last_n=100)) == (100, 100)
