"""Term maps: expansion and compaction by look-up, checked against a full JSON-LD processor."""

from __future__ import annotations

import pytest
from pyld import jsonld

from urbanstack.ngsild.errors import BadRequestData, LdContextNotAvailable
from urbanstack.ngsild.jsonld import (
    CORE_CONTEXT_URL,
    DEFAULT_VOCAB,
    build_term_map,
    core_context_document,
    core_term_map,
    is_core_context_url,
)

USER_URL = "https://hue.example.org/context.jsonld"
USER_CONTEXT = {
    "@context": {
        "fiware": "https://uri.fiware.org/ns/data-models#",
        "sdm": "https://smartdatamodels.org/",
        "AirQualityObserved": "https://smartdatamodels.org/dataModel.Environment/AirQualityObserved",
        "pm25": "sdm:dataModel.Environment/pm25",
        "refDevice": {"@id": "fiware:refDevice", "@type": "@id"},
        "name": "https://schema.org/name",
    }
}


def _loader(url: str, options: object = None) -> dict[str, object]:
    if is_core_context_url(url):
        document: object = core_context_document()
    elif url == USER_URL:
        document = USER_CONTEXT
    else:
        raise jsonld.JsonLdError("no network in tests", "loading document failed")
    return {
        "contentType": "application/ld+json",
        "contextUrl": None,
        "documentUrl": url,
        "document": document,
    }


@pytest.fixture(autouse=True)
def offline_pyld() -> None:
    jsonld.set_document_loader(_loader)


def _pyld_expanded_names(entity: dict[str, object], context: list[str]) -> set[str]:
    expanded = jsonld.expand({"@context": context, **entity})[0]
    names = {k for k in expanded if not k.startswith("@")}
    return names | set(expanded["@type"])


ENTITY = {
    "id": "urn:ngsi-ld:AirQualityObserved:hue-imperial-city",
    "type": "AirQualityObserved",
    "pm25": {"type": "Property", "value": 38.5},
    "refDevice": {"type": "Relationship", "object": "urn:ngsi-ld:Device:1"},
    "name": {"type": "Property", "value": "Đại Nội"},
    "sdm:temperature": {"type": "Property", "value": 27},
    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [107.5, 16.4]}},
}


def test_expansion_agrees_with_pyld_for_user_context() -> None:
    context = [USER_URL, CORE_CONTEXT_URL]
    terms = build_term_map(context, {USER_URL: USER_CONTEXT})
    ours = {terms.expand(k) for k in ENTITY if k not in ("id", "type")} | {
        terms.expand("AirQualityObserved")
    }
    assert ours == _pyld_expanded_names(ENTITY, context)


def test_expansion_agrees_with_pyld_for_core_context_and_default_vocab() -> None:
    entity = {
        "id": "urn:ngsi-ld:Bridge:truong-tien",
        "type": "Bridge",
        "spanLength": {"type": "Property", "value": 402.6},
    }
    context = [{"@vocab": DEFAULT_VOCAB}, CORE_CONTEXT_URL]
    terms = core_term_map()
    assert {terms.expand("spanLength"), terms.expand("Bridge")} == _pyld_expanded_names(
        entity, context
    )


def test_compaction_inverts_expansion() -> None:
    terms = build_term_map([USER_URL], {USER_URL: USER_CONTEXT})
    for term in ("pm25", "refDevice", "name", "AirQualityObserved", "location", "unknownThing"):
        assert terms.compact(terms.expand(term)) == term


def test_compaction_uses_prefix_for_unlisted_iri() -> None:
    terms = build_term_map([USER_URL], {USER_URL: USER_CONTEXT})
    assert terms.compact("https://smartdatamodels.org/other") == "sdm:other"


def test_core_terms_cannot_be_redefined() -> None:
    terms = build_term_map({"location": "https://evil.example/location"}, {})
    assert terms.expand("location") == "https://uri.etsi.org/ngsi-ld/location"


def test_user_vocab_applies_to_unknown_terms() -> None:
    terms = build_term_map({"@vocab": "https://hue.example.org/terms/"}, {})
    assert terms.expand("waterLevel") == "https://hue.example.org/terms/waterLevel"


def test_missing_remote_document_raises_context_not_available() -> None:
    with pytest.raises(LdContextNotAvailable):
        build_term_map([USER_URL], {})


def test_malformed_context_raises_bad_request() -> None:
    with pytest.raises(BadRequestData):
        build_term_map([42], {})


def test_every_core_context_version_url_is_built_in() -> None:
    for version in ("", "-v1.3", "-v1.6", "-v1.8", "-v1.9"):
        assert is_core_context_url(
            f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context{version}.jsonld"
        )
