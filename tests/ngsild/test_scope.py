"""Tests of NGSI-LD scopes (clause 4.18) and the scope query language (clause 4.19)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urbanstack.ngsild.errors import BadRequestData, NgsiLdError, TooComplexQuery
from urbanstack.ngsild.scope import (
    ScopeAnd,
    ScopeOr,
    ScopePattern,
    match_scope,
    parse_scope_q,
    scope_pattern_regex,
    validate_scope,
)

SCOPES = ["/Madrid/Gardens/ParqueNorte", "/CompanyA"]


def matches(text: str, scopes: list[str] | None = None) -> bool:
    return match_scope(parse_scope_q(text), SCOPES if scopes is None else scopes)


# --- validate_scope -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("/Madrid", "/Madrid"),
        ("/Madrid/Gardens/ParqueNorte", "/Madrid/Gardens/ParqueNorte"),
        ("Madrid", "/Madrid"),
        ("Madrid/Gardens", "/Madrid/Gardens"),
        ("/Huế/Trung_Tâm", "/Huế/Trung_Tâm"),
        ("/Hue/Ward-1", "/Hue/Ward-1"),
        ("/2024/Q1", "/2024/Q1"),
    ],
)
def test_validate_scope_accepts_and_adds_leading_slash(scope: str, expected: str) -> None:
    assert validate_scope(scope) == expected


def test_validate_scope_passes_ngsi_ld_null_through() -> None:
    assert validate_scope("urn:ngsi-ld:null") == "urn:ngsi-ld:null"


@pytest.mark.parametrize(
    "scope",
    [
        "",
        "/",
        "//",
        "/Madrid/",
        "/Madrid//Gardens",
        "Madrid/",
        "/Madrid/#",
        "/Madrid/+",
        "/+/Gardens",
        "/#",
        "/Mad#rid",
        "/Mad+rid",
        "/Madrid Gardens",
        "/Madrid/Gar.dens",
        "/Madrid;/CompanyA",
        "/Madrid,/CompanyA",
        "/Madrid|/CompanyA",
        "/(Madrid)",
        "/Madrid\n",
        "/" + "a" * 600,
    ],
)
def test_validate_scope_refuses_invalid(scope: str) -> None:
    with pytest.raises(BadRequestData):
        validate_scope(scope)


@pytest.mark.parametrize("value", [None, 5, ["/a"], {"a": 1}])
def test_validate_scope_refuses_non_strings(value: object) -> None:
    with pytest.raises(BadRequestData):
        validate_scope(value)  # type: ignore[arg-type]


# --- parsing ------------------------------------------------------------------------------


def test_parse_single_scope() -> None:
    assert parse_scope_q("/Madrid/Gardens") == ScopePattern(("Madrid", "Gardens"))


def test_parse_descendants_suffix() -> None:
    assert parse_scope_q("/Madrid/Gardens/#") == ScopePattern(("Madrid", "Gardens"), True)


def test_parse_single_level_wildcard() -> None:
    assert parse_scope_q("/Madrid/+/ParqueNorte") == ScopePattern(("Madrid", "+", "ParqueNorte"))


def test_parse_lone_hash_is_any_scope() -> None:
    assert parse_scope_q("/#") == ScopePattern((), True)


def test_parse_scope_without_leading_slash() -> None:
    assert parse_scope_q("CompanyB") == ScopePattern(("CompanyB",))


@pytest.mark.parametrize("separator", ["|", ","])
def test_parse_or_separators(separator: str) -> None:
    expr = parse_scope_q(f"/a{separator}/b")
    assert expr == ScopeOr((ScopePattern(("a",)), ScopePattern(("b",))))


def test_parse_and_in_parentheses() -> None:
    expr = parse_scope_q("(/Madrid/Districts;/CompanyA)")
    assert expr == ScopeAnd((ScopePattern(("Madrid", "Districts")), ScopePattern(("CompanyA",))))


def test_parse_spec_example_and_or() -> None:
    expr = parse_scope_q("(/Madrid/Districts;/CompanyA),/CompanyB")
    assert isinstance(expr, ScopeOr)
    assert isinstance(expr.terms[0], ScopeAnd)


def test_parse_and_binds_tighter_than_or() -> None:
    a, b, c = (ScopePattern((n,)) for n in "abc")
    assert parse_scope_q("/a;/b|/c") == ScopeOr((ScopeAnd((a, b)), c))


def test_parse_nested_parentheses() -> None:
    a, b, c = (ScopePattern((n,)) for n in "abc")
    assert parse_scope_q("/a;(/b|(/c))") == ScopeAnd((a, ScopeOr((b, c))))


def test_parse_ignores_whitespace_around_separators() -> None:
    assert parse_scope_q(" ( /a ; /b ) | /c ") == parse_scope_q("(/a;/b)|/c")


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "/",
        "//a",
        "/a//b",
        "/a/",
        "/a/#/b",
        "/a#",
        "/#/#",
        "/a/b#",
        "/a/++",
        "/a b",
        "/a.b",
        "/a;",
        "/a|",
        ",/a",
        "/a,,/b",
        "(/a",
        "/a)",
        "(/a;/b",
        "()",
        "/a(/b)",
    ],
)
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(BadRequestData):
        parse_scope_q(text)


def test_parse_error_names_offset() -> None:
    with pytest.raises(BadRequestData, match="offset 3"):
        parse_scope_q("/a|;/b")


def test_parse_too_many_scopes_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse_scope_q("|".join(f"/s{i}" for i in range(65)))


def test_parse_too_deep_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse_scope_q("(" * 17 + "/a" + ")" * 17)


# --- matching -----------------------------------------------------------------------------


def test_exact_scope_matches() -> None:
    assert matches("/CompanyA")


def test_exact_scope_does_not_match_ancestor_or_descendant() -> None:
    assert not matches("/Madrid/Gardens")
    assert not matches("/Madrid/Gardens/ParqueNorte/Parterre1")


def test_descendants_suffix_matches_the_scope_itself() -> None:
    assert matches("/CompanyA/#")


def test_descendants_suffix_matches_deeper_scopes() -> None:
    assert matches("/Madrid/#")
    assert matches("/Madrid/Gardens/#")


def test_descendants_suffix_does_not_match_siblings() -> None:
    assert not matches("/Madrid/Sights/#")
    assert not matches("/Company/#")


def test_descendants_suffix_respects_level_boundaries() -> None:
    assert not matches("/Comp/#", ["/CompanyA"])


def test_plus_matches_exactly_one_level() -> None:
    assert matches("/Madrid/+/ParqueNorte")
    assert not matches("/Madrid/+")
    assert not matches("/+/ParqueNorte")


def test_plus_with_descendants() -> None:
    assert matches("/Madrid/+/#")
    assert matches("/+/#")


def test_lone_hash_matches_any_entity_with_a_scope() -> None:
    assert matches("/#")
    assert matches("/#", ["/x"])


def test_lone_hash_does_not_match_entity_without_scope() -> None:
    assert not matches("/#", [])


def test_no_scope_matches_nothing() -> None:
    assert not matches("/CompanyA", [])


def test_or_matches_one_pattern() -> None:
    assert matches("/Other|/CompanyA")
    assert matches("/Other,/CompanyA")
    assert not matches("/Other,/Else")


def test_and_requires_every_pattern() -> None:
    assert matches("(/Madrid/#;/CompanyA)")
    assert not matches("(/Madrid/#;/CompanyB)")


def test_and_may_be_satisfied_by_different_scopes() -> None:
    assert matches("(/Madrid/Gardens/ParqueNorte;/CompanyA)")


def test_spec_example_and_or() -> None:
    assert matches("(/Madrid/Districts;/CompanyA),/CompanyA")
    assert not matches("(/Madrid/Districts;/CompanyA),/CompanyB")


def test_stored_scope_without_leading_slash_matches() -> None:
    assert matches("/CompanyA", ["CompanyA"])


def test_ngsi_ld_null_scope_matches_nothing() -> None:
    assert not matches("/#", ["urn:ngsi-ld:null"])


# --- scope_pattern_regex ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "scope", "expected"),
    [
        ("/a/b", "/a/b", True),
        ("/a/b", "/a/b/c", False),
        ("/a/#", "/a", True),
        ("/a/#", "/a/b/c", True),
        ("/a/#", "/ab", False),
        ("/a/+/c", "/a/x/c", True),
        ("/a/+/c", "/a/x/y/c", False),
        ("/#", "/anything/at/all", True),
        ("/Ward-1", "/Ward-1", True),
    ],
)
def test_scope_pattern_regex_agrees_with_match_scope(
    query: str, scope: str, expected: bool
) -> None:
    pattern = parse_scope_q(query)
    assert isinstance(pattern, ScopePattern)
    assert bool(re.search(scope_pattern_regex(pattern), scope)) is expected
    assert match_scope(pattern, [scope]) is expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("/ab+#;|,() _-")), min_size=1, max_size=16).map("".join))
def test_parser_raises_only_ngsi_ld_errors(text: str) -> None:
    try:
        expr = parse_scope_q(text)
    except NgsiLdError:
        return
    assert isinstance(match_scope(expr, SCOPES), bool)
