"""The NGSI-LD Query Language: the ``q`` parameter (ETSI GS CIM 009 clause 4.9).

``parse_query_q`` turns a (URL-decoded) ``q`` string into a small immutable AST and
``match_q`` evaluates that AST against a stored entity document (see
``urbanstack.ngsild.model``). ``match_q`` is the reference semantics: the SQL compiler
of the store must agree with it.

Accepted syntax (a superset of the clause 4.9 ABNF)
-----------------------------------------------------
* Terms are joined by ``;`` (AND) and ``|`` (OR); AND binds tighter than OR;
  parentheses group and may nest (the ABNF allows one level, examples use more).
  Whitespace around terms, operators and separators is ignored.
* A term is ``path`` (the target element exists) or ``path OP value`` with ``OP`` one
  of ``==`` ``!=`` ``>`` ``>=`` ``<`` ``<=`` ``~=`` ``!~=``.
* Paths: ``attr``, ``attr.sub.subsub`` (sub-attributes), ``attr[key]``,
  ``attr[key1.key2]`` (the clause 4.9 form) or ``attr[key1][key2]`` (both give
  ``keys == ("key1", "key2")``), ``attr.sub[key]``. Names are unicode letters, digits,
  ``_``, ``-`` and ``:`` (compact IRIs ``ex:name``), starting with a letter or ``_``;
  absolute IRIs cannot be written in a path (their dots clash with sub-attributes).
  Every name is expanded with ``expand`` except: the sub-attribute names in
  ``CORE_MEMBERS`` (``observedAt``, ``createdAt``, ``modifiedAt``, ``unitCode``,
  ``datasetId``), kept literal and allowed only as the last name of a path without
  keys; and the top-level names in ``ENTITY_MEMBERS`` (``createdAt``, ``modifiedAt``),
  kept literal and evaluated against the entity's own system timestamps (as Stellio
  does). ``type`` is *not* a core member here: it is expanded like any name.
  Keys are not expanded. Linked-entity paths (``attr{...}``, clause 4.5.23) raise
  ``OperationNotSupported``.
* Values: JSON numbers (``-1``, ``2.5``, ``1e3``), JSON double-quoted strings (with
  escapes), ``true``/``false``, unquoted datetimes (``2018-12-04T12:00:00Z``, see
  ``normalize_datetime``; also with offsets, fractional seconds and date-only
  ``2018-12-04``, which means midnight UTC) as ``DateTimeValue``, unquoted times
  (``12:00:00Z``, kept as the given ``str``), unquoted URIs / compact IRIs
  (``urn:ngsi-ld:Store:001``) and, leniently, bare words (``Male``, as in the clause
  4.9 ``expandValues`` example) as ``str``.
* After ``==``/``!=`` only: a value list ``a,b,c`` or ``(a,b,c)`` (a one-element
  parenthesised list is just its value), a range ``low..high`` (numbers, quoted
  strings, times or datetimes; both bounds of the same kind; inclusive), booleans,
  URIs and bare words. Ordering operators take numbers, quoted strings, datetimes
  and times only.
* Unquoted values end at ``;`` ``|`` ``,`` ``(`` ``)`` ``"`` or whitespace, so a URI
  holding one of those characters has to be quoted.
* After ``~=``/``!~=``: a regular expression, either a JSON double-quoted string or
  unquoted, in which case it ends at the first ``;`` or ``|`` outside parentheses and
  brackets or at an unbalanced ``)``: write ``name~=(?i)(foo|bar)`` or quote it,
  ``name~=foo|bar`` is ``name~=foo`` OR ``bar`` (exists). Patterns are Python ``re``
  syntax (a superset of the POSIX ERE the spec cites), evaluated with ``re.search``;
  POSIX bracket classes ``[[:alpha:]]`` are translated, a leading ``(?i)`` makes the
  match case-insensitive; invalid patterns raise ``BadRequestData``.

Limits: more than ``MAX_TERMS`` comparisons, parentheses nested deeper than
``MAX_DEPTH``, a value list longer than ``MAX_VALUES`` or a ``q`` longer than
``MAX_Q_LENGTH`` characters raise ``TooComplexQuery``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from urbanstack.ngsild.errors import BadRequestData, OperationNotSupported, TooComplexQuery
from urbanstack.ngsild.grammar import BooleanParser
from urbanstack.ngsild.model import VALUE_MEMBER
from urbanstack.ngsild.patterns import check_pattern

MAX_TERMS = 64
MAX_DEPTH = 16
MAX_VALUES = 100
MAX_Q_LENGTH = 8192
MAX_REGEX_LENGTH = 1024

#: sub-attribute names that address a member of the instance instead of a sub-attribute
CORE_MEMBERS = frozenset({"observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"})
#: top-level names that address the entity's own system timestamps
ENTITY_MEMBERS = frozenset({"createdAt", "modifiedAt"})
#: comparison operators, in the order the lexer tries them (longest first)
OPERATORS = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")
#: member holding the compared value, per attribute type
VALUE_MEMBERS = VALUE_MEMBER


# --- AST ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateTimeValue:
    """A datetime literal, as normalised UTC text ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""

    text: str


