"""The temporal API over HTTP (GS CIM 009 clauses 5.6.11-5.6.16, 5.7.3-5.7.4, 6.18-6.24).

Histories are built through the ordinary entity API (every accepted change records its
instances) or the temporal writes, then read back in every representation.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from urbanstack.api.app import create_app
from urbanstack.settings import Settings

BASE = "/ngsi-ld/v1"
ENTITIES = f"{BASE}/entities"
TEMPORAL = f"{BASE}/temporal/entities"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
AQ = "urn:ngsi-ld:AirQualityObserved:hue-imperial-city"
RIVER = "urn:ngsi-ld:WaterLevel:perfume-river-kim-long"
ALL_METHODS = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq"
NULL = "urn:ngsi-ld:null"


def at(hour: int, minute: int = 0, day: int = 1) -> str:
    return f"2026-11-{day:02d}T{hour:02d}:{minute:02d}:00Z"


def shown(stamp: str) -> str:
    """How the API renders a client timestamp (milliseconds)."""
    return stamp[:-1] + ".000Z"


def pm25(value: float, observed: str, **members: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "unitCode": "GQ", "observedAt": observed, **members}


def error_type(response: Any) -> str:
    return response.json()["type"].removeprefix(ERRORS)


def make_client(store_url: str, **settings: Any) -> TestClient:
    """A client on the test's store (every backend) with some settings changed."""
    values = {"store": store_url, "sqlite_synchronous": "NORMAL"}
    return TestClient(create_app(Settings(**{**values, **settings})))


@pytest.fixture
def small_pages(store_url: str) -> Iterator[TestClient]:
    with make_client(store_url, temporal_instance_limit=3) as client:
        yield client


def record_readings(client: TestClient, values: list[float], *, start: int = 0) -> None:
    """Create the station with the first value, then update it hour by hour."""
    first, *rest = values
    body = {"id": AQ, "type": "AirQualityObserved", "pm25": pm25(first, at(start))}
    assert client.post(ENTITIES, json=body).status_code == 201
    for offset, value in enumerate(rest, start=start + 1):
        response = client.patch(f"{ENTITIES}/{AQ}/attrs", json={"pm25": pm25(value, at(offset))})
        assert response.status_code == 204


