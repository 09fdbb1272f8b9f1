"""Tests of the entity type selection language of the ``type`` parameter (clause 4.17)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urbanstack.ngsild.errors import BadRequestData, NgsiLdError, TooComplexQuery
from urbanstack.ngsild.typeq import (
    TypeAnd,
    TypeName,
    TypeOr,
    match_types,
    parse_type_query,
    type_names,
)

EX = "https://ex.org/"


def expand(name: str) -> str:
    if name.startswith("ex:"):
        return EX + name[3:]
    return name if ":" in name else EX + name


def parse(text: str) -> object:
    return parse_type_query(text, expand)


def t(name: str) -> TypeName:
    return TypeName(EX + name)


def matches(text: str, *types: str) -> bool:
    return match_types(parse_type_query(text, expand), [EX + n for n in types])


# --- parsing ------------------------------------------------------------------------------


def test_single_type_is_expanded() -> None:
    assert parse("Building") == t("Building")


def test_compact_iri_is_expanded() -> None:
    assert parse("ex:Building") == t("Building")


def test_absolute_iri_is_kept() -> None:
    assert parse("https://schema.org/Place") == TypeName("https://schema.org/Place")


def test_iri_with_fragment_is_accepted() -> None:
    assert parse("http://ex.org/ns#Bridge") == TypeName("http://ex.org/ns#Bridge")


def test_urn_type_is_accepted() -> None:
    assert parse("urn:x:Type") == TypeName("urn:x:Type")


@pytest.mark.parametrize("separator", [",", "|"])
def test_or_separators(separator: str) -> None:
    assert parse(f"Building{separator}House") == TypeOr((t("Building"), t("House")))


def test_plain_list_of_three() -> None:
    assert parse("A,B,C") == TypeOr((t("A"), t("B"), t("C")))


def test_and_in_parentheses() -> None:
    assert parse("(Home;Vehicle)") == TypeAnd((t("Home"), t("Vehicle")))


def test_and_or_combination() -> None:
    expected = TypeOr((TypeAnd((t("Home"), t("Vehicle"))), t("Motorhome")))
    assert parse("(Home;Vehicle)|Motorhome") == expected
    assert parse("(Home;Vehicle),Motorhome") == expected


def test_and_binds_tighter_than_or() -> None:
    assert parse("A;B|C") == TypeOr((TypeAnd((t("A"), t("B"))), t("C")))


def test_nested_parentheses() -> None:
    assert parse("A;(B|(C;D))") == TypeAnd((t("A"), TypeOr((t("B"), TypeAnd((t("C"), t("D")))))))


def test_redundant_parentheses_are_dropped() -> None:
    assert parse("((A))") == t("A")


def test_repeated_names_collapse() -> None:
    assert parse("A,A") == t("A")
    assert parse("A,B,A") == TypeOr((t("A"), t("B")))


def test_whitespace_around_separators_is_ignored() -> None:
    assert parse(" ( A ; B ) , C ") == parse("(A;B),C")


def test_unicode_type_name() -> None:
    assert parse("Cầu") == t("Cầu")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        ",",
        "A,",
        ",A",
        "A,,B",
        "A|",
        "A;",
        ";A",
        "A||B",
        "(A",
        "A)",
        "(A;B",
        "()",
        "(A;)",
        "A B",
        "A=B",
        "type==A",
        'A"',
        "A'",
        "<A>",
        "A{x}",
        "A[0]",
        "A\\B",
        "A!",
        "A?x=1",
        "A&B",
        "A%20B",
        "*",
        "A*",
        "1Building",
        "-A",
        ":A",
        "/A",
        "A\x00",
        "A\x7f",
        "A\u200b",
        "A" * 600,
    ],
)
def test_malformed_type_query_raises_bad_request(text: str) -> None:
    with pytest.raises(BadRequestData):
        parse(text)


def test_error_names_offending_offset() -> None:
    with pytest.raises(BadRequestData, match="offset 2"):
        parse("A,,B")


def test_error_names_forbidden_character() -> None:
    with pytest.raises(BadRequestData, match="'='"):
        parse("Building,A=B")


def test_too_many_types_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse(",".join(f"T{i}" for i in range(65)))


def test_too_deep_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse("(" * 17 + "A" + ")" * 17)


# --- matching -----------------------------------------------------------------------------


def test_single_type_matches_entity_having_it_among_others() -> None:
    assert matches("Building", "Building", "Landmark")


def test_single_type_does_not_match_other_type() -> None:
    assert not matches("Building", "House")


def test_or_matches_any_type() -> None:
    assert matches("Building,House", "House")
    assert not matches("Building|House", "Vehicle")


def test_and_requires_all_types() -> None:
    assert matches("(Home;Vehicle)", "Vehicle", "Home")
    assert not matches("(Home;Vehicle)", "Home")


def test_and_or_matches_either_branch() -> None:
    assert matches("(Home;Vehicle)|Motorhome", "Home", "Vehicle")
    assert matches("(Home;Vehicle)|Motorhome", "Motorhome")
    assert not matches("(Home;Vehicle)|Motorhome", "Home")


def test_entity_without_types_matches_nothing() -> None:
    assert not matches("Building")


# --- type_names ---------------------------------------------------------------------------


def test_type_names_of_single_type() -> None:
    assert type_names(parse_type_query("Building", expand)) == {EX + "Building"}


def test_type_names_collects_every_iri() -> None:
    expr = parse_type_query("(Home;Vehicle)|Motorhome,ex:Van", expand)
    assert type_names(expr) == {EX + "Home", EX + "Vehicle", EX + "Motorhome", EX + "Van"}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([*list("AB:/#;|,() =*"), "ex:", "urn:x"]), min_size=1, max_size=16
    ).map("".join)
)
def test_parser_raises_only_ngsi_ld_errors(text: str) -> None:
    try:
        expr = parse_type_query(text, expand)
    except NgsiLdError:
        return
    assert isinstance(match_types(expr, [EX + "A"]), bool)
    assert type_names(expr)