QScalar = int | float | str | bool | DateTimeValue


@dataclass(frozen=True)
class Range:
    """An inclusive range ``low..high`` (both bounds of the same kind)."""

    low: QScalar
    high: QScalar


@dataclass(frozen=True)
class Bounds:
    """A lower and an upper bound that ONE value must satisfy together (``op`` "bounds").

    ``a>=x;a<=y`` on the same path parses into this: the range is asked of each value,
    which is what the query means for single values and, for multi-valued attributes
    (several datasetIds, arrays), finds a value inside the range rather than one value
    above ``x`` and another below ``y``. It also lets stores answer it with one index range.
    """

    low: QScalar
    low_op: str  # ">" or ">="
    high: QScalar
    high_op: str  # "<" or "<="


@dataclass(frozen=True)
class AttrPath:
    """The target element of a query term.

    ``attr`` is the expanded attribute IRI (or ``createdAt``/``modifiedAt`` for the
    entity's timestamps), ``subs`` the expanded sub-attribute IRIs (the last one may be
    a literal name from ``CORE_MEMBERS``), ``keys`` the compound-value keys; for a
    LanguageProperty ``keys[0]`` is a language tag, ``*`` meaning any language.
    """

    attr: str
    subs: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """One query term: ``op`` is ``exists`` or one of ``OPERATORS``.

    ``value`` is ``None`` for ``exists``, a compiled pattern for ``~=``/``!~=``, a
    ``Range`` or a tuple (value list, at least two items) for ``==``/``!=`` and a
    scalar otherwise.
    """

    path: AttrPath
    op: str
    value: QScalar | tuple[QScalar, ...] | Range | Bounds | re.Pattern[str] | None


@dataclass(frozen=True)
class And:
    """All terms hold (at least two terms, none of them an ``And``)."""

    terms: tuple[QExpr, ...]


@dataclass(frozen=True)
class Or:
    """At least one term holds (at least two terms, none of them an ``Or``)."""

    terms: tuple[QExpr, ...]


QExpr = Comparison | And | Or


# --- datetimes ---------------------------------------------------------------------------

