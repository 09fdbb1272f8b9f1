"""Tests of the NGSI-LD query language ``q`` (clause 4.9): parser and evaluator."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urbanstack.ngsild.errors import (
    BadRequestData,
    NgsiLdError,
    OperationNotSupported,
    TooComplexQuery,
)
from urbanstack.ngsild.q import (
    And,
    AttrPath,
    Comparison,
    DateTimeValue,
    Or,
    Range,
    iter_comparisons,
    normalize_datetime,
    parse_query_q,
)
from urbanstack.ngsild.q_match import match_q

EX = "https://ex.org/"


def expand(name: str) -> str:
    return name if ":" in name and not name.startswith("ex:") else EX + name.removeprefix("ex:")


def parse(text: str) -> Any:
    return parse_query_q(text, expand)


def path(attr: str) -> AttrPath:
    return AttrPath(EX + attr)


def entity() -> dict[str, Any]:
    return {
        "id": "urn:ngsi-ld:Building:1",
        "type": [EX + "Building"],
        "scope": ["/Hue/Center"],
        "createdAt": "2026-11-23T23:00:00.000000Z",
        "modifiedAt": "2026-11-24T08:00:00.000000Z",
        "attrs": {
            EX + "name": [{"type": "Property", "value": "Truong Tien Bridge"}],
            EX + "temperature": [
                {
                    "type": "Property",
                    "value": 21.5,
                    "observedAt": "2026-11-23T22:00:00.000000Z",
                    "unitCode": "CEL",
                    "subs": {
                        EX + "accuracy": {"type": "Property", "value": 0.9},
                        EX + "measuredBy": {"type": "Relationship", "object": "urn:ngsi-ld:Dev:7"},
                    },
                },
                {
                    "type": "Property",
                    "value": 30,
                    "datasetId": "urn:ngsi-ld:Dataset:b",
                    "observedAt": "2026-11-23T20:00:00.000000Z",
                },
            ],
            EX + "count": [{"type": "Property", "value": 0}],
            EX + "open": [{"type": "Property", "value": True}],
            EX + "tags": [{"type": "Property", "value": ["red", "blue", "green"]}],
            EX + "address": [
                {
                    "type": "Property",
                    "value": {"city": "Hue", "geo": {"zip": 49000}, "lines": [{"n": 1}, {"n": 2}]},
                }
            ],
            EX + "sensor": [
                {
                    "type": "Property",
                    "value": 40,
                    "subs": {
                        EX + "rawdata": {
                            "type": "Property",
                            "value": {"airquality": {"particulate": 40}},
                        }
                    },
                }
            ],
            EX + "refX": [{"type": "Relationship", "object": "urn:ngsi-ld:X:1"}],
            EX + "refMany": [
                {"type": "Relationship", "object": ["urn:ngsi-ld:X:1", "urn:ngsi-ld:X:2"]}
            ],
            EX + "location": [
                {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [107.5, 16.4]}}
            ],
            EX + "label": [
                {"type": "LanguageProperty", "languageMap": {"en": "Bridge", "vi": "Cầu"}}
            ],
            EX + "aliases": [
                {
                    "type": "LanguageProperty",
                    "languageMap": {"en": ["Span", "Crossing"], "fr": "Pont"},
                }
            ],
            EX + "category": [{"type": "VocabProperty", "vocab": EX + "Commercial"}],
            EX + "raw": [{"type": "JsonProperty", "json": {"any": "json", "n": 3}}],
            EX + "series": [{"type": "ListProperty", "valueList": [1, 2, 3]}],
            EX + "route": [{"type": "ListRelationship", "objectList": ["urn:a", "urn:b"]}],
            EX + "opened": [
                {
                    "type": "Property",
                    "value": {"@type": "DateTime", "@value": "2020-05-01T10:00:00.000000Z"},
                }
            ],
            EX + "inspected": [{"type": "Property", "value": "2024-03-01T09:30:00+02:00"}],
            EX + "code": [{"type": "Property", "value": "42"}],
        },
    }


def matches(text: str, doc: dict[str, Any] | None = None) -> bool:
    return match_q(parse(text), entity() if doc is None else doc)


# --- parsing: structure -------------------------------------------------------------------


def test_bare_attribute_parses_to_exists() -> None:
    assert parse("temperature") == Comparison(path("temperature"), "exists", None)


def test_attribute_names_are_expanded() -> None:
    assert parse("ex:speed>1").path.attr == EX + "speed"


def test_sub_attribute_path_expands_each_part() -> None:
    term = parse("temperature.accuracy.reliability>0")
    assert term.path == AttrPath(EX + "temperature", (EX + "accuracy", EX + "reliability"))


@pytest.mark.parametrize(
    "member", ["observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"]
)
def test_core_member_sub_path_stays_literal(member: str) -> None:
    assert parse(f"temperature.{member}").path == AttrPath(EX + "temperature", (member,))


def test_compound_keys_in_separate_brackets_are_not_expanded() -> None:
    assert parse("address[geo][zip]==1").path == AttrPath(EX + "address", (), ("geo", "zip"))


def test_compound_keys_dotted_inside_one_bracket() -> None:
    assert parse("address[geo.zip]==1").path == AttrPath(EX + "address", (), ("geo", "zip"))


def test_sub_attribute_then_compound_key() -> None:
    term = parse("sensor.rawdata[airquality.particulate]==40")
    assert term.path == AttrPath(EX + "sensor", (EX + "rawdata",), ("airquality", "particulate"))


def test_entity_timestamp_stays_literal() -> None:
    assert parse("createdAt>2020-01-01T00:00:00Z").path == AttrPath("createdAt")


@pytest.mark.parametrize("op", ["==", "!=", ">", ">=", "<", "<=", "~=", "!~="])
def test_every_operator_parses(op: str) -> None:
    assert parse(f"a{op}1").op == op


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a==20", 20),
        ("a==-7", -7),
        ("a==2.5", 2.5),
        ("a==-2.5e-3", -0.0025),
        ("a==1E3", 1000.0),
        ("a==0", 0),
        ('a=="Mercedes"', "Mercedes"),
        ('a=="say \\"hi\\""', 'say "hi"'),
        ('a=="tab\\tnew\\u00e9"', "tab\tnewé"),
        ('a=="a;b|c(d)"', "a;b|c(d)"),
        ('a==""', ""),
        ("a==true", True),
        ("a==false", False),
        ("a==urn:ngsi-ld:Store:001", "urn:ngsi-ld:Store:001"),
        ("a==https://ex.org/x?y=1#z", "https://ex.org/x?y=1#z"),
        ("a==ex:Commercial", "ex:Commercial"),
        ("a==Male", "Male"),
        ("a==12:30:00Z", "12:30:00Z"),
        ("a==2018-12-04T12:00:00Z", DateTimeValue("2018-12-04T12:00:00.000000Z")),
        ("a==2018-12-04", DateTimeValue("2018-12-04T00:00:00.000000Z")),
    ],
)
def test_value_literals(text: str, value: object) -> None:
    parsed = parse(text).value
    assert parsed == value
    assert type(parsed) is type(value)


def test_integer_literal_is_int_and_decimal_is_float() -> None:
    assert isinstance(parse("a==3").value, int)
    assert isinstance(parse("a==3.0").value, float)


def test_value_list_without_parentheses() -> None:
    assert parse('color=="black","red"').value == ("black", "red")


def test_value_list_in_parentheses() -> None:
    assert parse("a==(1,2,3)").value == (1, 2, 3)


def test_value_list_mixes_types() -> None:
    assert parse('a!=1,"x",true,urn:a').value == (1, "x", True, "urn:a")


def test_single_value_in_parentheses_is_a_scalar() -> None:
    assert parse("a==(5)").value == 5


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("a==10..20", 10, 20),
        ("a==-1.5..2e2", -1.5, 200.0),
        ('a=="a".."m"', "a", "m"),
        (
            "a==2018-01-01T00:00:00Z..2018-12-31T23:59:59Z",
            DateTimeValue("2018-01-01T00:00:00.000000Z"),
            DateTimeValue("2018-12-31T23:59:59.000000Z"),
        ),
        ("a!=1..2", 1, 2),
    ],
)
def test_range_literals(text: str, low: object, high: object) -> None:
    assert parse(text).value == Range(low, high)


def test_regex_value_is_compiled() -> None:
    value = parse("name~=^Tru.*e").value
    assert isinstance(value, re.Pattern)
    assert value.pattern == "^Tru.*e"


def test_regex_case_insensitive_flag() -> None:
    value = parse("name~=(?i)bridge").value
    assert isinstance(value, re.Pattern)
    assert value.flags & re.IGNORECASE


def test_regex_alternation_inside_parentheses_stays_in_pattern() -> None:
    expr = parse("name~=(foo|bar);b")
    assert isinstance(expr, And)
    assert expr.terms[0].value.pattern == "(foo|bar)"


def test_regex_bare_alternation_splits_the_query() -> None:
    expr = parse("name~=foo|bar")
    assert isinstance(expr, Or)
    assert expr.terms[1] == Comparison(path("bar"), "exists", None)


def test_regex_quoted_may_hold_separators() -> None:
    assert parse('name~="a|b;c"').value.pattern == "a|b;c"


def test_regex_character_class_may_hold_separators() -> None:
    assert parse("name~=[;|)]x;b").terms[0].value.pattern == "[;|)]x"


def test_regex_posix_class_is_translated() -> None:
    value = parse("name~=^[[:upper:]][[:alpha:]]+$").value
    assert value.search("Hue") and not value.search("hue")


def test_regex_inside_group_ends_at_closing_parenthesis() -> None:
    expr = parse("(name~=^T;a)")
    assert isinstance(expr, And)
    assert expr.terms[0].value.pattern == "^T"


def test_and_binds_tighter_than_or() -> None:
    a, b, c = (Comparison(path(n), "exists", None) for n in "abc")
    assert parse("a;b|c") == Or((And((a, b)), c))
    assert parse("a|b;c") == Or((a, And((b, c))))


def test_parentheses_override_precedence() -> None:
    a, b, c = (Comparison(path(n), "exists", None) for n in "abc")
    assert parse("a;(b|c)") == And((a, Or((b, c))))


def test_nested_parentheses() -> None:
    expr = parse('((speed>50|rpm>3000);brandName=="Mercedes")')
    assert isinstance(expr, And)
    assert isinstance(expr.terms[0], Or)


def test_same_operator_groups_are_flattened() -> None:
    assert len(parse("a;(b;c);d").terms) == 4


def test_redundant_parentheses_are_dropped() -> None:
    assert parse("((a))") == Comparison(path("a"), "exists", None)


def test_whitespace_around_tokens_is_ignored() -> None:
    assert parse(" a == 1 ; ( b > 2 | c ) ") == parse("a==1;(b>2|c)")


def test_iter_comparisons_lists_terms_left_to_right() -> None:
    terms = list(iter_comparisons(parse("a==1;(b>2|c);d")))
    assert [t.path.attr for t in terms] == [EX + "a", EX + "b", EX + "c", EX + "d"]


def test_iter_comparisons_of_single_term() -> None:
    assert list(iter_comparisons(parse("a"))) == [Comparison(path("a"), "exists", None)]


def test_expand_values_expands_strings_of_listed_attributes() -> None:
    expr = parse_query_q(
        "category==Commercial;other==Commercial", expand, expand_values=["category"]
    )
    assert expr.terms[0].value == EX + "Commercial"
    assert expr.terms[1].value == "Commercial"


def test_expand_values_expands_value_lists() -> None:
    expr = parse_query_q("category==A,B,1", expand, expand_values=["category"])
    assert expr.value == (EX + "A", EX + "B", 1)


# --- parsing: errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "(a==1",
        "((a==1)",
        "a==1)",
        "a==1;b)",
        "()",
        "a;",
        "a|",
        ";a",
        "|a",
        "a;;b",
        "a||b",
        "a;|b",
        "(a;)",
        "(|a)",
        "a=1",
        "a===1",
        "a=<1",
        "a=>1",
        "a<>1",
        "a!1",
        "a~1",
        "a>=<1",
        "a==",
        "a!=;b",
        "a>",
        "a==1 2",
        "a b",
        "a==1,",
        "a==,1",
        "a==(1,)",
        "a==()",
        "a==(1,2",
        "a==(1..2,3)",
        "a==1..2,3",
        "a==1..",
        "a==1..x",
        'a==1.."z"',
        "a==1..2018-01-01T00:00:00Z",
        "a==true..false",
        "a>1..2",
        "a>true",
        "a<urn:x:y",
        "a>=word",
        'a=="unterminated',
        'a=="bad \\q escape"',
        'a=="x"y',
        "a==null",
        "a==007",
        "a==1.",
        "a==.5",
        "a==+5",
        "a==1e999",
        "a==1-2",
        "a==@x",
        "a==x'y",
        "a~=",
        "a~=(",
        "a~=[a-",
        "a~=*x",
        "a~=x{2,1}",
        "a~=(?P<x)",
        "a~=[[:nope:]]",
        'a~=""',
        "1a==1",
        "_==1;",
        ".a==1",
        "a.==1",
        "a..b==1",
        "a[==1",
        "a[]==1",
        "a[x==1",
        "a[x.]==1",
        "a]==1",
        "a[x].b==1",
        "a.observedAt.b==1",
        "a.observedAt[x]==1",
        "createdAt.x==1",
        "createdAt[x]==1",
        "a==2018-13-01T00:00:00Z",
        "a==2018-02-30",
        "a==2018-01-01T25:00:00Z",
        "a==2018-01-01T10:00Z",
        "a==2018-01-01T10:00:00+25:00",
        "a==2018-01-01T10:00:00.Z",
        "a==25:00:00Z",
        "a==12:00Z",
        "a==\x00",
        "https://ex.org/a==1",
        "!a",
    ],
)
def test_malformed_query_raises_bad_request(text: str) -> None:
    with pytest.raises(BadRequestData):
        parse(text)


def test_error_names_the_offset() -> None:
    with pytest.raises(BadRequestData, match="offset 6"):
        parse("a==1;b=2")


def test_error_names_the_bad_operator() -> None:
    with pytest.raises(BadRequestData, match="'==='"):
        parse("speed===2")


def test_error_names_an_unclosed_parenthesis() -> None:
    with pytest.raises(BadRequestData, match=r"unbalanced '\('"):
        parse("a;(b|c")


def test_error_names_an_invalid_datetime() -> None:
    with pytest.raises(BadRequestData, match="2018-13-01"):
        parse("a.observedAt>2018-13-01T00:00:00Z")


def test_error_for_bad_regex_names_the_pattern() -> None:
    with pytest.raises(BadRequestData, match="regular expression"):
        parse("name~=a(b")


def test_linked_entity_path_is_not_supported() -> None:
    with pytest.raises(OperationNotSupported):
        parse("sensor{humidity}==40")


def test_too_many_terms_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse(";".join(f"a{i}==1" for i in range(65)))


def test_sixty_four_terms_are_accepted() -> None:
    assert len(parse(";".join(f"a{i}==1" for i in range(64))).terms) == 64


def test_deep_nesting_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse("(" * 17 + "a" + ")" * 17)


def test_nesting_sixteen_deep_is_accepted() -> None:
    assert parse("(" * 16 + "a" + ")" * 16) == Comparison(path("a"), "exists", None)


def test_long_value_list_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse("a==" + ",".join(str(i) for i in range(101)))


def test_very_long_query_is_too_complex() -> None:
    with pytest.raises(TooComplexQuery):
        parse("a==" + "1" * 9000)


# --- normalize_datetime -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-12-04T12:00:00Z", "2018-12-04T12:00:00.000000Z"),
        ("2018-12-04T12:00:00z", "2018-12-04T12:00:00.000000Z"),
        ("2018-12-04T12:00:00", "2018-12-04T12:00:00.000000Z"),
        ("2018-12-04T12:00:00.5Z", "2018-12-04T12:00:00.500000Z"),
        ("2018-12-04T12:00:00,25Z", "2018-12-04T12:00:00.250000Z"),
        ("2018-12-04T12:00:00.123456789Z", "2018-12-04T12:00:00.123456Z"),
        ("2018-12-04T12:00:00+02:00", "2018-12-04T10:00:00.000000Z"),
        ("2018-12-04T12:00:00+0200", "2018-12-04T10:00:00.000000Z"),
        ("2018-12-04T12:00:00-05", "2018-12-04T17:00:00.000000Z"),
        ("2018-12-31T23:30:00-01:00", "2019-01-01T00:30:00.000000Z"),
        ("2018-12-04", "2018-12-04T00:00:00.000000Z"),
        ("0999-01-01T00:00:00Z", "0999-01-01T00:00:00.000000Z"),
    ],
)
def test_normalize_datetime(text: str, expected: str) -> None:
    assert normalize_datetime(text) == expected


def test_normalized_datetimes_sort_in_time_order() -> None:
    a = normalize_datetime("2018-12-04T12:00:00+05:00")
    b = normalize_datetime("2018-12-04T08:00:00Z")
    assert a < b


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2018",
        "2018-12",
        "18-12-04",
        "2018-12-04T",
        "2018-12-04T12",
        "2018-12-04T12:00",
        "2018-12-04 12:00:00Z",
        "2018-12-04T12:00:60Z",
        "2018-12-04T24:00:00Z",
        "2018-02-29T00:00:00Z",
        "2018-12-04T12:00:00+24:00",
        "2018-12-04T12:00:00.1234567890Z",
        "2018-W49-2",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2018-12-04T12:00:00Z ",
        "١٢٣٤-12-04",
    ],
)
def test_normalize_datetime_refuses_invalid(text: str) -> None:
    with pytest.raises(BadRequestData):
        normalize_datetime(text)


# --- evaluation ---------------------------------------------------------------------------


def test_exists_matches_present_attribute() -> None:
    assert matches("name")


def test_exists_fails_for_absent_attribute() -> None:
    assert not matches("missing")


def test_exists_on_sub_attribute() -> None:
    assert matches("temperature.accuracy")
    assert not matches("name.accuracy")


def test_exists_on_core_member() -> None:
    assert matches("temperature.unitCode")
    assert not matches("name.observedAt")


def test_exists_on_compound_key() -> None:
    assert matches("address[city]")
    assert not matches("address[country]")


def test_compound_key_holding_null_does_not_exist() -> None:
    doc = entity()
    doc["attrs"][EX + "address"][0]["value"]["city"] = None
    assert not matches("address[city]", doc)
    assert not matches('address[city]!="Hue"', doc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name=="Truong Tien Bridge"', True),
        ('name=="Other"', False),
        ("count==0", True),
        ("count==0.0", True),
        ("count==1", False),
        ("temperature==21.5", True),
        ("open==true", True),
        ("open==false", False),
        ("open!=false", True),
        ("open!=true", False),
    ],
)
def test_equality(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("temperature>21", True),
        ("temperature>30", False),
        ("temperature>=30", True),
        ("temperature<21.5", False),
        ("temperature<=21.5", True),
        ("temperature<0", False),
        ('name>"A"', True),
        ('name<"A"', False),
        ('name>="Truong Tien Bridge"', True),
        ('name<="Truong"', False),
    ],
)
def test_ordering_operators(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_unequal_matches_different_value() -> None:
    assert matches('name!="Other"')


def test_unequal_fails_on_same_value() -> None:
    assert not matches('name!="Truong Tien Bridge"')


def test_unequal_requires_the_attribute() -> None:
    assert not matches('missing!="x"')


def test_unequal_with_other_type_counts_as_unequal() -> None:
    assert matches("name!=5")


def test_type_mismatch_is_no_match() -> None:
    assert not matches('count=="0"')
    assert not matches("code==42")
    assert not matches('temperature>"20"')


def test_boolean_is_not_a_number() -> None:
    assert not matches("open==1")
    assert not matches("open>0")


def test_string_digits_do_not_compare_as_number() -> None:
    assert not matches("code>41")


def test_multi_instance_attribute_matches_any_instance() -> None:
    assert matches("temperature==30")
    assert matches("temperature==21.5")


def test_multi_instance_unequal_requires_no_instance_equal() -> None:
    assert not matches("temperature!=30")
    assert matches("temperature!=25")


def test_multi_instance_ordering_matches_any_instance() -> None:
    assert matches("temperature>25")
    assert matches("temperature<25")
    assert not matches("temperature>40")


def test_value_list_matches_any_listed_value() -> None:
    assert matches("count==5,0,7")
    assert not matches("count==5,7")


def test_value_list_unequal_matches_when_none_listed() -> None:
    assert matches("count!=5,7")
    assert not matches("count!=5,0")


def test_array_value_includes_query_value() -> None:
    assert matches('tags=="red"')
    assert not matches('tags=="black"')


def test_array_value_unequal_requires_value_not_included() -> None:
    assert matches('tags!="black"')
    assert not matches('tags!="red"')


def test_array_value_with_value_list() -> None:
    assert matches('tags=="black","blue"')
    assert not matches('tags!="black","blue"')
    assert matches('tags!="black","white"')


def test_array_value_ordering_matches_any_element() -> None:
    assert matches('tags>"green"')
    assert not matches('tags>"red"')


def test_empty_array_value_is_unequal_to_everything() -> None:
    doc = entity()
    doc["attrs"][EX + "tags"][0]["value"] = []
    assert matches('tags!="red"', doc)
    assert not matches('tags=="red"', doc)


def test_range_matches_inclusive_bounds() -> None:
    assert matches("temperature==21.5..22")
    assert matches("temperature==20..21.5")
    assert matches("count==0..0")


def test_range_excludes_values_outside() -> None:
    assert not matches("count==1..10")


def test_range_with_reversed_bounds_matches_nothing() -> None:
    assert not matches("count==1..-1")


def test_unequal_range_matches_values_outside() -> None:
    assert matches("count!=1..10")
    assert not matches("count!=-1..1")


def test_string_range() -> None:
    assert matches('name=="T".."U"')
    assert not matches('name=="A".."B"')


def test_range_of_other_type_is_no_match() -> None:
    assert not matches("name==1..10")


def test_range_applies_to_array_elements() -> None:
    assert matches("series==3..10")
    assert not matches("series==4..10")


def test_datetime_range() -> None:
    assert matches("temperature.observedAt==2026-11-23T21:00:00Z..2026-11-23T23:00:00Z")
    assert not matches("temperature.observedAt==2026-11-24T00:00:00Z..2026-11-25T00:00:00Z")


def test_observed_at_compares_as_datetime() -> None:
    assert matches("temperature.observedAt>=2026-11-23T22:00:00Z")
    assert matches("temperature.observedAt==2026-11-23T22:00:00.000Z")
    assert not matches("temperature.observedAt>2026-11-23T22:00:00Z")


def test_datetime_literal_with_offset_compares_as_instant() -> None:
    assert matches("temperature.observedAt==2026-11-24T00:00:00+02:00")
    assert matches("temperature.observedAt>2026-11-23T23:00:00+02:00")
    assert not matches("temperature.observedAt>2026-11-23T21:00:00-02:00")


def test_stored_string_datetime_with_offset_compares_as_instant() -> None:
    assert matches("inspected==2024-03-01T07:30:00Z")
    assert matches("inspected<2024-03-01T08:00:00Z")


def test_typed_datetime_value_compares_as_datetime() -> None:
    assert matches("opened==2020-05-01T10:00:00Z")
    assert matches("opened>2020-05-01")
    assert not matches("opened<2020-05-01T09:59:59.999Z")


def test_date_literal_means_midnight_utc() -> None:
    assert matches("temperature.observedAt>2026-11-23")
    assert not matches("temperature.observedAt>2026-11-24")


def test_datetime_literal_does_not_match_plain_string() -> None:
    assert not matches("name>2020-01-01T00:00:00Z")


def test_quoted_string_does_not_match_typed_datetime() -> None:
    assert not matches('opened=="2020-05-01T10:00:00.000000Z"')


def test_datetime_literal_does_not_match_number() -> None:
    assert not matches("count<2020-01-01")


def test_entity_created_at() -> None:
    assert matches("createdAt<2026-11-24T00:00:00Z")
    assert matches("modifiedAt>2026-11-24T00:00:00Z")
    assert not matches("createdAt>2026-11-24T00:00:00Z")


def test_unit_code_sub_path() -> None:
    assert matches('temperature.unitCode=="CEL"')
    assert not matches('temperature.unitCode=="FAH"')


def test_dataset_id_sub_path() -> None:
    assert matches("temperature.datasetId==urn:ngsi-ld:Dataset:b")
    assert not matches("temperature.datasetId==urn:ngsi-ld:Dataset:c")


def test_sub_attribute_value() -> None:
    assert matches("temperature.accuracy>0.5")
    assert not matches("temperature.accuracy>0.95")


def test_sub_relationship_object() -> None:
    assert matches("temperature.measuredBy==urn:ngsi-ld:Dev:7")


def test_compound_value_path() -> None:
    assert matches('address[city]=="Hue"')
    assert matches("address[geo][zip]==49000")
    assert matches("address[geo.zip]>=49000")
    assert not matches('address[city]=="Berlin"')


def test_compound_path_through_list_of_objects() -> None:
    assert matches("address[lines][n]==2")
    assert not matches("address[lines][n]==3")


def test_compound_unequal_requires_key() -> None:
    assert not matches('address[country]!="VN"')


def test_sub_attribute_compound_value_path() -> None:
    assert matches("sensor.rawdata[airquality.particulate]==40")


def test_compound_value_does_not_equal_scalar() -> None:
    assert not matches('address=="Hue"')
    assert matches('address!="Hue"')


def test_relationship_object_equality() -> None:
    assert matches("refX==urn:ngsi-ld:X:1")
    assert matches('refX=="urn:ngsi-ld:X:1"')
    assert not matches("refX==urn:ngsi-ld:X:9")


def test_relationship_object_list() -> None:
    assert matches("refMany==urn:ngsi-ld:X:2")
    assert not matches("refMany!=urn:ngsi-ld:X:2")
    assert matches("refMany!=urn:ngsi-ld:X:3")


def test_relationship_value_list() -> None:
    assert matches("refX==urn:ngsi-ld:X:9,urn:ngsi-ld:X:1")


def test_relationship_ignores_ordering_and_pattern_operators() -> None:
    assert not matches('refX>"urn"')
    assert not matches("refX~=X")
    assert not matches("refX!~=nothing")


def test_list_relationship_object_list() -> None:
    assert matches("route==urn:b")
    assert matches("route!=urn:c")
    assert not matches("route~=urn")


def test_language_map_any_language_without_key() -> None:
    assert matches('label=="Cầu"')
    assert matches('label=="Bridge"')
    assert not matches('label=="Pont"')


def test_language_map_specific_language() -> None:
    assert matches('label[en]=="Bridge"')
    assert not matches('label[vi]=="Bridge"')


def test_language_map_star_means_any_language() -> None:
    assert matches('label[*]=="Cầu"')


def test_language_map_missing_language_does_not_exist() -> None:
    assert not matches("label[de]")
    assert not matches('label[de]!="x"')


def test_language_map_unequal() -> None:
    assert matches('label[en]!="Cầu"')
    assert not matches('label!="Cầu"')


def test_language_map_array_values() -> None:
    assert matches('aliases[en]=="Crossing"')
    assert not matches('aliases[fr]=="Crossing"')
    assert not matches('aliases[*]!="Span"')


def test_language_map_regex() -> None:
    assert matches("label~=^C")
    assert matches("label[en]~=(?i)^bridge$")


def test_vocab_property_compares_expanded_iri() -> None:
    assert matches(f"category=={EX}Commercial")
    assert not matches("category==Commercial")


def test_vocab_property_with_expand_values() -> None:
    expr = parse_query_q("category==Commercial", expand, expand_values=["category"])
    assert match_q(expr, entity())


def test_json_property_compound_key() -> None:
    assert matches('raw[any]=="json"')
    assert matches("raw[n]>2")


def test_json_property_value_is_not_a_scalar() -> None:
    assert not matches('raw=="json"')


def test_list_property_elements() -> None:
    assert matches("series==2")
    assert matches("series>2")
    assert not matches("series>3")
    assert not matches("series!=1")


def test_geo_property_value_is_compound() -> None:
    assert matches('location[type]=="Point"')
    assert matches("location")


def test_regex_matches_substring() -> None:
    assert matches("name~=Tien")


def test_regex_anchors() -> None:
    assert matches("name~=^Truong")
    assert not matches("name~=^Tien")


def test_regex_is_case_sensitive_by_default() -> None:
    assert not matches("name~=bridge")


def test_regex_case_insensitive_flag_matches() -> None:
    assert matches("name~=(?i)bridge")


def test_regex_applies_to_strings_only() -> None:
    assert not matches("count~=0")
    assert not matches("count!~=x")


def test_regex_matches_any_array_element() -> None:
    assert matches("tags~=^gr")
    assert not matches("tags~=^y")


def test_not_pattern_requires_no_element_to_match() -> None:
    assert matches("name!~=^Pont")
    assert not matches("name!~=Bridge")
    assert not matches("tags!~=^b")
    assert matches("tags!~=^y")


def test_not_pattern_requires_the_attribute() -> None:
    assert not matches("missing!~=x")


def test_and_requires_every_term() -> None:
    assert matches("name;count==0")
    assert not matches("name;count==1")


def test_or_requires_one_term() -> None:
    assert matches("missing|count==0")
    assert not matches("missing|count==1")


def test_precedence_in_evaluation() -> None:
    assert matches("missing;count==1|name")
    assert not matches("missing;(count==1|name)")


def test_spec_example_parentheses() -> None:
    assert matches("(temperature>=20;temperature<=25)|capacity<=10")
    assert not matches("(temperature>=31;temperature<=35)|capacity<=10")


def test_entity_without_attrs_matches_nothing() -> None:
    assert not matches("name", {"id": "urn:x:1", "type": [EX + "T"]})


def test_instance_without_value_member_exists_but_equals_nothing() -> None:
    doc = entity()
    doc["attrs"][EX + "name"] = [{"type": "Property"}]
    assert matches("name", doc)
    assert matches('name!="x"', doc)
    assert not matches('name=="x"', doc)


def test_attribute_with_no_instances_does_not_exist() -> None:
    doc = entity()
    doc["attrs"][EX + "name"] = []
    assert not matches("name", doc)


def test_other_typed_values_are_plain_objects() -> None:
    doc = entity()
    doc["attrs"][EX + "built"] = [
        {"type": "Property", "value": {"@type": "Date", "@value": "1899-01-01"}}
    ]
    assert not matches("built==1899-01-01", doc)
    assert not matches('built=="1899-01-01"', doc)
    assert matches('built[@value]=="1899-01-01"', doc)


def test_stored_date_string_is_a_plain_string() -> None:
    doc = entity()
    doc["attrs"][EX + "built"] = [{"type": "Property", "value": "1899-01-01"}]
    assert matches('built=="1899-01-01"', doc)
    assert not matches("built==1899-01-01", doc)


def test_language_map_exists_without_key() -> None:
    assert matches("label")
    assert matches("label[*]")
    assert matches("label[vi]")


# --- robustness ---------------------------------------------------------------------------

_Q_ALPHABET = st.sampled_from(
    [*list('ab.[]();|,=!<>~"\\ 01-:eTZ+*#/?'), "==", "!=", "~=", "..", "true", "urn:x", "(?i)"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_Q_ALPHABET, min_size=1, max_size=16).map("".join))
def test_parser_raises_only_ngsi_ld_errors(text: str) -> None:
    try:
        expr = parse(text)
    except NgsiLdError:
        return
    assert isinstance(match_q(expr, entity()), bool)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parser_handles_arbitrary_text(text: str) -> None:
    with contextlib.suppress(NgsiLdError):
        parse(text)
