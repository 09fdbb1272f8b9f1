"""Batch entity operations over HTTP (GS CIM 009 v1.8.1, 5.6.7-5.6.10, 5.6.20, 5.7.2, 6.14-6.23).

A batch answers 201 (create/upsert: the ids created), 204 (everything done) or 207 with a
BatchOperationResult ``{"success": [ids], "errors": [{"entityId", "error": ProblemDetails}]}``;
each entity succeeds or fails on its own.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

# --- helpers ---------------------------------------------------------------------------------

BASE = "/ngsi-ld/v1"
ENTITIES = f"{BASE}/entities"
OPS = f"{BASE}/entityOperations"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"

CITADEL_ID = "urn:ngsi-ld:AirQualityObserved:hue-imperial-city"
DONG_BA_ID = "urn:ngsi-ld:AirQualityObserved:hue-dong-ba-market"
THIEN_MU_ID = "urn:ngsi-ld:AirQualityObserved:hue-thien-mu-pagoda"
PHONG_DIEN_ID = "urn:ngsi-ld:AirQualityObserved:phong-dien"
UNKNOWN_ID = "urn:ngsi-ld:AirQualityObserved:hue-nowhere"

#: station -> (PM2.5 in µg/m³, [lon, lat]); Đông Ba is ~1.1 km from the Citadel, Thiên Mụ ~3.9 km
STATIONS = {
    CITADEL_ID: (37.2, [107.5786, 16.4698]),
    DONG_BA_ID: (52.8, [107.5880, 16.4740]),
    THIEN_MU_ID: (18.4, [107.5450, 16.4530]),
    PHONG_DIEN_ID: (12.0, [107.3500, 16.5800]),
}


def station(entity_id: str, **attrs: Any) -> dict[str, Any]:
    """A normalized AirQualityObserved entity for one of the Huế :data:`STATIONS`."""
    value, coordinates = STATIONS[entity_id]
    entity: dict[str, Any] = {
        "id": entity_id,
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": value, "unitCode": "GQ"},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": coordinates},
        },
    }
    entity.update(attrs)
    return entity


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def invalid_station(entity_id: str) -> dict[str, Any]:
    """A station whose location is not a valid geometry (BadRequestData on its own)."""
    return station(
        entity_id,
        location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": "hue"}},
    )


def create(client: TestClient, *entities: dict[str, Any]) -> None:
    for entity in entities:
        response = client.post(ENTITIES, json=entity)
        assert response.status_code == 201, response.text


def retrieve(client: TestClient, entity_id: str) -> dict[str, Any]:
    response = client.get(f"{ENTITIES}/{entity_id}")
    assert response.status_code == 200, response.text
    return response.json()


def exists(client: TestClient, entity_id: str) -> bool:
    status = client.get(f"{ENTITIES}/{entity_id}").status_code
    assert status in (200, 404)
    return status == 200


def batch(client: TestClient, operation: str, body: Any, **params: str) -> Any:
    return client.post(f"{OPS}/{operation}", json=body, params=params)


def errors_by_id(result: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    return {e["entityId"]: e["error"] for e in result["errors"]}


def query(client: TestClient, body: dict[str, Any], **params: str) -> list[dict[str, Any]]:
    response = client.post(f"{OPS}/query", json=body, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids_of(entities: list[dict[str, Any]]) -> set[str]:
    return {e["id"] for e in entities}


# --- batch create (5.6.7, 6.14) --------------------------------------------------------------


def test_batch_create_answers_201_with_the_created_ids(client: TestClient) -> None:
    response = batch(client, "create", [station(CITADEL_ID), station(DONG_BA_ID)])

    assert response.status_code == 201
    assert sorted(response.json()) == sorted([CITADEL_ID, DONG_BA_ID])


def test_batch_create_creates_every_entity_as_sent(client: TestClient) -> None:
    batch(client, "create", [station(CITADEL_ID), station(DONG_BA_ID)])

    assert retrieve(client, CITADEL_ID) == station(CITADEL_ID)
    assert retrieve(client, DONG_BA_ID) == station(DONG_BA_ID)


def test_batch_create_with_an_existing_id_answers_207_and_creates_the_others(
    client: TestClient,
) -> None:
    create(client, station(CITADEL_ID))

    response = batch(
        client,
        "create",
        [station(DONG_BA_ID), station(CITADEL_ID, pm25=prop(99.0)), station(THIEN_MU_ID)],
    )

    assert response.status_code == 207
    result = response.json()
    assert sorted(result["success"]) == sorted([DONG_BA_ID, THIEN_MU_ID])
    assert errors_by_id(result)[CITADEL_ID]["type"] == ERRORS + "AlreadyExists"
    assert exists(client, DONG_BA_ID) and exists(client, THIEN_MU_ID)
    assert retrieve(client, CITADEL_ID)["pm25"]["value"] == 37.2


def test_batch_create_with_an_invalid_entity_answers_207_and_creates_the_valid_ones(
    client: TestClient,
) -> None:
    response = batch(client, "create", [station(CITADEL_ID), invalid_station(DONG_BA_ID)])

    assert response.status_code == 207
    result = response.json()
    assert result["success"] == [CITADEL_ID]
    assert list(errors_by_id(result)) == [DONG_BA_ID]
    assert errors_by_id(result)[DONG_BA_ID]["type"] == ERRORS + "BadRequestData"
    assert exists(client, CITADEL_ID)
    assert not exists(client, DONG_BA_ID)


def test_batch_create_error_is_problem_details(client: TestClient) -> None:
    create(client, station(CITADEL_ID))

    response = batch(client, "create", [station(CITADEL_ID)])

    assert response.status_code == 207
    assert response.json()["success"] == []
    [entry] = response.json()["errors"]
    assert entry["entityId"] == CITADEL_ID
    assert entry["error"]["type"] == ERRORS + "AlreadyExists"
    assert entry["error"].get("title")


def test_batch_create_with_an_entity_without_id_answers_207(client: TestClient) -> None:
    nameless = station(DONG_BA_ID)
    del nameless["id"]

    response = batch(client, "create", [station(CITADEL_ID), nameless])

    assert response.status_code == 207
    result = response.json()
    assert result["success"] == [CITADEL_ID]
    assert len(result["errors"]) == 1
    assert result["errors"][0]["error"]["type"] == ERRORS + "BadRequestData"


# --- batch upsert (5.6.8, 6.15) --------------------------------------------------------------


def test_batch_upsert_of_new_entities_answers_201_with_their_ids(client: TestClient) -> None:
    response = batch(client, "upsert", [station(CITADEL_ID), station(DONG_BA_ID)])

    assert response.status_code == 201
    assert sorted(response.json()) == sorted([CITADEL_ID, DONG_BA_ID])
    assert retrieve(client, DONG_BA_ID) == station(DONG_BA_ID)


def test_batch_upsert_of_existing_entities_only_answers_204(client: TestClient) -> None:
    create(client, station(CITADEL_ID), station(DONG_BA_ID))

    response = batch(client, "upsert", [station(CITADEL_ID), station(DONG_BA_ID)])

    assert response.status_code == 204
    assert response.content == b""


def test_batch_upsert_of_new_and_existing_answers_201_with_only_the_new_ids(
    client: TestClient,
) -> None:
    create(client, station(CITADEL_ID))

    response = batch(client, "upsert", [station(CITADEL_ID), station(THIEN_MU_ID)])

    assert response.status_code == 201
    assert response.json() == [THIEN_MU_ID]
    assert exists(client, THIEN_MU_ID)


def test_batch_upsert_replaces_existing_entities_by_default(client: TestClient) -> None:
    create(client, station(CITADEL_ID, no2=prop(21)))

    batch(client, "upsert", [{"id": CITADEL_ID, "type": "AirQualityObserved", "pm25": prop(40.0)}])

    assert retrieve(client, CITADEL_ID) == {
        "id": CITADEL_ID,
        "type": "AirQualityObserved",
        "pm25": prop(40.0),
    }


def test_batch_upsert_with_replace_option_replaces_existing_entities(client: TestClient) -> None:
    create(client, station(CITADEL_ID, no2=prop(21)))

    response = batch(
        client,
        "upsert",
        [{"id": CITADEL_ID, "type": "AirQualityObserved", "pm25": prop(40.0)}],
        options="replace",
    )

    assert response.status_code == 204
    body = retrieve(client, CITADEL_ID)
    assert "no2" not in body and "location" not in body
    assert body["pm25"] == prop(40.0)


def test_batch_upsert_with_update_option_keeps_attributes_not_given(client: TestClient) -> None:
    create(client, station(CITADEL_ID, no2=prop(21)))

    response = batch(
        client,
        "upsert",
        [{"id": CITADEL_ID, "type": "AirQualityObserved", "pm25": prop(40.0), "o3": prop(60)}],
        options="update",
    )

    assert response.status_code == 204
    body = retrieve(client, CITADEL_ID)
    assert body["pm25"] == prop(40.0)
    assert body["o3"] == prop(60)
    assert body["no2"] == prop(21)
    assert body["location"] == station(CITADEL_ID)["location"]


def test_batch_upsert_with_an_invalid_entity_answers_207_and_upserts_the_valid_ones(
    client: TestClient,
) -> None:
    response = batch(client, "upsert", [station(CITADEL_ID), invalid_station(DONG_BA_ID)])

    assert response.status_code == 207
    result = response.json()
    assert result["success"] == [CITADEL_ID]
    assert errors_by_id(result)[DONG_BA_ID]["type"] == ERRORS + "BadRequestData"
    assert exists(client, CITADEL_ID)
    assert not exists(client, DONG_BA_ID)


# --- batch update (5.6.9, 6.16) --------------------------------------------------------------


def test_batch_update_answers_204_and_overwrites_attributes(client: TestClient) -> None:
    create(client, station(CITADEL_ID), station(DONG_BA_ID))

    response = batch(
        client,
        "update",
        [
            {"id": CITADEL_ID, "type": "AirQualityObserved", "pm25": prop(20.0)},
            {"id": DONG_BA_ID, "type": "AirQualityObserved", "no2": prop(33)},
        ],
    )

    assert response.status_code == 204
    citadel = retrieve(client, CITADEL_ID)
    assert citadel["pm25"] == prop(20.0)
    assert citadel["location"] == station(CITADEL_ID)["location"]
    dong_ba = retrieve(client, DONG_BA_ID)
    assert dong_ba["no2"] == prop(33)
    assert dong_ba["pm25"] == station(DONG_BA_ID)["pm25"]


def test_batch_update_with_no_overwrite_keeps_existing_values_and_answers_207(
    client: TestClient,
) -> None:
    create(client, station(CITADEL_ID))

    response = batch(
        client,
        "update",
        [{"id": CITADEL_ID, "type": "AirQualityObserved", "pm25": prop(99.0), "no2": prop(33)}],
        options="noOverwrite",
    )

    assert response.status_code == 207
    body = retrieve(client, CITADEL_ID)
    assert body["pm25"] == station(CITADEL_ID)["pm25"]
    assert body["no2"] == prop(33)


def test_batch_update_with_no_overwrite_of_new_attributes_only_answers_204(
    client: TestClient,
) -> None:
    create(client, station(CITADEL_ID))

    response = batch(
        client,
        "update",
        [{"id": CITADEL_ID, "type": "AirQualityObserved", "no2": prop(33)}],
        options="noOverwrite",
    )

    assert response.status_code == 204
    assert retrieve(client, CITADEL_ID)["no2"] == prop(33)


def test_batch_update_of_an_unknown_entity_answers_207_and_updates_the_others(
    client: TestClient,
) -> None:
    create(client, station(CITADEL_ID))

    response = batch(
        client,
        "update",
        [
            {"id": CITADEL_ID, "type": "AirQualityObserved", "pm25": prop(20.0)},
            {"id": UNKNOWN_ID, "type": "AirQualityObserved", "pm25": prop(20.0)},
        ],
    )

    assert response.status_code == 207
    result = response.json()
    assert result["success"] == [CITADEL_ID]
    assert errors_by_id(result)[UNKNOWN_ID]["type"] == ERRORS + "ResourceNotFound"
    assert retrieve(client, CITADEL_ID)["pm25"] == prop(20.0)
    assert not exists(client, UNKNOWN_ID)


# --- batch delete (5.6.10, 6.17) -------------------------------------------------------------


def test_batch_delete_answers_204_and_removes_the_entities(client: TestClient) -> None:
    create(client, station(CITADEL_ID), station(DONG_BA_ID), station(THIEN_MU_ID))

    response = batch(client, "delete", [CITADEL_ID, DONG_BA_ID])

    assert response.status_code == 204
    assert not exists(client, CITADEL_ID)
    assert not exists(client, DONG_BA_ID)
    assert exists(client, THIEN_MU_ID)


def test_batch_delete_with_an_unknown_id_answers_207_and_deletes_the_others(
    client: TestClient,
) -> None:
    create(client, station(CITADEL_ID))

    response = batch(client, "delete", [CITADEL_ID, UNKNOWN_ID])

    assert response.status_code == 207
    result = response.json()
    assert result["success"] == [CITADEL_ID]
    assert errors_by_id(result)[UNKNOWN_ID]["type"] == ERRORS + "ResourceNotFound"
    assert not exists(client, CITADEL_ID)


def test_batch_delete_of_only_unknown_ids_answers_207_with_no_success(client: TestClient) -> None:
    response = batch(client, "delete", [UNKNOWN_ID])

    assert response.status_code == 207
    assert response.json()["success"] == []
    assert list(errors_by_id(response.json())) == [UNKNOWN_ID]


# --- batch merge (5.6.20, 6.31) --------------------------------------------------------------


def test_batch_merge_answers_204_and_keeps_unmentioned_attributes(client: TestClient) -> None:
    create(client, station(CITADEL_ID), station(DONG_BA_ID))

    response = batch(
        client,
        "merge",
        [
            {"id": CITADEL_ID, "type": "AirQualityObserved", "pm25": prop(25.0)},
            {"id": DONG_BA_ID, "type": "AirQualityObserved", "no2": prop(33)},
        ],
    )

    assert response.status_code == 204
    citadel = retrieve(client, CITADEL_ID)
    assert citadel["pm25"] == {"type": "Property", "value": 25.0, "unitCode": "GQ"}
    assert citadel["location"] == station(CITADEL_ID)["location"]
    dong_ba = retrieve(client, DONG_BA_ID)
    assert dong_ba["no2"] == prop(33)
    assert dong_ba["pm25"] == station(DONG_BA_ID)["pm25"]


def test_batch_merge_with_ngsi_ld_null_deletes_the_attribute(client: TestClient) -> None:
    create(client, station(CITADEL_ID, no2=prop(21)))

    response = batch(
        client,
        "merge",
        [{"id": CITADEL_ID, "type": "AirQualityObserved", "no2": "urn:ngsi-ld:null"}],
    )

    assert response.status_code == 204
    assert retrieve(client, CITADEL_ID) == station(CITADEL_ID)


def test_batch_merge_of_an_unknown_entity_answers_207_and_merges_the_others(
    client: TestClient,
) -> None:
    create(client, station(CITADEL_ID))

    response = batch(
        client,
        "merge",
        [
            {"id": UNKNOWN_ID, "type": "AirQualityObserved", "pm25": prop(1.0)},
            {"id": CITADEL_ID, "type": "AirQualityObserved", "no2": prop(33)},
        ],
    )

    assert response.status_code == 207
    result = response.json()
    assert result["success"] == [CITADEL_ID]
    assert errors_by_id(result)[UNKNOWN_ID]["type"] == ERRORS + "ResourceNotFound"
    assert retrieve(client, CITADEL_ID)["no2"] == prop(33)
    assert not exists(client, UNKNOWN_ID)


# --- malformed batches (6.14-6.17, 6.31: 400) ------------------------------------------------

OPERATIONS = ["create", "upsert", "update", "delete", "merge"]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    "body",
    [station(CITADEL_ID), CITADEL_ID, 42, None],
    ids=["object", "string", "number", "null"],
)
def test_batch_with_a_non_array_body_answers_400(
    client: TestClient, operation: str, body: Any
) -> None:
    response = client.post(
        f"{OPS}/{operation}",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400, response.text
    assert response.json()["type"] in (ERRORS + "BadRequestData", ERRORS + "InvalidRequest")
    assert not exists(client, CITADEL_ID)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_batch_with_an_empty_array_answers_400(client: TestClient, operation: str) -> None:
    response = batch(client, operation, [])

    assert response.status_code == 400, response.text
    assert response.json()["type"] == ERRORS + "BadRequestData"


@pytest.mark.parametrize("operation", OPERATIONS)
def test_batch_with_malformed_json_answers_400_invalid_request(
    client: TestClient, operation: str
) -> None:
    response = client.post(
        f"{OPS}/{operation}",
        content=b'[{"id": "urn:ngsi-ld:AirQualityObserved:hue", ',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "InvalidRequest"


# --- query (5.7.2 with a Query, 6.23: POST /entityOperations/query) --------------------------


@pytest.fixture
def hue_stations(client: TestClient) -> TestClient:
    """The four Huế stations plus one WeatherObserved entity at the Citadel."""
    create(client, *(station(entity_id) for entity_id in STATIONS))
    create(
        client,
        {
            "id": "urn:ngsi-ld:WeatherObserved:hue-imperial-city",
            "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": 29.5, "unitCode": "CEL"},
            "location": station(CITADEL_ID)["location"],
        },
    )
    return client


def test_batch_query_by_type_returns_the_entities_of_that_type(hue_stations: TestClient) -> None:
    found = query(hue_stations, {"type": "Query", "entities": [{"type": "AirQualityObserved"}]})

    assert ids_of(found) == set(STATIONS)
    assert {e["id"]: e for e in found}[CITADEL_ID] == station(CITADEL_ID)


def test_batch_query_by_type_and_id_returns_that_entity(hue_stations: TestClient) -> None:
    found = query(
        hue_stations,
        {"type": "Query", "entities": [{"type": "AirQualityObserved", "id": DONG_BA_ID}]},
    )

    assert ids_of(found) == {DONG_BA_ID}


def test_batch_query_with_attrs_returns_only_those_attributes(hue_stations: TestClient) -> None:
    found = query(
        hue_stations,
        {"type": "Query", "entities": [{"type": "AirQualityObserved"}], "attrs": ["pm25"]},
    )

    assert ids_of(found) == set(STATIONS)
    for entity in found:
        assert set(entity) == {"id", "type", "pm25"}


def test_batch_query_with_q_filters_on_values(hue_stations: TestClient) -> None:
    found = query(
        hue_stations,
        {"type": "Query", "entities": [{"type": "AirQualityObserved"}], "q": "pm25>35"},
    )

    assert ids_of(found) == {CITADEL_ID, DONG_BA_ID}


def test_batch_query_with_geo_q_returns_entities_near_the_citadel(
    hue_stations: TestClient,
) -> None:
    found = query(
        hue_stations,
        {
            "type": "Query",
            "entities": [{"type": "AirQualityObserved"}],
            "geoQ": {
                "geometry": "Point",
                "coordinates": STATIONS[CITADEL_ID][1],
                "georel": "near;maxDistance==2000",
            },
        },
    )

    assert ids_of(found) == {CITADEL_ID, DONG_BA_ID}


def test_batch_query_with_geo_q_within_a_polygon(hue_stations: TestClient) -> None:
    inner_city = [
        [
            [107.560, 16.440],
            [107.600, 16.440],
            [107.600, 16.480],
            [107.560, 16.480],
            [107.560, 16.440],
        ]
    ]

    found = query(
        hue_stations,
        {
            "type": "Query",
            "entities": [{"type": "AirQualityObserved"}],
            "geoQ": {"geometry": "Polygon", "coordinates": inner_city, "georel": "within"},
        },
    )

    assert ids_of(found) == {CITADEL_ID, DONG_BA_ID}


def test_batch_query_combines_type_q_and_geo_q(hue_stations: TestClient) -> None:
    found = query(
        hue_stations,
        {
            "type": "Query",
            "entities": [{"type": "AirQualityObserved"}],
            "q": "pm25<40",
            "geoQ": {
                "geometry": "Point",
                "coordinates": STATIONS[CITADEL_ID][1],
                "georel": "near;maxDistance==5000",
            },
        },
    )

    assert ids_of(found) == {CITADEL_ID, THIEN_MU_ID}


def test_batch_query_with_several_entity_selectors_returns_their_union(
    hue_stations: TestClient,
) -> None:
    found = query(
        hue_stations,
        {
            "type": "Query",
            "entities": [
                {"type": "AirQualityObserved", "id": PHONG_DIEN_ID},
                {"type": "WeatherObserved"},
            ],
        },
    )

    assert ids_of(found) == {PHONG_DIEN_ID, "urn:ngsi-ld:WeatherObserved:hue-imperial-city"}


def test_batch_query_that_matches_nothing_answers_an_empty_array(hue_stations: TestClient) -> None:
    found = query(
        hue_stations,
        {"type": "Query", "entities": [{"type": "AirQualityObserved"}], "q": "pm25>500"},
    )

    assert found == []


def test_batch_query_with_a_body_that_is_not_a_query_answers_400(client: TestClient) -> None:
    response = client.post(f"{OPS}/query", json={"type": "Subscription", "entities": []})

    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"


def test_batch_query_with_an_invalid_q_answers_400(client: TestClient) -> None:
    response = client.post(
        f"{OPS}/query",
        json={"type": "Query", "entities": [{"type": "AirQualityObserved"}], "q": "pm25>>"},
    )

    assert response.status_code == 400
    assert response.json()["type"] == ERRORS + "BadRequestData"


def test_batch_errors_are_listed_in_request_order(client: TestClient) -> None:
    def station(n: str) -> dict[str, object]:
        return {"id": f"urn:ngsi-ld:AirQualityObserved:{n}", "type": "AirQualityObserved"}

    assert client.post("/ngsi-ld/v1/entities", json=station("taken")).status_code == 201
    body = [station("a"), {"id": "not a uri", "type": "X"}, station("taken"), {"type": "X"}]
    response = client.post("/ngsi-ld/v1/entityOperations/create", json=body)
    assert response.status_code == 207
    errors = response.json()["errors"]
    assert [e["entityId"] for e in errors] == [
        "not a uri",
        "urn:ngsi-ld:AirQualityObserved:taken",
        None,
    ]
    assert [e["error"]["status"] for e in errors] == [400, 409, 400]


# --- load: batches wait their turn -------------------------------------------------------------


def test_at_most_two_batches_are_processed_at_once(client: TestClient) -> None:
    import asyncio
    import threading

    from urbanstack.api.batch import BATCHES_AT_ONCE

    store = client.app.state.broker.store  # type: ignore[attr-defined]
    original = store.change_entities
    running, seen = 0, []

    async def slow_change(*args: Any, **kwargs: Any) -> Any:
        nonlocal running
        running += 1
        seen.append(running)
        try:
            await asyncio.sleep(0.1)  # long enough for every request to be waiting
            return await original(*args, **kwargs)
        finally:
            running -= 1

    store.change_entities = slow_change
    statuses: list[int] = []

    def upsert(n: int) -> None:
        body = [
            {"id": f"urn:ngsi-ld:AirQualityObserved:load-{n}-{k}", "type": "AirQualityObserved"}
            for k in range(3)
        ]
        statuses.append(client.post(f"{OPS}/upsert", json=body).status_code)

    threads = [threading.Thread(target=upsert, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [201] * 6
    assert max(seen) == BATCHES_AT_ONCE == 2
    total = client.get(ENTITIES, params={"type": "AirQualityObserved", "count": "true", "limit": 0})
    assert total.headers["NGSILD-Results-Count"] == "18"
