"""JSON-LD @context handling (ETSI GS CIM 009 v1.8.1 clauses 5.5.7, 5.13, 6.3.5 and 6.29-6.30).

User @contexts are served by a real HTTP server on 127.0.0.1 started by the tests; it
counts the requests it receives, so caching and "never fetched" are observable.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from urbanstack.api.app import create_app
from urbanstack.settings import Settings

API = "/ngsi-ld/v1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"

STATION = "urn:ngsi-ld:AirQualityObserved:hue-citadel"
PM25 = "https://ex.org/pm25"
AQ_TYPE = "https://ex.org/AirQualityObserved"

CONTEXT_A = {
    "@context": {
        "pm25": PM25,
        "AirQualityObserved": AQ_TYPE,
        "refPointOfInterest": "https://ex.org/refPointOfInterest",
    }
}


def station() -> dict[str, Any]:
    return {
        "id": STATION,
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": 35.2, "unitCode": "GQ"},
        "refPointOfInterest": {
            "type": "Relationship",
            "object": "urn:ngsi-ld:HeritageSite:imperial-city",
        },
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [107.5790, 16.4700]},
        },
    }


def link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="{CONTEXT_REL}"; type="application/ld+json"'}


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ContextServer:
    """Serves JSON documents on 127.0.0.1 with a chosen Content-Type, counting requests."""

    def __init__(self) -> None:
        self.documents: dict[str, tuple[bytes, str]] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                found = server.documents.get(self.path)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, document: Any, content_type: str = "application/ld+json") -> str:
        self.documents[path] = (json.dumps(document).encode(), content_type)
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def contexts(monkeypatch: pytest.MonkeyPatch) -> Iterator[ContextServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = ContextServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def context_a(contexts: ContextServer) -> str:
    return contexts.serve("/contexts/hue-air.jsonld", CONTEXT_A)


def create(client: TestClient, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    kw.setdefault("json", station())
    return client.post(f"{API}/entities", headers=headers or {}, **kw)


def retrieve(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.get(f"{API}/entities/{STATION}", headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: Any, status: int, error_type: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["type"] == ERRORS + error_type


def assert_nothing_created(client: TestClient) -> None:
    response = client.get(f"{API}/entities/{STATION}")
    assert response.status_code == 404, response.text


# --- Link header contexts


@pytest.mark.parametrize("content_type", ["application/ld+json", "application/json", "text/plain"])
def test_link_context_is_fetched_whatever_its_content_type(
    client: TestClient, contexts: ContextServer, content_type: str
) -> None:
    url = contexts.serve("/contexts/served.jsonld", CONTEXT_A, content_type)
    response = create(client, link(url))
    assert response.status_code == 201, response.text
    assert PM25 in retrieve(client)
    assert contexts.hits["/contexts/served.jsonld"] == 1


def test_link_context_expands_terms_on_input(client: TestClient, context_a: str) -> None:
    assert create(client, link(context_a)).status_code == 201
    entity = retrieve(client)
    assert entity["type"] == AQ_TYPE
    assert entity[PM25]["value"] == 35.2
    assert "pm25" not in entity


def test_link_context_compacts_terms_on_output(client: TestClient, context_a: str) -> None:
    assert create(client, link(context_a)).status_code == 201
    entity = retrieve(client, link(context_a))
    assert entity["type"] == "AirQualityObserved"
    assert entity["pm25"]["value"] == 35.2
    assert PM25 not in entity
    assert "location" in entity  # core terms still compact


def test_core_context_terms_are_not_redefinable(
    client: TestClient, contexts: ContextServer
) -> None:
    url = contexts.serve("/contexts/evil.jsonld", {"@context": {"location": "https://ex.org/loc"}})
    assert create(client, link(url)).status_code == 201
    assert "location" in retrieve(client)


def test_query_expands_type_and_q_with_the_link_context(client: TestClient, context_a: str) -> None:
    assert create(client, link(context_a)).status_code == 201
    params = {"type": "AirQualityObserved", "q": "pm25>30"}
    response = client.get(f"{API}/entities", params=params, headers=link(context_a))
    assert response.status_code == 200
    assert [e["id"] for e in response.json()] == [STATION]
    assert response.json()[0]["pm25"]["value"] == 35.2


def test_query_without_the_context_uses_the_default_vocabulary(
    client: TestClient, context_a: str
) -> None:
    assert create(client, link(context_a)).status_code == 201
    response = client.get(f"{API}/entities", params={"type": "AirQualityObserved"})
    assert response.status_code == 200
    assert response.json() == []
    response = client.get(f"{API}/entities", params={"type": AQ_TYPE})
    assert [e["id"] for e in response.json()] == [STATION]


def test_json_response_links_to_the_request_context(client: TestClient, context_a: str) -> None:
    assert create(client, link(context_a)).status_code == 201
    response = client.get(f"{API}/entities/{STATION}", headers=link(context_a))
    assert response.headers["content-type"].startswith("application/json")
    assert f"<{context_a}>" in response.headers["link"]
    assert CONTEXT_REL in response.headers["link"]


def test_json_response_without_context_links_to_the_core_context(client: TestClient) -> None:
    assert create(client).status_code == 201
    response = client.get(f"{API}/entities/{STATION}")
    assert "ngsi-ld-core-context" in response.headers["link"]
    assert CONTEXT_REL in response.headers["link"]


def test_ld_json_response_carries_the_context_in_the_body(
    client: TestClient, context_a: str
) -> None:
    assert create(client, link(context_a)).status_code == 201
    headers = {**link(context_a), "Accept": "application/ld+json"}
    response = client.get(f"{API}/entities/{STATION}", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    body = response.json()
    assert context_a in json.dumps(body["@context"])
    assert "pm25" in body


def test_discovery_compacts_type_names_with_the_context(client: TestClient, context_a: str) -> None:
    assert create(client, link(context_a)).status_code == 201
    assert client.get(f"{API}/types").json()["typeList"] == [AQ_TYPE]
    with_context = client.get(f"{API}/types", headers=link(context_a)).json()
    assert with_context["typeList"] == ["AirQualityObserved"]
    info = client.get(f"{API}/types/AirQualityObserved", headers=link(context_a))
    assert info.status_code == 200
    assert info.json()["id"] == AQ_TYPE


def test_link_context_is_fetched_once_then_cached(
    client: TestClient, contexts: ContextServer, context_a: str
) -> None:
    assert create(client, link(context_a)).status_code == 201
    retrieve(client, link(context_a))
    response = client.get(
        f"{API}/entities", params={"type": "AirQualityObserved"}, headers=link(context_a)
    )
    assert response.status_code == 200
    assert contexts.hits["/contexts/hue-air.jsonld"] == 1


def test_nested_remote_context_is_followed(client: TestClient, contexts: ContextServer) -> None:
    inner = contexts.serve("/contexts/inner.jsonld", CONTEXT_A)
    outer = contexts.serve("/contexts/outer.jsonld", {"@context": [inner, CORE]})
    assert create(client, link(outer)).status_code == 201
    assert PM25 in retrieve(client)


# --- body contexts and Content-Type rules (6.3.5)


def test_ld_json_body_with_inline_context(client: TestClient) -> None:
    body = {**station(), "@context": [CONTEXT_A["@context"], CORE]}
    response = create(
        client, json=None, content=json.dumps(body), headers={"Content-Type": "application/ld+json"}
    )
    assert response.status_code == 201, response.text
    assert PM25 in retrieve(client)


def test_ld_json_body_with_context_url(client: TestClient, context_a: str) -> None:
    body = {**station(), "@context": context_a}
    response = create(
        client,
        json=None,
        content=json.dumps(body),
        headers={"Content-Type": "application/ld+json"},
    )
    assert response.status_code == 201, response.text
    assert retrieve(client, link(context_a))["pm25"]["value"] == 35.2


def test_json_body_holding_context_is_bad_request(client: TestClient) -> None:
    body = {**station(), "@context": CONTEXT_A["@context"]}
    response = create(client, json=body)
    assert_error(response, 400, "BadRequestData")
    assert_nothing_created(client)


def test_ld_json_body_without_context_is_bad_request(client: TestClient) -> None:
    response = create(
        client,
        json=None,
        content=json.dumps(station()),
        headers={"Content-Type": "application/ld+json"},
    )
    assert_error(response, 400, "BadRequestData")
    assert_nothing_created(client)


def test_ld_json_body_with_link_header_too_is_bad_request(
    client: TestClient, context_a: str
) -> None:
    body = {**station(), "@context": CONTEXT_A["@context"]}
    headers = {**link(context_a), "Content-Type": "application/ld+json"}
    response = create(client, json=None, content=json.dumps(body), headers=headers)
    assert_error(response, 400, "BadRequestData")
    assert_nothing_created(client)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"]
)
def test_other_content_types_are_unsupported_media_type(
    client: TestClient, content_type: str
) -> None:
    response = create(
        client, json=None, content=json.dumps(station()), headers={"Content-Type": content_type}
    )
    assert response.status_code == 415, response.text
    assert response.json()["type"].startswith(ERRORS)
    assert_nothing_created(client)


def test_json_content_type_with_charset_is_accepted(client: TestClient) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    response = create(client, json=None, content=json.dumps(station()), headers=headers)
    assert response.status_code == 201, response.text


# --- unavailable contexts


def test_unreachable_context_is_ld_context_not_available(client: TestClient) -> None:
    url = f"http://127.0.0.1:{closed_port()}/contexts/hue.jsonld"
    response = create(client, link(url))
    assert_error(response, 503, "LdContextNotAvailable")
    assert_nothing_created(client)


def test_unreachable_context_on_query_is_ld_context_not_available(client: TestClient) -> None:
    url = f"http://127.0.0.1:{closed_port()}/contexts/hue.jsonld"
    response = client.get(
        f"{API}/entities", params={"type": "AirQualityObserved"}, headers=link(url)
    )
    assert_error(response, 503, "LdContextNotAvailable")


def test_context_answering_404_is_ld_context_not_available(
    client: TestClient, contexts: ContextServer
) -> None:
    response = create(client, link(contexts.base + "/contexts/missing.jsonld"))
    assert_error(response, 503, "LdContextNotAvailable")
    assert_nothing_created(client)


def test_unreachable_context_in_ld_json_body_is_ld_context_not_available(
    client: TestClient,
) -> None:
    body = {**station(), "@context": f"http://127.0.0.1:{closed_port()}/ctx.jsonld"}
    response = create(
        client, json=None, content=json.dumps(body), headers={"Content-Type": "application/ld+json"}
    )
    assert_error(response, 503, "LdContextNotAvailable")
    assert_nothing_created(client)


@pytest.mark.parametrize(
    "url",
    [
        CORE,
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld",
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld",
    ],
)
def test_core_context_urls_never_hit_the_network(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    # any network access now goes to a proxy nobody listens on, and fails
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert create(client, link(url)).status_code == 201
    entity = retrieve(client, link(url))
    assert entity["pm25"]["value"] == 35.2
    assert "location" in entity
    body = {**station(), "id": STATION + "-2", "@context": url}
    response = create(
        client, json=None, content=json.dumps(body), headers={"Content-Type": "application/ld+json"}
    )
    assert response.status_code == 201, response.text


# --- /jsonldContexts (5.13)


def add_context(client: TestClient, document: Any = CONTEXT_A) -> str:
    response = client.post(f"{API}/jsonldContexts", json=document)
    assert response.status_code == 201, response.text
    assert response.text == ""
    return response.headers["Location"]


def local_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[1]


def test_add_context_answers_201_with_location(client: TestClient) -> None:
    location = add_context(client)
    assert "/ngsi-ld/v1/jsonldContexts/" in location
    assert local_id(location)


def test_hosted_context_is_served_by_its_id(client: TestClient) -> None:
    location = add_context(client)
    response = client.get(f"{API}/jsonldContexts/{local_id(location)}")
    assert response.status_code == 200
    assert response.json() == CONTEXT_A


def test_hosted_context_is_served_at_its_location(client: TestClient) -> None:
    location = add_context(client)
    response = client.get(location)
    assert response.status_code == 200
    assert response.json()["@context"] == CONTEXT_A["@context"]


def test_hosted_context_url_works_as_link_context(client: TestClient) -> None:
    location = add_context(client)
    assert create(client, link(location)).status_code == 201
    assert PM25 in retrieve(client)
    assert retrieve(client, link(location))["pm25"]["value"] == 35.2


def test_add_context_with_ld_json_content_type(client: TestClient) -> None:
    response = client.post(
        f"{API}/jsonldContexts",
        content=json.dumps(CONTEXT_A),
        headers={"Content-Type": "application/ld+json"},
    )
    assert response.status_code == 201, response.text


def test_add_context_without_context_member_is_bad_request(client: TestClient) -> None:
    response = client.post(f"{API}/jsonldContexts", json={"pm25": PM25})
    assert_error(response, 400, "BadRequestData")
    assert client.get(f"{API}/jsonldContexts", params={"kind": "Hosted"}).json() == []


def test_list_contexts_gives_urls(client: TestClient) -> None:
    location = add_context(client)
    response = client.get(f"{API}/jsonldContexts")
    assert response.status_code == 200
    urls = response.json()
    assert all(isinstance(url, str) for url in urls)
    assert location in urls


def test_list_contexts_details_describe_each_context(client: TestClient) -> None:
    location = add_context(client)
    response = client.get(f"{API}/jsonldContexts", params={"details": "true"})
    assert response.status_code == 200
    entries = {entry["URL"]: entry for entry in response.json()}
    hosted = entries[location]
    assert hosted["localId"] == local_id(location)
    assert hosted["kind"] == "Hosted"
    assert hosted["createdAt"].endswith("Z")


def test_list_contexts_kind_hosted_leaves_out_cached_ones(
    client: TestClient, context_a: str
) -> None:
    location = add_context(client, {"@context": {"waterLevel": "https://ex.org/waterLevel"}})
    assert create(client, link(context_a)).status_code == 201  # caches context A
    hosted = client.get(f"{API}/jsonldContexts", params={"kind": "Hosted"}).json()
    assert hosted == [location]
    cached = client.get(f"{API}/jsonldContexts", params={"kind": "Cached"}).json()
    assert context_a in cached
    assert location not in cached


def test_list_contexts_invalid_kind_is_bad_request(client: TestClient) -> None:
    response = client.get(f"{API}/jsonldContexts", params={"kind": "Borrowed"})
    assert_error(response, 400, "BadRequestData")


def test_delete_hosted_context(client: TestClient) -> None:
    location = add_context(client)
    response = client.delete(f"{API}/jsonldContexts/{local_id(location)}")
    assert response.status_code == 204
    assert response.text == ""
    assert_error(client.get(f"{API}/jsonldContexts/{local_id(location)}"), 404, "ResourceNotFound")
    assert location not in client.get(f"{API}/jsonldContexts").json()


def test_deleted_hosted_context_no_longer_resolves(client: TestClient) -> None:
    location = add_context(client)
    assert client.delete(f"{API}/jsonldContexts/{local_id(location)}").status_code == 204
    response = create(client, link(location))
    assert response.status_code == 503, response.text
    assert_nothing_created(client)


def test_delete_unknown_context_is_not_found(client: TestClient) -> None:
    response = client.delete(f"{API}/jsonldContexts/no-such-context")
    assert_error(response, 404, "ResourceNotFound")


def test_serve_unknown_context_is_not_found(client: TestClient) -> None:
    assert_error(client.get(f"{API}/jsonldContexts/no-such-context"), 404, "ResourceNotFound")


# --- preloading from a file for air-gapped sites (urbanstack contexts load)


def urbanstack_command() -> list[str]:
    exe = shutil.which("urbanstack")
    return [exe] if exe else [sys.executable, "-m", "urbanstack.cli"]


def test_cli_contexts_load_makes_the_url_resolve_without_network(
    settings: Settings, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/contexts/hue-air.jsonld"
    document = tmp_path / "hue-air.jsonld"
    document.write_text(json.dumps(CONTEXT_A), encoding="utf-8")
    result = subprocess.run(
        [*urbanstack_command(), "contexts", "load", str(document), url, "--store", settings.store],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        assert create(client, link(url)).status_code == 201
        assert PM25 in retrieve(client)
        assert retrieve(client, link(url))["pm25"]["value"] == 35.2


def test_cli_contexts_load_refuses_a_file_without_context(
    settings: Settings, tmp_path: Path
) -> None:
    document = tmp_path / "not-a-context.json"
    document.write_text(json.dumps({"pm25": PM25}), encoding="utf-8")
    result = subprocess.run(
        [
            *urbanstack_command(),
            "contexts",
            "load",
            str(document),
            "http://127.0.0.1:9/ctx.jsonld",
            "--store",
            settings.store,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
