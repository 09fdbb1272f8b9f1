"""The ``q`` language's syntax tree and the value forms it shares with the stores.

:mod:`urbanstack.ngsild.q` parses text into these nodes; ``q_match`` and the stores' SQL
compilers read them. Datetime literals are normalised here so that every evaluator compares
the same text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.model import VALUE_MEMBER

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


# --- tree utilities ----------------------------------------------------------------------


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
