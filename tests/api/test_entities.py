"""Entity and attribute operations over HTTP (ETSI GS CIM 009 v1.8.1, clauses 5.6, 5.7, 6.4-6.7).

Every test drives the real app in-process and asserts what the specification requires:
status codes, ProblemDetails types, and the entity as it reads back afterwards.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

# --- helpers ---------------------------------------------------------------------------------

BASE = "/ngsi-ld/v1"
ENTITIES = f"{BASE}/entities"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"

AQ_ID = "urn:ngsi-ld:AirQualityObserved:hue-imperial-city"
AQ_OTHER_ID = "urn:ngsi-ld:AirQualityObserved:hue-dong-ba-market"
SENSOR_ID = "urn:ngsi-ld:Device:hue-aq-sensor-01"
CITADEL = [107.5786, 16.4698]
DS_SENSOR = "urn:ngsi-ld:Dataset:sensor"
DS_SATELLITE = "urn:ngsi-ld:Dataset:satellite"


def pm25(value: float = 37.2, **members: Any) -> dict[str, Any]:
    """A PM2.5 Property in µg/m³ (UN/CEFACT GQ), observed at the Imperial City."""
    attr = {
        "type": "Property",
        "value": value,
        "unitCode": "GQ",
        "observedAt": "2025-03-01T07:00:00Z",
    }
    attr.update(members)
    return attr


def point(coordinates: list[float] | None = None) -> dict[str, Any]:
    return {"type": "Point", "coordinates": coordinates or CITADEL}


def location(geometry: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": geometry or point()}


def air_quality(entity_id: str = AQ_ID, **attrs: Any) -> dict[str, Any]:
    """A normalized AirQualityObserved entity at the Huế Imperial City."""
    entity: dict[str, Any] = {
        "id": entity_id,
        "type": "AirQualityObserved",
        "pm25": pm25(),
        "location": location(),
    }
    entity.update(attrs)
    return entity


def create(client: TestClient, entity: dict[str, Any]) -> None:
    response = client.post(ENTITIES, json=entity)
    assert response.status_code == 201, response.text


TIME_MEMBERS = frozenset({"observedAt", "createdAt", "modifiedAt"})


def instant(text: str) -> datetime:
    """An ISO 8601 timestamp as an aware datetime (the spec fixes the instant, not the digits)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def canonical(doc: Any) -> Any:
    """``doc`` with every timestamp member parsed, so equal instants compare equal."""
    if isinstance(doc, dict):
        return {
            k: instant(v) if k in TIME_MEMBERS and isinstance(v, str) else canonical(v)
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [canonical(item) for item in doc]
    return doc


def retrieve(client: TestClient, entity_id: str = AQ_ID, **params: str) -> dict[str, Any]:
    """GET one entity; timestamps come back parsed (see :func:`canonical`)."""
    response = client.get(f"{ENTITIES}/{entity_id}", params=params)
    assert response.status_code == 200, response.text
    return canonical(response.json())


def assert_absent(client: TestClient, entity_id: str = AQ_ID) -> None:
    response = client.get(f"{ENTITIES}/{entity_id}")
    assert response.status_code == 404, response.text


def assert_problem(response: Any, status: int, error_type: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == ERRORS + error_type, body
    assert body.get("title"), body


def by_dataset(instances: list[dict[str, Any]]) -> dict[str | None, dict[str, Any]]:
    return {inst.get("datasetId"): inst for inst in instances}


# --- create (5.6.1, 6.4.3.1) -----------------------------------------------------------------


def test_create_entity_answers_201_with_location(client: TestClient) -> None:
    response = client.post(ENTITIES, json=air_quality())

    assert response.status_code == 201
    assert response.headers["location"].endswith(f"/ngsi-ld/v1/entities/{AQ_ID}")
    assert response.content == b""


def test_created_entity_reads_back_as_sent(client: TestClient) -> None:
    create(client, air_quality())

    assert retrieve(client) == canonical(air_quality())


def test_create_entity_with_taken_id_answers_409_already_exists(client: TestClient) -> None:
    create(client, air_quality())

    response = client.post(ENTITIES, json=air_quality(pm25=pm25(99.0)))

    assert_problem(response, 409, "AlreadyExists")
    assert retrieve(client)["pm25"]["value"] == 37.2


@pytest.mark.parametrize("bad_id", ["hue-imperial-city", "urn ngsi-ld Hue", "", 42])
def test_create_entity_with_invalid_id_answers_400_and_creates_nothing(
    client: TestClient, bad_id: Any
) -> None:
    response = client.post(ENTITIES, json=air_quality(entity_id=bad_id))

    assert_problem(response, 400, "BadRequestData")
    listed = client.get(ENTITIES, params={"type": "AirQualityObserved"})
    assert listed.status_code == 200
    assert listed.json() == []


def test_create_entity_without_id_answers_400(client: TestClient) -> None:
    entity = air_quality()
    del entity["id"]

    response = client.post(ENTITIES, json=entity)

    assert_problem(response, 400, "BadRequestData")
    assert client.get(ENTITIES, params={"type": "AirQualityObserved"}).json() == []


def test_create_entity_without_type_answers_400_and_creates_nothing(client: TestClient) -> None:
    entity = air_quality()
    del entity["type"]

    response = client.post(ENTITIES, json=entity)

    assert_problem(response, 400, "BadRequestData")
    assert_absent(client)


@pytest.mark.parametrize("bad_type", ["Air Quality", "Air<Quality>", "", []])
def test_create_entity_with_invalid_type_answers_400_and_creates_nothing(
    client: TestClient, bad_type: Any
) -> None:
    response = client.post(ENTITIES, json=air_quality(type=bad_type))

    assert_problem(response, 400, "BadRequestData")
    assert_absent(client)


@pytest.mark.parametrize("bad_name", ["pm 2.5", "pm<25>", "pm25=high", "pm(25)", "pm;25", 'pm"25'])
def test_create_entity_with_invalid_attribute_name_answers_400_and_creates_nothing(
    client: TestClient, bad_name: str
) -> None:
    response = client.post(ENTITIES, json=air_quality(**{bad_name: pm25()}))

    assert_problem(response, 400, "BadRequestData")
    assert_absent(client)


@pytest.mark.parametrize(
    "bad_geometry",
    [
        {"type": "Point", "coordinates": "107.5786,16.4698"},
        {"type": "Point", "coordinates": [107.5786]},
        {"type": "Point", "coordinates": [207.5786, 16.4698]},
        {"type": "LineString", "coordinates": [CITADEL]},
        {"type": "Polygon", "coordinates": [[[107.57, 16.46], [107.59, 16.46], [107.59, 16.48]]]},
        {"type": "Point"},
    ],
    ids=["string", "one-number", "lon-out-of-range", "one-position-line", "open-ring", "no-coords"],
)
def test_create_entity_with_invalid_geometry_answers_400_and_creates_nothing(
    client: TestClient, bad_geometry: dict[str, Any]
) -> None:
    response = client.post(ENTITIES, json=air_quality(location=location(bad_geometry)))

    assert_problem(response, 400, "BadRequestData")
    assert_absent(client)


@pytest.mark.parametrize(
    "bad_time", ["yesterday", "2025-13-01T07:00:00Z", "2025-03-01", 1740812400]
)
def test_create_entity_with_invalid_observed_at_answers_400_and_creates_nothing(
    client: TestClient, bad_time: Any
) -> None:
    response = client.post(ENTITIES, json=air_quality(pm25=pm25(observedAt=bad_time)))

    assert_problem(response, 400, "BadRequestData")
    assert_absent(client)


@pytest.mark.parametrize(
    "bad_attribute",
    [
        {"type": "Property"},
        {"type": "Property", "value": None},
        {"type": "Relationship"},
        {"type": "Relationship", "object": "not a uri"},
        {"type": "GeoProperty"},
        {"type": "LanguageProperty"},
    ],
    ids=["property", "null-value", "relationship", "bad-object", "geoproperty", "languageproperty"],
)
def test_create_entity_with_attribute_missing_its_value_answers_400_and_creates_nothing(
    client: TestClient, bad_attribute: dict[str, Any]
) -> None:
    response = client.post(ENTITIES, json=air_quality(broken=bad_attribute))

    assert_problem(response, 400, "BadRequestData")
    assert_absent(client)


def test_create_entity_with_malformed_json_answers_400_invalid_request(
    client: TestClient,
) -> None:
    response = client.post(
        ENTITIES,
        content=b'{"id": "urn:ngsi-ld:AirQualityObserved:hue", "type": ',
        headers={"Content-Type": "application/json"},
    )

    assert_problem(response, 400, "InvalidRequest")


def test_create_entity_with_unsupported_content_type_answers_415(client: TestClient) -> None:
    response = client.post(
        ENTITIES, content=b"id=urn:ngsi-ld:X:1", headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 415


# --- retrieve (5.7.1, 6.5.3.1) ---------------------------------------------------------------


def test_retrieve_unknown_entity_answers_404_resource_not_found(client: TestClient) -> None:
    response = client.get(f"{ENTITIES}/{AQ_ID}")

    assert_problem(response, 404, "ResourceNotFound")


def test_retrieve_answers_json_of_its_length_linking_the_core_context(
    client: TestClient,
) -> None:
    create(client, air_quality())

    response = client.get(f"{ENTITIES}/{AQ_ID}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["link"].startswith("<https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core")
    assert response.json()["id"] == AQ_ID


def test_retrieve_without_and_with_query_parameters_and_head(client: TestClient) -> None:
    create(client, air_quality())

    plain = client.get(f"{ENTITIES}/{AQ_ID}")
    head = client.head(f"{ENTITIES}/{AQ_ID}")
    concise = client.get(f"{ENTITIES}/{AQ_ID}?format=concise")

    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == plain.headers["content-length"]
    assert head.headers["link"] == plain.headers["link"]
    assert concise.json()["pm25"]["value"] == plain.json()["pm25"]["value"]
    assert "type" not in concise.json()["pm25"]


def test_retrieve_with_invalid_entity_id_answers_400(client: TestClient) -> None:
    response = client.get(f"{ENTITIES}/not-a-uri")

    assert_problem(response, 400, "BadRequestData")


# --- delete entity (5.6.6, 6.5.3.2) ----------------------------------------------------------


def test_delete_entity_answers_204_and_entity_is_gone(client: TestClient) -> None:
    create(client, air_quality())

    response = client.delete(f"{ENTITIES}/{AQ_ID}")

    assert response.status_code == 204
    assert_absent(client)


def test_delete_unknown_entity_answers_404(client: TestClient) -> None:
    response = client.delete(f"{ENTITIES}/{AQ_ID}")

    assert_problem(response, 404, "ResourceNotFound")


def test_delete_entity_leaves_other_entities_alone(client: TestClient) -> None:
    create(client, air_quality())
    create(client, air_quality(AQ_OTHER_ID))

    client.delete(f"{ENTITIES}/{AQ_ID}")

    assert retrieve(client, AQ_OTHER_ID)["id"] == AQ_OTHER_ID


# --- replace entity (5.6.18, PUT) ------------------------------------------------------------


def test_replace_entity_answers_204_and_drops_attributes_not_given(client: TestClient) -> None:
    create(client, air_quality(no2={"type": "Property", "value": 21}))
    replacement = {"type": "AirQualityObserved", "pm25": pm25(12.5)}

    response = client.put(f"{ENTITIES}/{AQ_ID}", json=replacement)

    assert response.status_code == 204
    assert retrieve(client) == canonical(
        {"id": AQ_ID, "type": "AirQualityObserved", "pm25": pm25(12.5)}
    )


def test_replace_entity_keeps_created_at(client: TestClient) -> None:
    create(client, air_quality())
    created_at = retrieve(client, options="sysAttrs")["createdAt"]
    time.sleep(0.01)

    client.put(f"{ENTITIES}/{AQ_ID}", json={"type": "AirQualityObserved", "pm25": pm25(12.5)})

    after = retrieve(client, options="sysAttrs")
    assert after["createdAt"] == created_at
    assert after["modifiedAt"] > created_at


def test_replace_unknown_entity_answers_404(client: TestClient) -> None:
    response = client.put(f"{ENTITIES}/{AQ_ID}", json={"type": "AirQualityObserved"})

    assert_problem(response, 404, "ResourceNotFound")
    assert_absent(client)


def test_replace_entity_with_other_id_in_body_answers_400(client: TestClient) -> None:
    create(client, air_quality())

    response = client.put(f"{ENTITIES}/{AQ_ID}", json=air_quality(AQ_OTHER_ID, pm25=pm25(1.0)))

    assert_problem(response, 400, "BadRequestData")
    assert retrieve(client)["pm25"]["value"] == 37.2


# --- merge entity (5.6.17, PATCH /entities/{id}) ---------------------------------------------


def test_merge_entity_answers_204_and_keeps_unmentioned_attributes(client: TestClient) -> None:
    create(client, air_quality())

    response = client.patch(f"{ENTITIES}/{AQ_ID}", json={"no2": {"type": "Property", "value": 21}})

    assert response.status_code == 204
    body = retrieve(client)
    assert body["pm25"] == canonical(pm25())
    assert body["location"] == location()
    assert body["no2"] == {"type": "Property", "value": 21}


def test_merge_entity_replaces_the_value_of_a_mentioned_attribute(client: TestClient) -> None:
    create(client, air_quality())

    client.patch(f"{ENTITIES}/{AQ_ID}", json={"pm25": {"type": "Property", "value": 55.0}})

    assert retrieve(client)["pm25"]["value"] == 55.0


def test_merge_entity_with_ngsi_ld_null_deletes_the_attribute(client: TestClient) -> None:
    create(client, air_quality(no2={"type": "Property", "value": 21}))

    response = client.patch(f"{ENTITIES}/{AQ_ID}", json={"no2": "urn:ngsi-ld:null"})

    assert response.status_code == 204
    body = retrieve(client)
    assert "no2" not in body
    assert body["pm25"] == canonical(pm25())


def test_merge_entity_merges_sub_attributes(client: TestClient) -> None:
    measured_by = {"type": "Relationship", "object": SENSOR_ID}
    create(client, air_quality(pm25=pm25(measuredBy=measured_by)))

    client.patch(
        f"{ENTITIES}/{AQ_ID}",
        json={
            "pm25": {
                "type": "Property",
                "value": 41.0,
                "reliability": {"type": "Property", "value": 0.9},
            }
        },
    )

    merged = retrieve(client)["pm25"]
    assert merged["value"] == 41.0
    assert merged["measuredBy"] == measured_by
    assert merged["reliability"] == {"type": "Property", "value": 0.9}
    assert merged["unitCode"] == "GQ"


def test_merge_entity_with_ngsi_ld_null_sub_attribute_deletes_only_it(client: TestClient) -> None:
    measured_by = {"type": "Relationship", "object": SENSOR_ID}
    create(client, air_quality(pm25=pm25(measuredBy=measured_by)))

    response = client.patch(
        f"{ENTITIES}/{AQ_ID}",
        json={"pm25": {"type": "Property", "value": 37.2, "measuredBy": "urn:ngsi-ld:null"}},
    )

    assert response.status_code == 204
    assert retrieve(client)["pm25"] == canonical(pm25())


def test_merge_entity_accepts_merge_patch_json(client: TestClient) -> None:
    create(client, air_quality())

    response = client.patch(
        f"{ENTITIES}/{AQ_ID}",
        content=b'{"no2": {"type": "Property", "value": 21}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )

    assert response.status_code == 204
    assert retrieve(client)["no2"]["value"] == 21


def test_merge_unknown_entity_answers_404(client: TestClient) -> None:
    response = client.patch(f"{ENTITIES}/{AQ_ID}", json={"no2": {"type": "Property", "value": 1}})

    assert_problem(response, 404, "ResourceNotFound")
    assert_absent(client)


# --- append attributes (5.6.3, POST /entities/{id}/attrs) ------------------------------------


def test_append_new_attribute_answers_204(client: TestClient) -> None:
    create(client, air_quality())

    response = client.post(
        f"{ENTITIES}/{AQ_ID}/attrs", json={"no2": {"type": "Property", "value": 21}}
    )

    assert response.status_code == 204
    body = retrieve(client)
    assert body["no2"] == {"type": "Property", "value": 21}
    assert body["pm25"] == canonical(pm25())


def test_append_overwrites_an_existing_attribute_by_default(client: TestClient) -> None:
    create(client, air_quality())

    response = client.post(f"{ENTITIES}/{AQ_ID}/attrs", json={"pm25": pm25(64.0)})

    assert response.status_code == 204
    assert retrieve(client)["pm25"] == canonical(pm25(64.0))


def test_append_with_no_overwrite_keeps_existing_value_and_answers_207(
    client: TestClient,
) -> None:
    create(client, air_quality())

    response = client.post(
        f"{ENTITIES}/{AQ_ID}/attrs",
        params={"options": "noOverwrite"},
        json={"pm25": pm25(64.0), "no2": {"type": "Property", "value": 21}},
    )

    assert response.status_code == 207
    result = response.json()
    assert result["updated"] == ["no2"]
    assert [d["attributeName"] for d in result["notUpdated"]] == ["pm25"]
    assert all(isinstance(d.get("reason"), str) and d["reason"] for d in result["notUpdated"])
    body = retrieve(client)
    assert body["pm25"] == canonical(pm25())
    assert body["no2"]["value"] == 21


def test_append_with_no_overwrite_of_only_new_attributes_answers_204(client: TestClient) -> None:
    create(client, air_quality())

    response = client.post(
        f"{ENTITIES}/{AQ_ID}/attrs",
        params={"options": "noOverwrite"},
        json={"no2": {"type": "Property", "value": 21}},
    )

    assert response.status_code == 204
    assert retrieve(client)["no2"]["value"] == 21


def test_append_with_new_dataset_id_adds_an_instance(client: TestClient) -> None:
    create(client, air_quality())

    client.post(f"{ENTITIES}/{AQ_ID}/attrs", json={"pm25": pm25(30.0, datasetId=DS_SATELLITE)})

    instances = by_dataset(retrieve(client)["pm25"])
    assert instances[None]["value"] == 37.2
    assert instances[DS_SATELLITE]["value"] == 30.0


def test_append_to_unknown_entity_answers_404(client: TestClient) -> None:
    response = client.post(f"{ENTITIES}/{AQ_ID}/attrs", json={"pm25": pm25()})

    assert_problem(response, 404, "ResourceNotFound")


def test_append_with_invalid_attribute_answers_400_and_changes_nothing(
    client: TestClient,
) -> None:
    create(client, air_quality())

    response = client.post(
        f"{ENTITIES}/{AQ_ID}/attrs", json={"pm25": pm25(1.0), "no2": {"type": "Property"}}
    )

    assert_problem(response, 400, "BadRequestData")
    assert retrieve(client) == canonical(air_quality())


# --- update attributes (5.6.2, PATCH /entities/{id}/attrs) -----------------------------------


def test_update_attributes_replaces_existing_attribute_and_answers_204(
    client: TestClient,
) -> None:
    create(client, air_quality())

    response = client.patch(f"{ENTITIES}/{AQ_ID}/attrs", json={"pm25": pm25(18.0)})

    assert response.status_code == 204
    assert retrieve(client)["pm25"] == canonical(pm25(18.0))


def test_update_attributes_skips_missing_attribute_and_answers_207(client: TestClient) -> None:
    create(client, air_quality())

    response = client.patch(
        f"{ENTITIES}/{AQ_ID}/attrs",
        json={"pm25": pm25(18.0), "no2": {"type": "Property", "value": 21}},
    )

    assert response.status_code == 207
    result = response.json()
    assert result["updated"] == ["pm25"]
    assert [d["attributeName"] for d in result["notUpdated"]] == ["no2"]
    body = retrieve(client)
    assert body["pm25"]["value"] == 18.0
    assert "no2" not in body


def test_update_attributes_of_unknown_entity_answers_404(client: TestClient) -> None:
    response = client.patch(f"{ENTITIES}/{AQ_ID}/attrs", json={"pm25": pm25()})

    assert_problem(response, 404, "ResourceNotFound")


def test_update_attributes_with_invalid_entity_id_answers_400(client: TestClient) -> None:
    response = client.patch(f"{ENTITIES}/thisisaninvaliduri/attrs", json={"pm25": pm25()})

    assert_problem(response, 400, "BadRequestData")


# --- partial attribute update (5.6.4, PATCH /entities/{id}/attrs/{attrId}) --------------------


def test_partial_attribute_update_changes_only_given_members(client: TestClient) -> None:
    measured_by = {"type": "Relationship", "object": SENSOR_ID}
    create(client, air_quality(pm25=pm25(measuredBy=measured_by)))

    response = client.patch(f"{ENTITIES}/{AQ_ID}/attrs/pm25", json={"value": 52.3})

    assert response.status_code == 204
    assert retrieve(client)["pm25"] == canonical(pm25(52.3, measuredBy=measured_by))


def test_partial_attribute_update_keeps_observed_at_and_unit_code(client: TestClient) -> None:
    create(client, air_quality())

    client.patch(f"{ENTITIES}/{AQ_ID}/attrs/pm25", json={"type": "Property", "value": 52.3})

    updated = retrieve(client)["pm25"]
    assert updated["observedAt"] == instant("2025-03-01T07:00:00Z")
    assert updated["unitCode"] == "GQ"


def test_partial_attribute_update_with_dataset_id_changes_only_that_instance(
    client: TestClient,
) -> None:
    create(client, air_quality(pm25=[pm25(37.2), pm25(30.0, datasetId=DS_SATELLITE)]))

    response = client.patch(
        f"{ENTITIES}/{AQ_ID}/attrs/pm25", json={"value": 33.3, "datasetId": DS_SATELLITE}
    )

    assert response.status_code == 204
    instances = by_dataset(retrieve(client)["pm25"])
    assert instances[DS_SATELLITE]["value"] == 33.3
    assert instances[None]["value"] == 37.2


def test_partial_attribute_update_of_missing_attribute_answers_404(client: TestClient) -> None:
    create(client, air_quality())

    response = client.patch(f"{ENTITIES}/{AQ_ID}/attrs/no2", json={"value": 21})

    assert_problem(response, 404, "ResourceNotFound")
    assert "no2" not in retrieve(client)


def test_partial_attribute_update_with_unknown_dataset_id_answers_404(client: TestClient) -> None:
    create(client, air_quality())

    response = client.patch(
        f"{ENTITIES}/{AQ_ID}/attrs/pm25", json={"value": 1.0, "datasetId": DS_SATELLITE}
    )

    assert_problem(response, 404, "ResourceNotFound")
    assert retrieve(client)["pm25"] == canonical(pm25())


def test_partial_attribute_update_of_unknown_entity_answers_404(client: TestClient) -> None:
    response = client.patch(f"{ENTITIES}/{AQ_ID}/attrs/pm25", json={"value": 1.0})

    assert_problem(response, 404, "ResourceNotFound")


def test_partial_attribute_update_with_other_attribute_type_answers_400(
    client: TestClient,
) -> None:
    create(client, air_quality())

    response = client.patch(
        f"{ENTITIES}/{AQ_ID}/attrs/pm25", json={"type": "Relationship", "object": SENSOR_ID}
    )

    assert_problem(response, 400, "BadRequestData")
    assert retrieve(client)["pm25"] == canonical(pm25())


# --- delete attribute (5.6.5, DELETE /entities/{id}/attrs/{attrId}) --------------------------


def test_delete_attribute_answers_204_and_removes_it(client: TestClient) -> None:
    create(client, air_quality(no2={"type": "Property", "value": 21}))

    response = client.delete(f"{ENTITIES}/{AQ_ID}/attrs/no2")

    assert response.status_code == 204
    assert retrieve(client) == canonical(air_quality())


def test_delete_attribute_with_dataset_id_removes_only_that_instance(client: TestClient) -> None:
    create(client, air_quality(pm25=[pm25(37.2), pm25(30.0, datasetId=DS_SATELLITE)]))

    response = client.delete(f"{ENTITIES}/{AQ_ID}/attrs/pm25", params={"datasetId": DS_SATELLITE})

    assert response.status_code == 204
    assert retrieve(client)["pm25"] == canonical(pm25(37.2))


def test_delete_attribute_without_dataset_id_removes_only_the_default_instance(
    client: TestClient,
) -> None:
    create(client, air_quality(pm25=[pm25(37.2), pm25(30.0, datasetId=DS_SATELLITE)]))

    response = client.delete(f"{ENTITIES}/{AQ_ID}/attrs/pm25")

    assert response.status_code == 204
    assert retrieve(client)["pm25"] == canonical(pm25(30.0, datasetId=DS_SATELLITE))


def test_delete_attribute_with_delete_all_removes_every_instance(client: TestClient) -> None:
    create(
        client,
        air_quality(
            pm25=[pm25(37.2), pm25(30.0, datasetId=DS_SATELLITE), pm25(35.0, datasetId=DS_SENSOR)]
        ),
    )

    response = client.delete(f"{ENTITIES}/{AQ_ID}/attrs/pm25", params={"deleteAll": "true"})

    assert response.status_code == 204
    assert "pm25" not in retrieve(client)


def test_delete_missing_attribute_answers_404(client: TestClient) -> None:
    create(client, air_quality())

    response = client.delete(f"{ENTITIES}/{AQ_ID}/attrs/no2")

    assert_problem(response, 404, "ResourceNotFound")


def test_delete_attribute_with_unknown_dataset_id_answers_404(client: TestClient) -> None:
    create(client, air_quality())

    response = client.delete(f"{ENTITIES}/{AQ_ID}/attrs/pm25", params={"datasetId": DS_SATELLITE})

    assert_problem(response, 404, "ResourceNotFound")
    assert retrieve(client)["pm25"] == canonical(pm25())


def test_delete_attribute_of_unknown_entity_answers_404(client: TestClient) -> None:
    response = client.delete(f"{ENTITIES}/{AQ_ID}/attrs/pm25")

    assert_problem(response, 404, "ResourceNotFound")


# --- attribute kinds round-trip (4.5, normalized representation) -----------------------------


@pytest.mark.parametrize(
    "value",
    [37.2, 0, -3, "Tốt", True, False, [12.1, 15.3, 37.2], {"aqi": 104, "level": "moderate"}],
    ids=["float", "zero", "negative", "text", "true", "false", "array", "object"],
)
def test_property_value_round_trips(client: TestClient, value: Any) -> None:
    create(client, air_quality(reading={"type": "Property", "value": value}))

    assert retrieve(client)["reading"] == {"type": "Property", "value": value}


def test_relationship_with_single_object_round_trips(client: TestClient) -> None:
    rel = {"type": "Relationship", "object": SENSOR_ID}
    create(client, air_quality(measuredBy=rel))

    assert retrieve(client)["measuredBy"] == rel


def test_relationship_with_object_list_round_trips(client: TestClient) -> None:
    rel = {
        "type": "Relationship",
        "object": [SENSOR_ID, "urn:ngsi-ld:Device:hue-aq-sensor-02"],
    }
    create(client, air_quality(measuredBy=rel))

    assert retrieve(client)["measuredBy"] == rel


def test_relationship_object_type_round_trips(client: TestClient) -> None:
    rel = {"type": "Relationship", "object": SENSOR_ID, "objectType": "Device"}
    create(client, air_quality(measuredBy=rel))

    assert retrieve(client)["measuredBy"] == rel


GEOMETRIES = {
    "Point": {"type": "Point", "coordinates": CITADEL},
    "LineString": {
        "type": "LineString",
        "coordinates": [[107.5786, 16.4698], [107.5905, 16.4637], [107.6010, 16.4580]],
    },
    "Polygon": {
        "type": "Polygon",
        "coordinates": [
            [
                [107.570, 16.460],
                [107.590, 16.460],
                [107.590, 16.480],
                [107.570, 16.480],
                [107.570, 16.460],
            ]
        ],
    },
    "MultiPoint": {"type": "MultiPoint", "coordinates": [CITADEL, [107.5905, 16.4637]]},
    "MultiLineString": {
        "type": "MultiLineString",
        "coordinates": [
            [[107.5786, 16.4698], [107.5905, 16.4637]],
            [[107.5600, 16.4500], [107.5700, 16.4550]],
        ],
    },
    "MultiPolygon": {
        "type": "MultiPolygon",
        "coordinates": [
            [[[107.570, 16.460], [107.580, 16.460], [107.580, 16.470], [107.570, 16.460]]],
            [[[107.600, 16.450], [107.610, 16.450], [107.610, 16.460], [107.600, 16.450]]],
        ],
    },
}


@pytest.mark.parametrize("kind", sorted(GEOMETRIES))
def test_geo_property_round_trips(client: TestClient, kind: str) -> None:
    create(client, air_quality(location=location(GEOMETRIES[kind])))

    assert retrieve(client)["location"] == location(GEOMETRIES[kind])


LANGUAGE_MAP = {"vi": "Kinh thành Huế", "en": "Huế Imperial City", "fr": "Cité impériale de Hué"}


def test_language_property_round_trips(client: TestClient) -> None:
    name = {"type": "LanguageProperty", "languageMap": LANGUAGE_MAP}
    create(client, air_quality(name=name))

    assert retrieve(client)["name"] == name


def test_language_property_with_lang_answers_a_property_in_that_language(
    client: TestClient,
) -> None:
    create(client, air_quality(name={"type": "LanguageProperty", "languageMap": LANGUAGE_MAP}))

    name = retrieve(client, lang="vi")["name"]

    assert name == {"type": "Property", "value": "Kinh thành Huế", "lang": "vi"}


def test_vocab_property_round_trips(client: TestClient) -> None:
    level = {"type": "VocabProperty", "vocab": "moderate"}
    create(client, air_quality(airQualityLevel=level))

    assert retrieve(client)["airQualityLevel"] == level


def test_json_property_round_trips(client: TestClient) -> None:
    raw = {"type": "JsonProperty", "json": {"sensor": {"model": "PMS5003", "firmware": "2.1"}}}
    create(client, air_quality(rawPayload=raw))

    assert retrieve(client)["rawPayload"] == raw


def test_list_property_round_trips(client: TestClient) -> None:
    hourly = {"type": "ListProperty", "valueList": [31.0, 35.5, 37.2, 40.1]}
    create(client, air_quality(hourlyPm25=hourly))

    assert retrieve(client)["hourlyPm25"] == hourly


def test_list_relationship_round_trips(client: TestClient) -> None:
    sensors = {
        "type": "ListRelationship",
        "objectList": [{"object": SENSOR_ID}, {"object": "urn:ngsi-ld:Device:hue-aq-sensor-02"}],
    }
    create(client, air_quality(calibratedBy=sensors))

    assert retrieve(client)["calibratedBy"] == sensors


def test_nested_sub_attributes_round_trip(client: TestClient) -> None:
    nested = pm25(
        measuredBy={
            "type": "Relationship",
            "object": SENSOR_ID,
            "installedAt": {
                "type": "GeoProperty",
                "value": point([107.5790, 16.4701]),
                "accuracy": {"type": "Property", "value": 3, "unitCode": "MTR"},
            },
        }
    )
    create(client, air_quality(pm25=nested))

    assert retrieve(client)["pm25"] == canonical(nested)


def test_observed_at_and_unit_code_round_trip(client: TestClient) -> None:
    create(client, air_quality())

    attr = retrieve(client)["pm25"]

    assert attr["observedAt"] == instant("2025-03-01T07:00:00Z")
    assert attr["unitCode"] == "GQ"


def test_two_instances_by_dataset_id_come_back_as_a_list(client: TestClient) -> None:
    create(
        client,
        air_quality(pm25=[pm25(37.2, datasetId=DS_SENSOR), pm25(30.0, datasetId=DS_SATELLITE)]),
    )

    instances = retrieve(client)["pm25"]

    assert isinstance(instances, list)
    assert by_dataset(instances) == canonical(
        {
            DS_SENSOR: pm25(37.2, datasetId=DS_SENSOR),
            DS_SATELLITE: pm25(30.0, datasetId=DS_SATELLITE),
        }
    )


def test_two_instances_with_the_same_dataset_id_are_refused(client: TestClient) -> None:
    response = client.post(
        ENTITIES,
        json=air_quality(pm25=[pm25(37.2, datasetId=DS_SENSOR), pm25(30.0, datasetId=DS_SENSOR)]),
    )

    assert_problem(response, 400, "BadRequestData")
    assert_absent(client)


# --- system attributes (4.8, options=sysAttrs) -----------------------------------------------


def test_system_attributes_are_absent_without_sys_attrs(client: TestClient) -> None:
    create(client, air_quality())

    body = retrieve(client)

    assert "createdAt" not in body and "modifiedAt" not in body
    assert "createdAt" not in body["pm25"] and "modifiedAt" not in body["pm25"]


def test_sys_attrs_adds_created_at_and_modified_at_to_entity_and_attributes(
    client: TestClient,
) -> None:
    create(client, air_quality())

    body = client.get(f"{ENTITIES}/{AQ_ID}", params={"options": "sysAttrs"}).json()

    for holder in (body, body["pm25"], body["location"]):
        assert instant(holder["createdAt"]).utcoffset().total_seconds() == 0
        assert instant(holder["modifiedAt"]) >= instant(holder["createdAt"])


def test_modified_at_advances_after_an_update_while_created_at_stays(client: TestClient) -> None:
    create(client, air_quality())
    before = retrieve(client, options="sysAttrs")
    time.sleep(0.01)

    client.patch(f"{ENTITIES}/{AQ_ID}/attrs", json={"pm25": pm25(18.0)})

    after = retrieve(client, options="sysAttrs")
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]
    assert after["pm25"]["createdAt"] == before["pm25"]["createdAt"]
    assert after["pm25"]["modifiedAt"] > before["pm25"]["modifiedAt"]


def test_system_attributes_in_the_payload_are_not_taken_from_the_client(
    client: TestClient,
) -> None:
    create(client, air_quality(createdAt="2000-01-01T00:00:00Z", modifiedAt="2000-01-01T00:00:00Z"))

    body = retrieve(client, options="sysAttrs")

    assert body["createdAt"] > instant("2000-01-01T00:00:00Z")
    assert "createdAt" not in retrieve(client)


# --- concise input (4.5.3 / clause 5.4: type may be omitted) ---------------------------------


def test_concise_input_is_stored_like_normalized_input(client: TestClient) -> None:
    concise = {
        "id": AQ_OTHER_ID,
        "type": "AirQualityObserved",
        "pm25": {"value": 37.2, "unitCode": "GQ", "observedAt": "2025-03-01T07:00:00Z"},
        "location": point(),
        "stationName": "Đại Nội",
        "measuredBy": {"object": SENSOR_ID},
        "name": {"languageMap": LANGUAGE_MAP},
        "airQualityLevel": {"vocab": "moderate"},
        "hourlyPm25": {"valueList": [31.0, 35.5]},
    }
    normalized = air_quality(
        stationName={"type": "Property", "value": "Đại Nội"},
        measuredBy={"type": "Relationship", "object": SENSOR_ID},
        name={"type": "LanguageProperty", "languageMap": LANGUAGE_MAP},
        airQualityLevel={"type": "VocabProperty", "vocab": "moderate"},
        hourlyPm25={"type": "ListProperty", "valueList": [31.0, 35.5]},
    )
    create(client, concise)
    create(client, normalized)

    stored_concise = retrieve(client, AQ_OTHER_ID)
    stored_normalized = retrieve(client, AQ_ID)
    del stored_concise["id"], stored_normalized["id"]
    assert stored_concise == stored_normalized


def test_concise_sub_attribute_is_accepted(client: TestClient) -> None:
    create(client, air_quality(pm25={"value": 37.2, "measuredBy": {"object": SENSOR_ID}}))

    assert retrieve(client)["pm25"] == {
        "type": "Property",
        "value": 37.2,
        "measuredBy": {"type": "Relationship", "object": SENSOR_ID},
    }