_DATETIME_RE = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"(?:[Tt](?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})(?:[.,](?P<f>[0-9]{1,9}))?"
    r"(?P<tz>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_TIME_RE = re.compile(
    r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})(?:[.,][0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)


def normalize_datetime(text: str) -> str:
    """Normalise an ISO 8601 datetime to UTC text ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    Accepted: ``YYYY-MM-DDThh:mm:ss`` with an optional fraction (``.`` or ``,``, 1 to 9
    digits, truncated to microseconds) and an optional zone (``Z``, ``+hh:mm``,
    ``+hhmm``, ``+hh``); no zone means UTC (clause 4.6.3: all representations are UTC).
    A date alone (``YYYY-MM-DD``) means midnight UTC of that day. Reduced forms
    (``hh:mm`` without seconds), week or ordinal dates and leap seconds are refused.
    Raises ``BadRequestData`` for anything else.
    """
    match = _DATETIME_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise BadRequestData(
            f"Invalid datetime {text!r}: expected ISO 8601 such as 2018-12-04T12:00:00Z"
        )
    g = match.groupdict()
    fraction = (g["f"] or "").ljust(6, "0")[:6]
    try:
        value = datetime(
            int(g["y"]),
            int(g["mo"]),
            int(g["d"]),
            int(g["h"] or 0),
            int(g["mi"] or 0),
            int(g["s"] or 0),
            int(fraction or 0),
        )
        tz = g["tz"]
        if tz and tz not in "Zz":
            hours, minutes = int(tz[1:3]), int(tz[-2:]) if len(tz) > 3 else 0
            if hours > 23 or minutes > 59:
                raise ValueError("invalid UTC offset")
            offset = timedelta(hours=hours, minutes=minutes)
            value = value - offset if tz[0] == "+" else value + offset
    except (ValueError, OverflowError) as exc:
        raise BadRequestData(f"Invalid datetime {text!r}: {exc}") from None
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


@lru_cache(maxsize=4096)
def stored_datetime(text: str) -> str | None:
    """The normalised form of a stored string that is a valid datetime with a time part
    (a stored date alone stays a plain string), else None."""
    if len(text) < 19 or text[10] not in "Tt" or not text[:4].isdigit():
        return None
    try:
        return normalize_datetime(text)
    except BadRequestData:
        return None


# --- parser ------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_WORD_RE = re.compile(r"[^\W\d][\w.\-]*")
_VALUE_END = frozenset(';|(),"')
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

# value kinds while parsing
_NUMBER, _STRING, _DATETIME, _TIME, _BOOL, _URI, _WORD = (
    "number",
    "quoted string",
    "datetime",
    "time",
    "boolean",
    "URI",
    "unquoted word",
)
_ORDERABLE = frozenset({_NUMBER, _STRING, _DATETIME, _TIME})


def _is_name_start(char: str) -> bool:
    return char.isalpha() or char == "_"


def _is_name_char(char: str) -> bool:
    return char.isalnum() or char in "_-:"


class _Parser(BooleanParser[QExpr]):
    label = "q"
    term_name = "query term"
    or_chars = "|"
    and_chars = ";"
    max_depth = MAX_DEPTH

    def __init__(self, text: str, expand: Callable[[str], str], expand_values: set[str]):
        super().__init__(text)
        self.expand = expand
        self.expand_values = expand_values

    def combine(self, kind: str, terms: list[QExpr]) -> QExpr:
        return _combine(And if kind == "and" else Or, terms)

    def parse_term(self) -> Comparison:
        self.count_term(MAX_TERMS)
        path = self.parse_path()
        self.skip_ws()
        char = self.peek()
        if char in ("", ";", "|", ")"):
            return Comparison(path, "exists", None)
        op = next((o for o in OPERATORS if self.text.startswith(o, self.pos)), None)
        if op is None:
            if char in "=!<>~":
                bad = re.match(r"[=!<>~]+", self.text[self.pos :])
                token = bad.group(0) if bad else char
                raise self.error(f"invalid operator {token!r}")
            raise self.error(f"expected an operator after the attribute path, found {char!r}")
        op_at = self.pos
        run = re.match(r"[=!<>~]+", self.text[op_at:])
        if run is not None and run.group(0) != op:
            raise self.error(f"invalid operator {run.group(0)!r}")
        self.pos += len(op)
        self.skip_ws()
        if self.peek() in ("", ";", "|", ")"):
            raise self.error(f"missing value after {op!r}", op_at)
        if op in ("~=", "!~="):
            return Comparison(path, op, self.parse_regex())
        if op in ("==", "!="):
            value = self.parse_equality_value()
            if path.attr in self.expand_values:
                value = _expand_strings(value, self.expand)
            return Comparison(path, op, value)
        start = self.pos
        value, kind = self.parse_item(allow_range=True)
        if isinstance(value, Range):
            raise self.error(f"a range is only allowed after '==' or '!=', not {op!r}", start)
        if kind not in _ORDERABLE:
            raise self.error(
                f"{op!r} needs a number, a quoted string, a datetime or a time, found {kind} "
                f"{self.text[start : self.pos]!r}",
                start,
            )
        return Comparison(path, op, value)

    # -- paths

    def read_name(self, what: str) -> str:
        start = self.pos
        if not _is_name_start(self.peek()):
            raise self.error(f"expected {what}, found {self.describe()}")
        self.pos += 1
        while self.pos < len(self.text) and _is_name_char(self.text[self.pos]):
            self.pos += 1
        return self.text[start : self.pos]

    def parse_path(self) -> AttrPath:
        start = self.pos
        names = [self.read_name("an attribute name")]
        while self.peek() == ".":
            self.pos += 1
            names.append(self.read_name("a sub-attribute name after '.'"))
        if self.peek() == "{":
            raise OperationNotSupported(
                f"Linked entity queries ({self.text[start : self.pos]}{{...}}) in q "
                "are not supported"
            )
        keys: list[str] = []
        while self.peek() == "[":
            open_at = self.pos
            close = self.text.find("]", self.pos)
            if close < 0:
                raise self.error("unbalanced '[' in attribute path", open_at)
            inner = self.text[self.pos + 1 : close]
            for key in inner.split("."):
                if not key or "[" in key or any(ord(c) < 0x20 or c == "\x7f" for c in key):
                    raise self.error(f"invalid compound key [{inner}]", open_at)
                keys.append(key)
            self.pos = close + 1
        if self.peek() == ".":
            raise self.error("a sub-attribute cannot follow a compound key [...]")
        if self.peek() == "]":
            raise self.error("unbalanced ']' in attribute path")
        for i, name in enumerate(names[1:], start=1):
            if name in CORE_MEMBERS and (i < len(names) - 1 or keys):
                raise self.error(f"{name!r} must be the last element of the path", start)
        if names[0] in ENTITY_MEMBERS:
            if len(names) > 1 or keys:
                raise self.error(f"{names[0]!r} of the entity has no sub-elements", start)
            return AttrPath(names[0])
        attr = self.expand(names[0])
        subs = tuple(n if n in CORE_MEMBERS else self.expand(n) for n in names[1:])
        return AttrPath(attr, subs, tuple(keys))

    # -- values

    def parse_equality_value(self) -> QScalar | tuple[QScalar, ...] | Range:
        if self.peek() == "(":
            open_at = self.pos
            self.pos += 1
            items = self.parse_value_list(first=None)
            self.skip_ws()
            if self.peek() != ")":
                if self.pos >= len(self.text):
                    raise self.error("unbalanced '(' in value list", open_at)
                raise self.error(f"expected ',' or ')' in value list, found {self.describe()}")
            self.pos += 1
            return items[0] if len(items) == 1 else tuple(items)
        first_at = self.pos
        first, _ = self.parse_item(allow_range=True)
        self.skip_ws()
        if self.peek() != ",":
            return first
        if isinstance(first, Range):
            raise self.error("a range cannot be part of a value list", first_at)
        return tuple(self.parse_value_list(first=first))

    def parse_value_list(self, first: QScalar | None) -> list[QScalar]:
        items: list[QScalar] = []
        if first is not None:
            items.append(first)
        else:
            self.skip_ws()
            items.append(self.parse_list_item())
        while True:
            self.skip_ws()
            if self.peek() != ",":
                return items
            self.pos += 1
            self.skip_ws()
            items.append(self.parse_list_item())
            if len(items) > MAX_VALUES:
                raise TooComplexQuery(f"q has a value list longer than {MAX_VALUES} values")

    def parse_list_item(self) -> QScalar:
        if self.peek() in ("", ",", ")", ";", "|"):
            raise self.error(f"empty value in value list, found {self.describe()}")
        start = self.pos
        value, _ = self.parse_item(allow_range=True)
        if isinstance(value, Range):
            raise self.error("a range cannot be part of a value list", start)
        return value

    def parse_item(self, allow_range: bool) -> tuple[QScalar | Range, str]:
        start = self.pos
        low, low_kind = self.parse_atom(stop_at_dots=allow_range)
        if not (allow_range and self.text.startswith("..", self.pos)):
            return low, low_kind
        self.pos += 2
        high_at = self.pos
        if self.peek() in ("", ",", ")", ";", "|") or self.peek().isspace():
            raise self.error("missing upper bound of the range", high_at)
        high, high_kind = self.parse_atom(stop_at_dots=False)
        for value, kind, at in ((low, low_kind, start), (high, high_kind, high_at)):
            if kind not in _ORDERABLE:
                raise self.error(
                    "range bounds must be numbers, quoted strings, datetimes or times, "
                    f"found {kind} {value!r}",
                    at,
                )
        if _kind_class(low_kind) != _kind_class(high_kind):
            raise self.error(f"range bounds differ in type ({low_kind} .. {high_kind})", start)
        return Range(low, high), low_kind

    def parse_atom(self, stop_at_dots: bool) -> tuple[QScalar, str]:
        start = self.pos
        if self.peek() == '"':
            return self.parse_string(), _STRING
        text = self.text
        pos = self.pos
        while pos < len(text):
            char = text[pos]
            if char in _VALUE_END or char.isspace():
                break
            if (
                stop_at_dots
                and text.startswith("..", pos)
                and not _SCHEME_RE.match(text, start, pos)
            ):
                break
            pos += 1
        self.pos = pos
        raw = text[start:pos]
        if not raw:
            raise self.error(f"expected a value, found {self.describe(start)}", start)
        return self.classify(raw, start)

    def classify(self, raw: str, start: int) -> tuple[QScalar, str]:
        if raw == "true":
            return True, _BOOL
        if raw == "false":
            return False, _BOOL
        head = raw[0]
        if len(raw) >= 10 and raw[:4].isdigit() and raw[4] == "-":
            try:
                return DateTimeValue(normalize_datetime(raw)), _DATETIME
            except BadRequestData as exc:
                raise self.error(exc.detail, start) from None
        if len(raw) >= 3 and raw[:2].isdigit() and raw[2] == ":":
            match = _TIME_RE.fullmatch(raw)
            if (
                match is None
                or int(match["h"]) > 23
                or int(match["mi"]) > 59
                or int(match["s"]) > 59
            ):
                raise self.error(f"invalid time {raw!r}: expected hh:mm:ssZ", start)
            return raw, _TIME
        if head.isdigit() or head in "+-.":
            if _NUMBER_RE.fullmatch(raw) is None:
                raise self.error(f"invalid number {raw!r}", start)
            if any(c in raw for c in ".eE"):
                number = float(raw)
                if number in (float("inf"), float("-inf")):
                    raise self.error(f"number {raw!r} is out of range", start)
                return number, _NUMBER
            return int(raw), _NUMBER
        if _URI_RE.fullmatch(raw):
            return raw, _URI
        if raw == "null":
            raise self.error("null is not a valid value", start)
        if _WORD_RE.fullmatch(raw):
            return raw, _WORD
        raise self.error(f'invalid value {raw!r} (quote strings as "...")', start)

    def parse_string(self) -> str:
        start = self.pos
        pos = start + 1
        text = self.text
        while pos < len(text):
            char = text[pos]
            if char == "\\":
                pos += 2
                continue
            if char == '"':
                break
            pos += 1
        else:
            raise self.error("unterminated string", start)
        self.pos = pos + 1
        try:
            value = json.loads(text[start : pos + 1])
        except ValueError as exc:
            raise self.error(f"invalid string literal: {exc.args[0]}", start) from None
        return value

    # -- regular expressions

    def parse_regex(self) -> re.Pattern[str]:
        start = self.pos
        pattern = self.parse_string() if self.peek() == '"' else self.scan_regex()
        if not pattern:
            raise self.error("empty regular expression", start)
        if len(pattern) > MAX_REGEX_LENGTH:
            raise self.error(f"regular expression longer than {MAX_REGEX_LENGTH}", start)
        return _compile_regex(pattern, lambda msg: self.error(msg, start))

    def scan_regex(self) -> str:
        text = self.text
        start = pos = self.pos
        depth = 0
        in_class = False
        class_start = 0
        while pos < len(text):
            char = text[pos]
            if char == "\\":
                pos += 2
                continue
            if in_class:
                if text.startswith("[:", pos):
                    end = text.find(":]", pos + 2)
                    if end > 0:
                        pos = end + 2
                        continue
                if char == "]" and pos > class_start:
                    in_class = False
                pos += 1
                continue
            if char == "[":
                in_class = True
                class_start = pos + 1
                if text.startswith("^", class_start):
                    class_start += 1
            elif char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            elif char in ";|" and depth == 0:
                break
            pos += 1
        self.pos = min(pos, len(text))
        return text[start : self.pos]


def _kind_class(kind: str) -> str:
    return _STRING if kind == _TIME else kind


def _combine(cls: type[And] | type[Or], terms: list[QExpr]) -> QExpr:
    if len(terms) == 1:
        return terms[0]
    flat: list[QExpr] = []
    for term in terms:
        if isinstance(term, cls):
            flat.extend(term.terms)
        else:
            flat.append(term)
    return cls(tuple(flat))


def _expand_strings(
    value: QScalar | tuple[QScalar, ...] | Range, expand: Callable[[str], str]
) -> QScalar | tuple[QScalar, ...] | Range:
    if isinstance(value, tuple):
        return tuple(expand(v) if isinstance(v, str) else v for v in value)
    if isinstance(value, str):
        return expand(value)
    return value


def _translate_posix_classes(pattern: str, fail: Callable[[str], BadRequestData]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in _POSIX_CLASSES:
            raise fail(f"unknown POSIX character class [:{name}:]")
        return _POSIX_CLASSES[name]

    return _POSIX_CLASS_RE.sub(replace, pattern)


def _compile_regex(pattern: str, fail: Callable[[str], BadRequestData]) -> re.Pattern[str]:
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
        check_pattern(pattern)  # the engine that runs it (see ngsild.patterns)
    except BadRequestData as err:
        raise fail(err.detail) from None
    return compiled


def parse_query_q(
    text: str, expand: Callable[[str], str], *, expand_values: Iterable[str] = ()
) -> QExpr:
    """Parse an NGSI-LD ``q`` string (already URL-decoded) into a ``QExpr``.

    ``expand`` maps attribute names (terms or compact IRIs) to IRIs. ``expand_values``
    lists attribute names (the ``expandValues`` parameter) whose string values in
    ``==``/``!=`` terms are expanded with ``expand`` too (for VocabProperty values,
    which are stored expanded). Raises ``BadRequestData`` naming the offset of the
    problem, ``TooComplexQuery`` beyond the module limits and
    ``OperationNotSupported`` for linked-entity paths.
    """
    if not isinstance(text, str) or not text.strip():
        raise BadRequestData("Invalid q: the query is empty")
    if len(text) > MAX_Q_LENGTH:
        raise TooComplexQuery(f"q is longer than {MAX_Q_LENGTH} characters")
    expanded_values = {expand(name) for name in expand_values}
    return merge_bounds(_Parser(text, expand, expanded_values).parse())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _literal_class(value: Any) -> str | None:
    if isinstance(value, DateTimeValue):
        return "datetime"
    if isinstance(value, bool):
        return None
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def merge_bounds(expr: QExpr) -> QExpr:
    """Fold ``p>=x;p<=y`` (same path, same kind of literal) into one ``bounds`` comparison."""
    if isinstance(expr, Or):
        return Or(tuple(merge_bounds(t) for t in expr.terms))
    if not isinstance(expr, And):
        return expr
    terms = [merge_bounds(t) for t in expr.terms]
    groups: dict[tuple[AttrPath, str], list[int]] = {}
    for i, term in enumerate(terms):
        if isinstance(term, Comparison) and term.op in (">", ">=", "<", "<="):
            kind = _literal_class(term.value)
            if kind is not None:
                groups.setdefault((term.path, kind), []).append(i)
    merged: dict[int, QExpr] = {}
    dropped: set[int] = set()
    for indexes in groups.values():
        lows = [i for i in indexes if terms[i].op in (">", ">=")]  # type: ignore[union-attr]
        highs = [i for i in indexes if terms[i].op in ("<", "<=")]  # type: ignore[union-attr]
        if len(lows) != 1 or len(highs) != 1:
            continue
        low, high = terms[lows[0]], terms[highs[0]]
        assert isinstance(low, Comparison) and isinstance(high, Comparison)
        bounds = Bounds(low.value, low.op, high.value, high.op)  # type: ignore[arg-type]
        first, second = sorted((lows[0], highs[0]))
        merged[first] = Comparison(low.path, "bounds", bounds)
        dropped.add(second)
    result = [merged.get(i, t) for i, t in enumerate(terms) if i not in dropped]
    return result[0] if len(result) == 1 else And(tuple(result))


def iter_comparisons(expr: QExpr) -> Iterator[Comparison]:
    """Every ``Comparison`` of an expression, left to right."""
    if isinstance(expr, Comparison):
        yield expr
        return
    for term in expr.terms:
        yield from iter_comparisons(term)
