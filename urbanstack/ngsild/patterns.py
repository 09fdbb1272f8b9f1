"""Client regular expressions (q ``~=``, ``idPattern``) run with a time limit.

Python's ``re`` cannot be interrupted: one pattern such as ``(a+)+$`` against a long
enough string backtracks for hours, holding a thread and the interpreter lock, and one
request would take the server down. Client patterns are checked with ``re`` when parsed
(the syntax the specification cites) and run on the ``regex`` engine, which takes a
timeout and otherwise behaves as ``re``; a search that exceeds the limit raises
:class:`PatternTooSlow`, a BadRequestData: the request fails and changes nothing.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from functools import lru_cache

import regex

from urbanstack.ngsild.errors import BadRequestData

#: seconds one search of one string may take (ordinary patterns take microseconds)
SEARCH_TIMEOUT_S = 0.1


class PatternTooSlow(BadRequestData):
    """A client pattern took longer than :data:`SEARCH_TIMEOUT_S` on one string."""


@lru_cache(maxsize=1024)
def _engine(source: str, ignore_case: bool) -> regex.Pattern[str]:
    return regex.compile(source, regex.VERSION0 | (regex.IGNORECASE if ignore_case else 0))


def check_pattern(source: str, what: str = "regular expression") -> None:
    """BadRequestData unless ``source`` compiles on both engines."""
    try:
        re.compile(source)
        _engine(source, False)
    except (re.error, regex.error) as exc:
        raise BadRequestData(f"Invalid {what} {source!r}: {exc}") from None
    except (OverflowError, RecursionError):
        raise BadRequestData(f"The {what} {source!r} is too complex") from None


def pattern_search(pattern: str | re.Pattern[str], text: str, *, full: bool = False) -> bool:
    """Whether ``pattern`` matches somewhere in ``text`` (all of it with ``full``), within
    :data:`SEARCH_TIMEOUT_S`; PatternTooSlow otherwise."""
    if isinstance(pattern, re.Pattern):
        source, ignore_case = pattern.pattern, bool(pattern.flags & re.IGNORECASE)
    else:
        source, ignore_case = pattern, False
    if len(text) <= REMEMBERED_TEXT_MAX:
        return _remembered(source, ignore_case, full, text)
    return _matches(source, ignore_case, full, text)


#: texts up to this length have their answers remembered: subscriptions test the same entity
#: ids change after change, and a search with a time limit costs several times one without
REMEMBERED_TEXT_MAX = 256


@lru_cache(maxsize=65536)
def _remembered(source: str, ignore_case: bool, full: bool, text: str) -> bool:
    return _matches(source, ignore_case, full, text)  # a timeout raises: not remembered


def _matches(source: str, ignore_case: bool, full: bool, text: str) -> bool:
    try:
        engine = _engine(source, ignore_case)
    except regex.error as exc:
        raise BadRequestData(f"Invalid regular expression {source!r}: {exc}") from None
    try:
        if full:
            return engine.fullmatch(text, timeout=SEARCH_TIMEOUT_S) is not None
        return engine.search(text, timeout=SEARCH_TIMEOUT_S) is not None
    except TimeoutError:
        raise PatternTooSlow(
            f"The regular expression {source!r} takes too long to match; simplify it"
        ) from None


_POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "punct": "!-/:-@\\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "cntrl": "\\x00-\\x1f\\x7f",
    "print": " -~",
    "graph": "!-~",
    "word": "a-zA-Z0-9_",
}
_POSIX_CLASS_RE = re.compile(r"(?<!\\)\[:([a-z]+):\]")


def _translate_posix_classes(pattern: str, fail: Callable[[str], BadRequestData]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in _POSIX_CLASSES:
            raise fail(f"unknown POSIX character class [:{name}:]")
        return _POSIX_CLASSES[name]

    return _POSIX_CLASS_RE.sub(replace, pattern)


def compile_q_pattern(pattern: str, fail: Callable[[str], BadRequestData]) -> re.Pattern[str]:
    """A ``q`` ``~=`` pattern compiled (POSIX bracket classes translated), or ``fail(reason)``
    raised when it is invalid on either engine."""
    pattern = _translate_posix_classes(pattern, fail)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = re.compile(pattern)
    except re.error as exc:
        raise fail(f"invalid regular expression {pattern!r}: {exc.msg}") from None
    except (OverflowError, RecursionError):
        raise fail(f"regular expression {pattern!r} is too complex") from None
    try:
        check_pattern(pattern)  # the engine that runs it
    except BadRequestData as err:
        raise fail(err.detail) from None
    return compiled
