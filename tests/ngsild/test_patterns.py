"""Client regular expressions run with a time limit (ngsild/patterns.py)."""

from __future__ import annotations

import re

import pytest

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.patterns import PatternTooSlow, check_pattern, pattern_search

#: exponential backtracking: 2^40 ways to split 40 a's, none followed by the end
CATASTROPHIC = (r"(a|aa)+$", "a" * 40 + "!")


def test_a_catastrophic_pattern_is_stopped_as_bad_request_data() -> None:
    with pytest.raises(PatternTooSlow) as caught:
        pattern_search(*CATASTROPHIC)
    assert isinstance(caught.value, BadRequestData)
    assert "too long" in caught.value.detail


@pytest.mark.parametrize(
    ("pattern", "text", "full"),
    [
        ("^Hu", "Huế", False),
        ("ế$", "Huế", False),
        ("urn:ngsi-ld:Gauge:[0-9]+", "urn:ngsi-ld:Gauge:12", True),
        ("urn:ngsi-ld:Gauge:[0-9]+", "urn:ngsi-ld:Gauge:12x", True),
        ("(?i)^ok", "OK then", False),
        (r"\d{2}-\d{2}", "on 24-11", False),
        ("a|b", "c", False),
    ],
)
def test_matches_as_python_re_does(pattern: str, text: str, full: bool) -> None:
    expected = (re.fullmatch if full else re.search)(pattern, text) is not None
    assert pattern_search(pattern, text, full=full) is expected


def test_a_compiled_pattern_keeps_its_ignore_case_flag() -> None:
    assert pattern_search(re.compile("^ok", re.IGNORECASE), "OK") is True
    assert pattern_search(re.compile("^ok"), "OK") is False


@pytest.mark.parametrize("pattern", ["(", "[a-", "a{2,1}"])
def test_an_invalid_pattern_is_bad_request_data(pattern: str) -> None:
    with pytest.raises(BadRequestData):
        check_pattern(pattern, "idPattern")


def test_a_slow_pattern_is_stopped_every_time_not_only_the_first() -> None:
    for _ in range(2):  # a timeout is never remembered as an answer
        with pytest.raises(PatternTooSlow):
            pattern_search(*CATASTROPHIC)


def test_long_texts_are_matched_too() -> None:
    text = "x" * 10_000 + "Huế"
    assert pattern_search("Huế$", text) is True
    assert pattern_search("^Huế", text) is False