def temporal(client: TestClient, entity_id: str = AQ, **params: Any) -> Any:
    response = client.get(f"{TEMPORAL}/{entity_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def values_of(body: dict[str, Any], attr: str = "pm25") -> list[Any]:
    instances = body[attr]
    return [i["value"] for i in (instances if isinstance(instances, list) else [instances])]


# --- recording


def test_every_update_appends_an_instance(client: TestClient) -> None:
    record_readings(client, [10, 11, 12])
    body = temporal(client)
    assert values_of(body) == [10, 11, 12]
    assert [i["observedAt"] for i in body["pm25"]] == [shown(at(h)) for h in range(3)]


def test_instances_carry_unit_and_a_unique_instance_id(client: TestClient) -> None:
    record_readings(client, [10, 11])
    instances = temporal(client)["pm25"]
    assert all(i["unitCode"] == "GQ" for i in instances)
    ids = [i["instanceId"] for i in instances]
    assert len(set(ids)) == 2 and all(i.startswith("urn:ngsi-ld:") for i in ids)


def test_every_kind_of_value_reads_back_exactly(client: TestClient) -> None:
    values: list[Any] = [
        0.1,
        1 / 3,
        -0.0,
        2**62 + 1,
        1e300,
        True,
        'Thành phố Huế "quoted" \\ \u0001',
        {"levels": [1.5, None, "x"], "gate": {"open": False}},
        [3, 2, 1],
    ]
    record_readings(client, values)
    assert values_of(temporal(client)) == values
    assert values_of(temporal(client, lastN=3)) == values[-3:]
    assert all(i["unitCode"] == "GQ" for i in temporal(client)["pm25"])


def test_batch_upsert_and_partial_update_are_recorded(client: TestClient) -> None:
    body = {"id": AQ, "type": "AirQualityObserved", "pm25": pm25(5, at(0))}
    assert client.post(f"{BASE}/entityOperations/upsert", json=[body]).status_code == 201
    body["pm25"] = pm25(6, at(1))
    assert client.post(f"{BASE}/entityOperations/upsert", json=[body]).status_code == 204
    patch = {"value": 7, "observedAt": at(2)}
    assert client.patch(f"{ENTITIES}/{AQ}/attrs/pm25", json=patch).status_code == 204
    assert values_of(temporal(client)) == [5, 6, 7]


def test_unchanged_attributes_are_not_recorded_again(client: TestClient) -> None:
    body = {"id": AQ, "type": "AirQualityObserved", "pm25": pm25(5, at(0)), "name": "Đại Nội"}
    client.post(ENTITIES, json=body)
    client.patch(f"{ENTITIES}/{AQ}/attrs", json={"pm25": pm25(6, at(1))})
    assert len(temporal(client)["name"]) == 1


def test_instance_without_observed_at_is_filed_at_its_modification_time(
    client: TestClient,
) -> None:
    before = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    client.post(ENTITIES, json={"id": AQ, "type": "AirQualityObserved", "name": "Đại Nội"})
    body = temporal(client, options="temporalValues")
    [[value, stamp]] = body["name"]["values"]
    assert value == "Đại Nội" and stamp >= before


def test_refused_update_records_nothing(client: TestClient) -> None:
    record_readings(client, [10])
    bad = {"pm25": {"type": "Property", "value": 3, "observedAt": "not a time"}}
    assert client.patch(f"{ENTITIES}/{AQ}/attrs", json=bad).status_code == 400
    assert values_of(temporal(client)) == [10]


def test_history_is_kept_after_delete_by_default(client: TestClient) -> None:
    record_readings(client, [10, 11])
    assert client.delete(f"{ENTITIES}/{AQ}").status_code == 204
    instances = temporal(client)["pm25"]
    assert [i["value"] for i in instances] == [10, 11, NULL]
    assert "deletedAt" in instances[-1] and "deletedAt" not in instances[0]


def test_recreated_entity_continues_its_history(client: TestClient) -> None:
    record_readings(client, [10])
    client.delete(f"{ENTITIES}/{AQ}")
    body = {"id": AQ, "type": "AirQualityObserved", "pm25": pm25(20, at(5))}
    assert client.post(ENTITIES, json=body).status_code == 201
    # filed by time: the readings were observed on 1 November, the deletion happened now
    assert values_of(temporal(client)) == [10, 20, NULL]


def test_deleted_attribute_ends_with_a_null_instance_stamped_deleted_at(
    client: TestClient,
) -> None:
    record_readings(client, [10, 11])
    before = time.time()
    assert client.delete(f"{ENTITIES}/{AQ}/attrs/pm25").status_code == 204
    last = temporal(client)["pm25"][-1]
    assert last["value"] == NULL and last["type"] == "Property"
    deleted = datetime.fromisoformat(last["deletedAt"].replace("Z", "+00:00")).timestamp()
    assert before - 1 <= deleted <= time.time() + 1
    values = temporal(client, options="temporalValues")["pm25"]["values"]
    assert [v for v, _ in values] == [10, 11, NULL]


def test_deleting_one_dataset_ends_only_that_series(client: TestClient) -> None:
    body = {
        "id": AQ,
        "type": "AirQualityObserved",
        "pm25": [pm25(10, at(1)), pm25(20, at(1), datasetId="urn:ngsi-ld:Dataset:b")],
    }
    assert client.post(ENTITIES, json=body).status_code == 201
    params = {"datasetId": "urn:ngsi-ld:Dataset:b"}
    assert client.delete(f"{ENTITIES}/{AQ}/attrs/pm25", params=params).status_code == 204
    series = {i.get("datasetId"): i["value"] for i in temporal(client)["pm25"]}
    assert series == {None: 10, "urn:ngsi-ld:Dataset:b": NULL}
    assert len(temporal(client)["pm25"]) == 3


def test_attribute_left_out_of_a_replace_ends_its_series(client: TestClient) -> None:
    record_readings(client, [10])
    body = {"type": "AirQualityObserved", "no2": pm25(3, at(2))}
    assert client.put(f"{ENTITIES}/{AQ}", json=body).status_code == 204
    history = temporal(client)
    assert values_of(history) == [10, NULL]
    assert values_of(history, "no2") == [3]


def test_aggregations_leave_the_deletion_instance_out(client: TestClient) -> None:
    record_readings(client, [10, 20, 30])
    assert client.delete(f"{ENTITIES}/{AQ}/attrs/pm25").status_code == 204
    body = temporal(
        client, attrs="pm25", options="aggregatedValues", aggrMethods="totalCount,distinctCount,max"
    )
    assert [b[0] for b in body["pm25"]["totalCount"]] == [3]
    assert [b[0] for b in body["pm25"]["distinctCount"]] == [3]
    assert [b[0] for b in body["pm25"]["max"]] == [30]
    hourly = temporal(
        client,
        attrs="pm25",
        options="aggregatedValues",
        aggrMethods="totalCount",
        aggrPeriodDuration="PT1H",
    )
    assert sum(b[0] for b in hourly["pm25"]["totalCount"]) == 3


def test_deleted_relationship_ends_with_a_null_object(client: TestClient) -> None:
    body = {
        "id": RIVER,
        "type": "WaterLevel",
        "refStation": {"type": "Relationship", "object": "urn:ngsi-ld:Station:1"},
    }
    assert client.post(ENTITIES, json=body).status_code == 201
    assert client.delete(f"{ENTITIES}/{RIVER}/attrs/refStation").status_code == 204
    objects = [i["object"] for i in temporal(client, RIVER)["refStation"]]
    assert objects == ["urn:ngsi-ld:Station:1", NULL]


def test_history_is_dropped_with_the_entity_when_configured(store_url: str) -> None:
    with make_client(store_url, history_on_delete="drop") as client:
        record_readings(client, [10, 11])
        client.delete(f"{ENTITIES}/{AQ}")
        response = client.get(f"{TEMPORAL}/{AQ}")
        assert response.status_code == 404
        assert error_type(response) == "ResourceNotFound"


def test_unknown_entity_is_resource_not_found(client: TestClient) -> None:
    response = client.get(f"{TEMPORAL}/urn:ngsi-ld:X:nothing")
    assert response.status_code == 404
    assert error_type(response) == "ResourceNotFound"


def test_unknown_tenant_is_not_found(client: TestClient) -> None:
    response = client.get(f"{TEMPORAL}/{AQ}", headers={"NGSILD-Tenant": "hanoi"})
    assert response.status_code == 404
    assert error_type(response) == "NonexistentTenant"


def test_tenants_have_separate_histories(client: TestClient) -> None:
    record_readings(client, [10])
    body = {"id": AQ, "type": "AirQualityObserved", "pm25": pm25(99, at(0))}
    headers = {"NGSILD-Tenant": "hcmc"}
    assert client.post(ENTITIES, json=body, headers=headers).status_code == 201
    response = client.get(f"{TEMPORAL}/{AQ}", headers=headers)
    assert values_of(response.json()) == [99]
    assert values_of(temporal(client)) == [10]


# --- filtering


def test_timerel_between_keeps_the_half_open_range(client: TestClient) -> None:
    record_readings(client, [10, 11, 12, 13])
    body = temporal(client, timerel="between", timeAt=at(1), endTimeAt=at(3))
    assert values_of(body) == [11, 12]


def test_timerel_before_is_exclusive(client: TestClient) -> None:
    record_readings(client, [10, 11, 12])
    assert values_of(temporal(client, timerel="before", timeAt=at(2))) == [10, 11]


def test_timerel_after_is_inclusive(client: TestClient) -> None:
    record_readings(client, [10, 11, 12])
    assert values_of(temporal(client, timerel="after", timeAt=at(1))) == [11, 12]


def test_last_n_returns_the_most_recent_oldest_first(client: TestClient) -> None:
    record_readings(client, [10, 11, 12, 13])
    assert values_of(temporal(client, lastN=2)) == [12, 13]


def test_attrs_selects_attributes(client: TestClient) -> None:
    body = {"id": AQ, "type": "AirQualityObserved", "pm25": pm25(5, at(0)), "name": "Đại Nội"}
    client.post(ENTITIES, json=body)
    assert set(temporal(client, attrs="name")) == {"id", "type", "name"}


def test_timeproperty_modified_at_filters_on_write_time(client: TestClient) -> None:
    record_readings(client, [10])
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    assert "pm25" not in temporal(client, timerel="after", timeAt=later, timeproperty="modifiedAt")
    body = temporal(client, timerel="before", timeAt=later, timeproperty="modifiedAt")
    assert values_of(body) == [10]


def test_sys_attrs_adds_instance_times(client: TestClient) -> None:
    record_readings(client, [10])
    [instance] = temporal(client, options="sysAttrs")["pm25"]
    assert instance["createdAt"].endswith("Z") and instance["modifiedAt"].endswith("Z")


# --- representations


def test_temporal_values_pairs_values_with_times(client: TestClient) -> None:
    record_readings(client, [10, 11])
    body = temporal(client, options="temporalValues")
    assert body["pm25"] == {
        "type": "Property",
        "values": [[10, shown(at(0))], [11, shown(at(1))]],
    }


def test_temporal_values_of_relationships_and_language_maps(client: TestClient) -> None:
    body = {
        "id": RIVER,
        "type": "WaterLevel",
        "refStation": {"type": "Relationship", "object": "urn:ngsi-ld:Station:1"},
        "label": {"type": "LanguageProperty", "languageMap": {"vi": "Sông Hương", "en": "Perfume"}},
    }
    client.post(ENTITIES, json=body)
    rendered = temporal(client, RIVER, options="temporalValues")
    assert rendered["refStation"]["objects"][0][0] == "urn:ngsi-ld:Station:1"
    assert rendered["label"]["languageMaps"][0][0] == {
        "languageMap": {"vi": "Sông Hương", "en": "Perfume"}
    }


def test_dataset_ids_are_separate_series(client: TestClient) -> None:
    body = {
        "id": AQ,
        "type": "AirQualityObserved",
        "pm25": [
            pm25(10, at(0), datasetId="urn:ngsi-ld:Dataset:sensor"),
            pm25(30, at(0), datasetId="urn:ngsi-ld:Dataset:satellite"),
        ],
    }
    client.post(ENTITIES, json=body)
    series = temporal(client, options="temporalValues")["pm25"]
    assert {s["datasetId"]: s["values"][0][0] for s in series} == {
        "urn:ngsi-ld:Dataset:sensor": 10,
        "urn:ngsi-ld:Dataset:satellite": 30,
    }


def test_default_instance_and_dataset_series_are_both_returned(client: TestClient) -> None:
    body = {
        "id": AQ,
        "type": "AirQualityObserved",
        "pm25": [pm25(10, at(0)), pm25(30, at(0), datasetId="urn:ngsi-ld:Dataset:satellite")],
    }
    client.post(ENTITIES, json=body)
    series = temporal(client)["pm25"]
    assert sorted((i.get("datasetId") or "", i["value"]) for i in series) == [
        ("", 10),
        ("urn:ngsi-ld:Dataset:satellite", 30),
    ]


def test_ld_json_answer_carries_the_context(client: TestClient) -> None:
    record_readings(client, [10])
    response = client.get(f"{TEMPORAL}/{AQ}", headers={"Accept": "application/ld+json"})
    assert "@context" in response.json()


# --- aggregation


def aggregated(client: TestClient, **params: Any) -> dict[str, Any]:
    return temporal(client, options="aggregatedValues", aggrMethods=ALL_METHODS, **params)


@pytest.mark.parametrize(
    "values",
    [[0.1, 0.2, 1 / 3], [1e150, 2e150, -1e149]],  # the second: beyond one-step reads
    ids=["decimals", "beyond-1e100"],
)
def test_aggregates_are_exact_to_the_last_bit(client: TestClient, values: list[float]) -> None:
    record_readings(client, values)
    body = aggregated(client)["pm25"]
    assert body["sum"][0][0] == values[0] + values[1] + values[2]
    assert body["min"][0][0] == min(values)
    assert body["max"][0][0] == max(values)
    assert body["sumsq"][0][0] == values[0] ** 2 + values[1] ** 2 + values[2] ** 2


def test_sums_beyond_the_float_range_answer_without_a_value(client: TestClient) -> None:
    record_readings(client, [1.5e308, 1.5e308, 1e200])
    body = aggregated(client)["pm25"]
    assert body["totalCount"][0][0] == 3
    assert body["max"][0][0] == 1.5e308
    assert body["sum"][0][0] is None  # infinite: no JSON number
    assert body["avg"][0][0] is None
    assert body["sumsq"][0][0] is None


def test_all_eight_methods_per_hour_bucket(client: TestClient) -> None:
    client.post(ENTITIES, json={"id": AQ, "type": "AirQualityObserved", "pm25": pm25(2, at(0))})
    for minute, value in ((20, 4), (40, 4)):
        client.patch(f"{ENTITIES}/{AQ}/attrs", json={"pm25": pm25(value, at(0, minute))})
    client.patch(f"{ENTITIES}/{AQ}/attrs", json={"pm25": pm25(9, at(1, 30))})
    body = aggregated(client, aggrPeriodDuration="PT1H")["pm25"]
    first = [2, 4, 4]
    expected = {
        "totalCount": [3, 1],
        "distinctCount": [2, 1],
        "sum": [10, 9],
        "avg": [10 / 3, 9],
        "min": [2, 9],
        "max": [4, 9],
        "stddev": [statistics.stdev(first), 0.0],
        "sumsq": [36, 81],
    }
    for method, values in expected.items():
        got = [bucket[0] for bucket in body[method]]
        assert got == pytest.approx(values), method
    assert body["avg"][0][1:] == [shown(at(0)), shown(at(1))]
    assert body["avg"][1][1:] == [shown(at(1)), shown(at(2))]


def test_buckets_start_at_time_at(client: TestClient) -> None:
    record_readings(client, [1, 2, 3, 4], start=1)
    body = aggregated(
        client, aggrPeriodDuration="PT2H", timerel="between", timeAt=at(0), endTimeAt=at(6)
    )
    assert [b[0] for b in body["pm25"]["sum"]] == [1, 5, 4]
    assert body["pm25"]["sum"][0][1] == shown(at(0))


def test_without_period_one_bucket_spans_the_range(client: TestClient) -> None:
    record_readings(client, [1, 2, 3])
    body = aggregated(client)["pm25"]
    assert body["sum"] == [[6, shown(at(0)), shown(at(2))]]


def test_monthly_buckets_follow_the_calendar(client: TestClient) -> None:
    client.post(ENTITIES, json={"id": AQ, "type": "AirQualityObserved", "pm25": pm25(1, at(0))})
    patch = {"pm25": pm25(2, "2026-12-15T00:00:00Z")}
    client.patch(f"{ENTITIES}/{AQ}/attrs", json=patch)
    body = aggregated(client, aggrPeriodDuration="P1M")["pm25"]
    assert [b[1:] for b in body["sum"]] == [
        ["2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z"],
        ["2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"],
    ]


def test_booleans_sum_their_true_values(client: TestClient) -> None:
    body = {"id": AQ, "type": "AirQualityObserved", "alarm": {"value": True, "observedAt": at(0)}}
    client.post(ENTITIES, json=body)
    for hour, value in ((1, False), (2, True)):
        patch = {"alarm": {"value": value, "observedAt": at(hour)}}
        client.patch(f"{ENTITIES}/{AQ}/attrs", json=patch)
    result = aggregated(client)["alarm"]
    assert result["sum"][0][0] == 2 and result["max"][0][0] is True


def test_strings_have_counts_and_lexicographic_min_max_only(client: TestClient) -> None:
    body = {
        "id": AQ,
        "type": "AirQualityObserved",
        "level": {"value": "moderate", "observedAt": at(0)},
    }
    client.post(ENTITIES, json=body)
    client.patch(f"{ENTITIES}/{AQ}/attrs", json={"level": {"value": "good", "observedAt": at(1)}})
    result = aggregated(client)["level"]
    assert result["min"][0][0] == "good" and result["max"][0][0] == "moderate"
    assert result["totalCount"][0][0] == 2
    assert result["avg"][0][0] is None and result["sum"][0][0] is None


def test_distinct_count_tells_a_number_from_the_same_text(client: TestClient) -> None:
    readings = [5, "5", 5, "five", "5"]
    client.post(ENTITIES, json={"id": AQ, "type": "AirQualityObserved"})
    for minute, value in enumerate(readings):
        patch = {"level": {"type": "Property", "value": value, "observedAt": at(1, minute)}}
        assert client.post(f"{ENTITIES}/{AQ}/attrs", json=patch).status_code == 204
    result = temporal(client, options="aggregatedValues", aggrMethods="distinctCount,totalCount")
    assert result["level"]["totalCount"][0][0] == 5
    assert result["level"]["distinctCount"][0][0] == 3


def test_relationships_only_count(client: TestClient) -> None:
    body = {"id": RIVER, "type": "WaterLevel", "refStation": {"object": "urn:ngsi-ld:Station:1"}}
    client.post(ENTITIES, json=body)
    patch = {"refStation": {"type": "Relationship", "object": "urn:ngsi-ld:Station:2"}}
    client.patch(f"{ENTITIES}/{RIVER}/attrs", json=patch)
    result = temporal(client, RIVER, options="aggregatedValues", aggrMethods="distinctCount,max")[
        "refStation"
    ]
    assert result["distinctCount"][0][0] == 2 and result["max"][0][0] is None


@pytest.mark.parametrize(
    "params",
    [
        {"options": "aggregatedValues"},
        {"options": "aggregatedValues", "aggrMethods": "median"},
        {"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "1 hour"},
        {"aggrMethods": "avg"},
        {"timerel": "after"},
        {"timerel": "after", "timeAt": "yesterday"},
        {"timerel": "between", "timeAt": at(1), "endTimeAt": at(0)},
        {"lastN": "0"},
        {"timeproperty": "deletedOn"},
        {"options": "temporalValues,aggregatedValues", "aggrMethods": "avg"},
    ],
)
def test_bad_temporal_parameters_are_bad_request_data(
    client: TestClient, params: dict[str, str]
) -> None:
    record_readings(client, [10])
    response = client.get(f"{TEMPORAL}/{AQ}", params=params)
    assert response.status_code == 400
    assert error_type(response) == "BadRequestData"


# --- pagination (206 + Content-Range)


def test_instance_limit_answers_206_with_the_covered_range(small_pages: TestClient) -> None:
    record_readings(small_pages, [10, 11, 12, 13, 14])
    response = small_pages.get(f"{TEMPORAL}/{AQ}")
    assert response.status_code == 206
    assert values_of(response.json()) == [10, 11, 12]
    assert response.headers["Content-Range"] == (f"date-time {shown(at(0))}-{shown(at(3))}/*")


def test_following_content_range_pages_reads_everything_once(small_pages: TestClient) -> None:
    record_readings(small_pages, list(range(10)))
    for hour in range(0, 10, 2):  # a second attribute, half as often
        patch = {"no2": {"value": hour, "observedAt": at(hour)}}
        small_pages.post(f"{ENTITIES}/{AQ}/attrs", json=patch)
    seen: dict[str, list[int]] = {"pm25": [], "no2": []}
    params = {"timerel": "after", "timeAt": at(0)}
    for _ in range(10):
        response = small_pages.get(f"{TEMPORAL}/{AQ}", params=params)
        body = response.json()
        for attr in seen:
            seen[attr] += values_of(body, attr) if attr in body else []
        if response.status_code == 200:
            break
        end = response.headers["Content-Range"].split("Z-", 1)[1].split("/")[0]
        params = {"timerel": "after", "timeAt": end}
    assert seen == {"pm25": list(range(10)), "no2": list(range(0, 10, 2))}


def test_last_n_above_the_limit_pages_backwards(small_pages: TestClient) -> None:
    record_readings(small_pages, [10, 11, 12, 13, 14, 15])
    response = small_pages.get(f"{TEMPORAL}/{AQ}", params={"lastN": 5})
    assert response.status_code == 206
    assert values_of(response.json()) == [13, 14, 15]
    assert response.headers["Content-Range"].endswith("/5")


def test_last_n_within_the_limit_is_complete(small_pages: TestClient) -> None:
    record_readings(small_pages, [10, 11, 12, 13, 14, 15])
    response = small_pages.get(f"{TEMPORAL}/{AQ}", params={"lastN": 2})
    assert response.status_code == 200 and "Content-Range" not in response.headers


# --- temporal query


def create_stations(client: TestClient, count: int) -> list[str]:
    ids = []
    for n in range(count):
        entity_id = f"urn:ngsi-ld:AirQualityObserved:{n}"
        body = {"id": entity_id, "type": "AirQualityObserved", "pm25": pm25(n, at(0))}
        client.post(ENTITIES, json=body)
        client.patch(f"{ENTITIES}/{entity_id}/attrs", json={"pm25": pm25(n + 100, at(1))})
        ids.append(entity_id)
    return ids


def test_query_by_type_returns_each_entity_history(client: TestClient) -> None:
    create_stations(client, 3)
    client.post(ENTITIES, json={"id": RIVER, "type": "WaterLevel", "level": 2.5})
    params = {"type": "AirQualityObserved", "timerel": "after", "timeAt": at(1)}
    response = client.get(TEMPORAL, params=params)
    assert response.status_code == 200
    assert {e["id"]: values_of(e) for e in response.json()} == {
        f"urn:ngsi-ld:AirQualityObserved:{n}": [n + 100] for n in range(3)
    }


def test_query_needs_a_time_filter(client: TestClient) -> None:
    create_stations(client, 1)
    response = client.get(TEMPORAL, params={"type": "AirQualityObserved"})
    assert response.status_code == 400 and error_type(response) == "BadRequestData"


def test_query_needs_an_entity_filter(client: TestClient) -> None:
    response = client.get(TEMPORAL, params={"timerel": "after", "timeAt": at(0)})
    assert response.status_code == 400 and error_type(response) == "BadRequestData"


def test_query_pages_entities_with_count_and_links(client: TestClient) -> None:
    create_stations(client, 5)
    params = {
        "type": "AirQualityObserved",
        "timerel": "after",
        "timeAt": at(0),
        "limit": 2,
        "count": "true",
    }
    response = client.get(TEMPORAL, params=params)
    assert len(response.json()) == 2
    assert response.headers["NGSILD-Results-Count"] == "5"
    assert 'rel="next"' in response.headers["Link"]


def test_query_filters_with_q_on_the_current_state(client: TestClient) -> None:
    create_stations(client, 4)
    params = {"type": "AirQualityObserved", "q": "pm25>=102", "timerel": "after", "timeAt": at(0)}
    ids = [e["id"] for e in client.get(TEMPORAL, params=params).json()]
    assert ids == ["urn:ngsi-ld:AirQualityObserved:2", "urn:ngsi-ld:AirQualityObserved:3"]


def test_query_aggregates_every_entity(client: TestClient) -> None:
    create_stations(client, 2)
    params = {
        "type": "AirQualityObserved",
        "timerel": "after",
        "timeAt": at(0),
        "options": "aggregatedValues",
        "aggrMethods": "avg",
    }
    body = client.get(TEMPORAL, params=params).json()
    assert [e["pm25"]["avg"][0][0] for e in body] == [50, 51]


def test_post_query_takes_a_temporal_q(client: TestClient) -> None:
    create_stations(client, 2)
    body = {
        "type": "Query",
        "entities": [{"type": "AirQualityObserved"}],
        "attrs": ["pm25"],
        "temporalQ": {"timerel": "before", "timeAt": at(1)},
    }
    response = client.post(f"{BASE}/temporal/entityOperations/query", json=body)
    assert response.status_code == 200
    assert [values_of(e) for e in response.json()] == [[0], [1]]


def test_post_query_without_temporal_q_is_bad_request(client: TestClient) -> None:
    body = {"type": "Query", "entities": [{"type": "AirQualityObserved"}]}
    response = client.post(f"{BASE}/temporal/entityOperations/query", json=body)
    assert response.status_code == 400 and error_type(response) == "BadRequestData"


# --- temporal writes


def temporal_body(*values: tuple[float, str]) -> dict[str, Any]:
    return {
        "id": RIVER,
        "type": "WaterLevel",
        "level": [{"type": "Property", "value": v, "observedAt": t} for v, t in values],
    }


def test_temporal_create_records_instances_and_sets_latest_state(client: TestClient) -> None:
    response = client.post(TEMPORAL, json=temporal_body((2.0, at(2)), (1.5, at(1)), (2.4, at(3))))
    assert response.status_code == 201
    assert response.headers["Location"] == f"{TEMPORAL}/{RIVER}"
    assert values_of(temporal(client, RIVER), "level") == [1.5, 2.0, 2.4]
    current = client.get(f"{ENTITIES}/{RIVER}").json()
    assert current["level"]["value"] == 2.4


def test_temporal_create_of_existing_entity_adds_instances(client: TestClient) -> None:
    client.post(TEMPORAL, json=temporal_body((2.0, at(2))))
    body = temporal_body((1.0, at(0)))
    body["type"] = "RiverStation"
    assert client.post(TEMPORAL, json=body).status_code == 204
    assert values_of(temporal(client, RIVER), "level") == [1.0, 2.0]
    current = client.get(f"{ENTITIES}/{RIVER}").json()
    assert current["level"]["value"] == 2.0  # an older instance does not replace the latest
    assert sorted(current["type"]) == ["RiverStation", "WaterLevel"]


def test_temporal_create_with_bad_instance_changes_nothing(client: TestClient) -> None:
    body = temporal_body((2.0, at(2)))
    body["level"].append({"type": "Property", "value": 1, "observedAt": "tomorrow"})
    response = client.post(TEMPORAL, json=body)
    assert response.status_code == 400 and error_type(response) == "BadRequestData"
    assert client.get(f"{TEMPORAL}/{RIVER}").status_code == 404
    assert client.get(f"{ENTITIES}/{RIVER}").status_code == 404


def test_temporal_append_attrs_adds_instances(client: TestClient) -> None:
    client.post(TEMPORAL, json=temporal_body((2.0, at(2))))
    more = {"level": [{"value": 2.6, "observedAt": at(4)}, {"value": 2.8, "observedAt": at(5)}]}
    assert client.post(f"{TEMPORAL}/{RIVER}/attrs", json=more).status_code == 204
    assert values_of(temporal(client, RIVER), "level") == [2.0, 2.6, 2.8]


def test_temporal_append_to_unknown_entity_is_not_found(client: TestClient) -> None:
    more = {"level": [{"value": 2.6, "observedAt": at(4)}]}
    response = client.post(f"{TEMPORAL}/{RIVER}/attrs", json=more)
    assert response.status_code == 404 and error_type(response) == "ResourceNotFound"


def first_instance_id(client: TestClient) -> str:
    return temporal(client, RIVER)["level"][0]["instanceId"]


def test_patch_instance_replaces_its_value(client: TestClient) -> None:
    client.post(TEMPORAL, json=temporal_body((2.0, at(2)), (2.2, at(3))))
    instance = first_instance_id(client)
    patch = {"level": {"type": "Property", "value": 1.9, "observedAt": at(2)}}
    assert client.patch(f"{TEMPORAL}/{RIVER}/attrs/level/{instance}", json=patch).status_code == 204
    instances = temporal(client, RIVER)["level"]
    assert [i["value"] for i in instances] == [1.9, 2.2]
    assert instances[0]["instanceId"] == instance


def test_patch_unknown_instance_is_not_found(client: TestClient) -> None:
    client.post(TEMPORAL, json=temporal_body((2.0, at(2))))
    url = f"{TEMPORAL}/{RIVER}/attrs/level/urn:ngsi-ld:attribute:instance:999999"
    response = client.patch(url, json={"level": {"value": 1}})
    assert response.status_code == 404 and error_type(response) == "ResourceNotFound"


def test_delete_instance_removes_only_it(client: TestClient) -> None:
    client.post(TEMPORAL, json=temporal_body((2.0, at(2)), (2.2, at(3))))
    instance = first_instance_id(client)
    assert client.delete(f"{TEMPORAL}/{RIVER}/attrs/level/{instance}").status_code == 204
    assert values_of(temporal(client, RIVER), "level") == [2.2]
    assert client.delete(f"{TEMPORAL}/{RIVER}/attrs/level/{instance}").status_code == 404


def test_delete_attribute_history_by_dataset(client: TestClient) -> None:
    body = {
        "id": RIVER,
        "type": "WaterLevel",
        "level": [
            {"value": 1.0, "observedAt": at(0)},
            {"value": 9.0, "observedAt": at(0), "datasetId": "urn:ngsi-ld:Dataset:radar"},
        ],
    }
    client.post(TEMPORAL, json=body)
    url = f"{TEMPORAL}/{RIVER}/attrs/level"
    assert client.delete(url, params={"datasetId": "urn:ngsi-ld:Dataset:radar"}).status_code == 204
    assert values_of(temporal(client, RIVER), "level") == [1.0]
    assert client.delete(url, params={"deleteAll": "true"}).status_code == 204
    assert "level" not in temporal(client, RIVER)
    assert client.delete(url).status_code == 404


def test_delete_temporal_entity_removes_entity_and_history(client: TestClient) -> None:
    client.post(TEMPORAL, json=temporal_body((2.0, at(2))))
    assert client.delete(f"{TEMPORAL}/{RIVER}").status_code == 204
    assert client.get(f"{TEMPORAL}/{RIVER}").status_code == 404
    assert client.get(f"{ENTITIES}/{RIVER}").status_code == 404
    assert client.delete(f"{TEMPORAL}/{RIVER}").status_code == 404


def test_delete_temporal_of_deleted_entity_drops_kept_history(client: TestClient) -> None:
    record_readings(client, [10])
    client.delete(f"{ENTITIES}/{AQ}")
    assert client.delete(f"{TEMPORAL}/{AQ}").status_code == 204
    assert client.get(f"{TEMPORAL}/{AQ}").status_code == 404


# --- retention


def test_retention_prunes_instances_older_than_the_setting(store_url: str) -> None:
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    with make_client(store_url) as client:
        client.post(TEMPORAL, json=temporal_body((1.0, "2020-01-01T00:00:00Z"), (2.0, recent)))
    with make_client(store_url, history_retention_days=30) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if values_of(temporal(client, RIVER), "level") == [2.0]:
                break
            time.sleep(0.05)
        assert values_of(temporal(client, RIVER), "level") == [2.0]


def test_stddev_is_the_sample_deviation(client: TestClient) -> None:
    record_readings(client, [1, 2, 3, 4])
    result = temporal(client, options="aggregatedValues", aggrMethods="stddev")
    assert result["pm25"]["stddev"][0][0] == pytest.approx(math.sqrt(5 / 3))
