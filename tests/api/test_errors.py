"""Error shape (ETSI GS CIM 009 v1.8.1 clauses 5.5.2, 5.5.3 and 6.3.2).

Every failed request answers a ProblemDetails body (IETF RFC 7807) as application/json
with ``type`` (an https://uri.etsi.org/ngsi-ld/errors/ URI), ``title``, ``status``
(the HTTP status) and ``detail``, and changes nothing in the broker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient

API = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
IMPERIAL = "urn:ngsi-ld:HeritageSite:imperial-city"
MIB = 1024 * 1024


def site(entity_id: str = IMPERIAL, name: str = "Imperial City") -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": "HeritageSite",
        "name": {"type": "Property", "value": name},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [107.5786, 16.4698]},
        },
    }


JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class Case:
    method: str
    path: str
    status: int
    error: str | None = None  # the NGSI-LD error type, where the specification names one
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


OVERSIZED = body(
    {
        **site("urn:ngsi-ld:HeritageSite:huge"),
        "description": {"type": "Property", "value": "x" * (9 * MIB)},
    }
)

CASES = {
    "create-bad-json": Case(
        "POST",
        f"{API}/entities",
        400,
        "InvalidRequest",
        b'{"id": "urn:ngsi-ld:X:1", "type": ',
        JSON_HEADERS,
    ),
    "update-attrs-bad-json": Case(
        "PATCH",
        f"{API}/entities/{IMPERIAL}/attrs",
        400,
        "InvalidRequest",
        b"{name: 1}",
        JSON_HEADERS,
    ),
    "batch-bad-json": Case(
        "POST", f"{API}/entityOperations/create", 400, "InvalidRequest", b"[{]", JSON_HEADERS
    ),
    "create-empty-body": Case("POST", f"{API}/entities", 400, None, b"", JSON_HEADERS),
    "create-body-not-an-object": Case(
        "POST", f"{API}/entities", 400, "BadRequestData", b"[]", JSON_HEADERS
    ),
    "create-text-plain": Case(
        "POST",
        f"{API}/entities",
        415,
        None,
        body(site("urn:ngsi-ld:HeritageSite:x")),
        {"Content-Type": "text/plain"},
    ),
    "create-no-content-type": Case(
        "POST", f"{API}/entities", 415, None, body(site("urn:ngsi-ld:HeritageSite:x")), {}
    ),
    "create-oversized-9-mib": Case("POST", f"{API}/entities", 413, None, OVERSIZED, JSON_HEADERS),
    "append-oversized-9-mib": Case(
        "POST",
        f"{API}/entities/{IMPERIAL}/attrs",
        413,
        None,
        body({"description": {"type": "Property", "value": "x" * (9 * MIB)}}),
        JSON_HEADERS,
    ),
    "create-invalid-id": Case(
        "POST", f"{API}/entities", 400, "BadRequestData", body(site("not a uri")), JSON_HEADERS
    ),
    "create-missing-type": Case(
        "POST",
        f"{API}/entities",
        400,
        "BadRequestData",
        body({"id": "urn:ngsi-ld:HeritageSite:x"}),
        JSON_HEADERS,
    ),
    "create-existing": Case(
        "POST",
        f"{API}/entities",
        409,
        "AlreadyExists",
        body(site(IMPERIAL, "Đại Nội")),
        JSON_HEADERS,
    ),
    "retrieve-invalid-id": Case("GET", f"{API}/entities/not-a-uri", 400, "BadRequestData"),
    "delete-invalid-id": Case("DELETE", f"{API}/entities/not-a-uri", 400, "BadRequestData"),
    "retrieve-unknown-entity": Case(
        "GET", f"{API}/entities/urn:ngsi-ld:HeritageSite:hon-chen", 404, "ResourceNotFound"
    ),
    "delete-unknown-entity": Case(
        "DELETE", f"{API}/entities/urn:ngsi-ld:HeritageSite:hon-chen", 404, "ResourceNotFound"
    ),
    "query-without-any-filter": Case("GET", f"{API}/entities", 400, "BadRequestData"),
    "query-bad-q": Case(
        "GET",
        f"{API}/entities",
        400,
        "BadRequestData",
        params={"type": "HeritageSite", "q": "name=="},
    ),
    "query-limit-too-large": Case(
        "GET",
        f"{API}/entities",
        403,
        "TooManyResults",
        params={"type": "HeritageSite", "limit": "1000"},
    ),
    "retrieve-not-acceptable": Case(
        "GET", f"{API}/entities/{IMPERIAL}", 406, None, headers={"Accept": "text/html"}
    ),
    "unknown-route": Case("GET", f"{API}/entitiez", 404, "ResourceNotFound"),
    "unknown-route-outside-api": Case("GET", "/nothing-here", 404, "ResourceNotFound"),
    "wrong-method-on-entities": Case(
        "PUT", f"{API}/entities", 405, None, body([site()]), JSON_HEADERS
    ),
    "wrong-method-on-types": Case("DELETE", f"{API}/types", 405),
    "wrong-method-on-entity": Case(
        "POST", f"{API}/entities/{IMPERIAL}", 405, None, body(site()), JSON_HEADERS
    ),
}


def snapshot(client: TestClient) -> Any:
    entities = client.get(
        f"{API}/entities",
        params={"type": "HeritageSite", "options": "sysAttrs", "limit": "100"},
    )
    assert entities.status_code == 200
    types = client.get(f"{API}/types").json()["typeList"]
    attributes = client.get(f"{API}/attributes").json()["attributeList"]
    return entities.json(), sorted(types), sorted(attributes)


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    response = client.post(f"{API}/entities", json=site())
    assert response.status_code == 201, response.text
    return client


def send(client: TestClient, case: Case) -> Any:
    return client.request(
        case.method, case.path, content=case.content, headers=case.headers, params=case.params
    )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_error_answers_problem_details(seeded: TestClient, case: Case) -> None:
    response = send(seeded, case)
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    problem = response.json()
    assert isinstance(problem, dict)
    assert isinstance(problem.get("type"), str)
    assert problem["type"].startswith(ERRORS), problem
    assert len(problem["type"]) > len(ERRORS)
    assert isinstance(problem.get("title"), str)
    assert problem["title"]
    assert problem.get("status") == response.status_code
    assert isinstance(problem.get("detail"), str)
    assert problem["detail"]


@pytest.mark.parametrize(
    "case", [c for c in CASES.values() if c.error], ids=[k for k, c in CASES.items() if c.error]
)
def test_error_type_is_the_one_the_specification_names(seeded: TestClient, case: Case) -> None:
    response = send(seeded, case)
    assert response.json()["type"] == ERRORS + case.error


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_failed_request_changes_nothing(seeded: TestClient, case: Case) -> None:
    before = snapshot(seeded)
    response = send(seeded, case)
    assert response.status_code >= 400
    assert snapshot(seeded) == before


def test_method_not_allowed_lists_the_allowed_methods(seeded: TestClient) -> None:
    response = seeded.request("PUT", f"{API}/entities", content=b"[]", headers=JSON_HEADERS)
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "PUT" not in allowed


def test_too_deeply_nested_q_answers_problem_details(seeded: TestClient) -> None:
    response = seeded.get(f"{API}/entities", params={"type": "HeritageSite", "q": "(" * 500})
    assert response.status_code in (400, 403)  # BadRequestData or TooComplexQuery
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status"] == response.status_code


def test_oversized_streamed_body_without_content_length_is_refused(seeded: TestClient) -> None:
    def chunks() -> Any:
        yield b'{"id": "urn:ngsi-ld:HeritageSite:huge", "type": "HeritageSite", "d": {"type": '
        yield b'"Property", "value": "'
        for _ in range(9):
            yield b"x" * MIB
        yield b'"}}'

    before = snapshot(seeded)
    response = seeded.post(f"{API}/entities", content=chunks(), headers=JSON_HEADERS)
    assert response.status_code == 413, response.text
    assert response.json()["status"] == 413
    assert response.json()["type"].startswith(ERRORS)
    assert snapshot(seeded) == before
