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
from collections.abc import Callable, Iterable

from urbanstack.ngsild.errors import BadRequestData, OperationNotSupported, TooComplexQuery
from urbanstack.ngsild.grammar import BooleanParser
from urbanstack.ngsild.patterns import compile_q_pattern
from urbanstack.ngsild.q_ast import (
    CORE_MEMBERS,
    ENTITY_MEMBERS,
    OPERATORS,
    VALUE_MEMBERS,
    And,
    AttrPath,
    Bounds,
    Comparison,
    DateTimeValue,
    Or,
    QExpr,
    QScalar,
    Range,
    iter_comparisons,
    merge_bounds,
    normalize_datetime,
    stored_datetime,
)

__all__ = [  # the parser, and the tree it builds (defined in q_ast)
    "CORE_MEMBERS",
    "ENTITY_MEMBERS",
    "OPERATORS",
    "VALUE_MEMBERS",
    "And",
    "AttrPath",
    "Bounds",
    "Comparison",
    "DateTimeValue",
    "Or",
    "QExpr",
    "QScalar",
    "Range",
    "iter_comparisons",
    "merge_bounds",
    "normalize_datetime",
    "parse_query_q",
    "stored_datetime",
]

MAX_TERMS = 64
MAX_DEPTH = 16
MAX_VALUES = 100
MAX_Q_LENGTH = 8192
MAX_REGEX_LENGTH = 1024

# --- parser ------------------------------------------------------------------------------

_TIME_RE = re.compile(
    r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})(?:[.,][0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_WORD_RE = re.compile(r"[^\W\d][\w.\-]*")
_VALUE_END = frozenset(';|(),"')

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
        return compile_q_pattern(pattern, lambda msg: self.error(msg, start))

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
