"""Evaluating a parsed ``q`` expression against one stored entity (clause 4.9).

This is the reference semantics: subscriptions use it on single changes, and the
stores' SQL compilers are tested against it on random data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from urbanstack.ngsild.patterns import pattern_search
from urbanstack.ngsild.q import (
    CORE_MEMBERS,
    ENTITY_MEMBERS,
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
    stored_datetime,
)

_RELATIONSHIP_TYPES = frozenset({"Relationship", "ListRelationship"})


def match_q(expr: QExpr, entity: dict[str, Any]) -> bool:
    """Whether a stored entity document satisfies a parsed ``q`` expression.

    Targets: the path selects every instance of the attribute (any ``datasetId``);
    ``subs`` descend into ``instance["subs"][iri]``; a core member reads that instance's
    member (``observedAt`` ...); the top-level ``createdAt``/``modifiedAt`` read the
    entity's. Every selected instance is a target (it exists) and its value is its
    ``value`` (Property, GeoProperty; a ``{"@type": "DateTime", "@value": ...}``
    counts as a datetime, other typed values are plain dicts), ``object``
    (Relationship), the texts of every language of ``languageMap``
    (LanguageProperty; ``keys == (lang,)`` keeps one language, ``("*",)`` all of
    them), ``vocab``, ``valueList``, ``objectList`` or ``json``. ``keys`` descend
    into dict values (through lists of dicts too, like a lax JSON path); a missing
    key or a ``null`` member means the target does not exist. A list value is
    compared element by element.

    Operators: ``exists`` holds when at least one target exists. ``==`` and the
    ordering operators hold when some element of some target satisfies them (a value
    list: equals any listed value; a range: lies within, bounds included). ``!=``
    holds when a target exists and no element equals any listed value / lies in the
    range (an element of another type counts as unequal, as clause 4.9 says).
    Numbers compare with numbers, strings with strings (code point order),
    datetimes with datetimes (a stored string that is a valid datetime, see
    ``normalize_datetime``, with a time part, compares with a ``DateTimeValue``),
    booleans with ``==`` and ``!=`` only; any other pairing is no match. Relationship and
    ListRelationship targets only take ``==`` and ``!=`` (clause 4.9): any other
    operator does not match them. ``~=`` holds when a string element contains a
    match (``re.search``); ``!~=`` holds when the target has at least one string
    element and no string element contains a match (a non-string target does not
    match either).
    """
    if isinstance(expr, And):
        return all(match_q(term, entity) for term in expr.terms)
    if isinstance(expr, Or):
        return any(match_q(term, entity) for term in expr.terms)
    return _match_comparison(expr, entity)


def _targets(path: AttrPath, entity: dict[str, Any]) -> list[tuple[Any, bool]]:
    """(target value, is a relationship) for every existing target of a path."""
    if path.attr in ENTITY_MEMBERS and not path.subs and not path.keys:
        value = entity.get(path.attr)
        return [] if value is None else [(value, False)]
    attrs = entity.get("attrs") or {}
    instances = attrs.get(path.attr) or []
    if isinstance(instances, dict):
        instances = [instances]
    nodes: list[dict[str, Any]] = [i for i in instances if isinstance(i, dict)]
    member: str | None = None
    for sub in path.subs:
        if sub in CORE_MEMBERS:
            member = sub
            break
        found: list[dict[str, Any]] = []
        for node in nodes:
            child = (node.get("subs") or {}).get(sub)
            if isinstance(child, dict):
                found.append(child)
            elif isinstance(child, list):
                found.extend(c for c in child if isinstance(c, dict))
        nodes = found
    out: list[tuple[Any, bool]] = []
    for node in nodes:
        if member is not None:
            if node.get(member) is not None:
                out.append((node[member], False))
            continue
        attr_type = node.get("type", "Property")
        value = node.get(VALUE_MEMBERS.get(attr_type, "value"))
        if attr_type == "LanguageProperty":
            language_map = value if isinstance(value, dict) else {}
            if not path.keys or path.keys == ("*",):
                out.append((_language_texts(language_map.values()), False))
            elif len(path.keys) == 1 and language_map.get(path.keys[0]) is not None:
                out.append((_language_texts([language_map[path.keys[0]]]), False))
            continue
        is_rel = attr_type in _RELATIONSHIP_TYPES
        if path.keys:
            out.extend((v, is_rel) for v in _descend(value, path.keys))
        else:
            out.append((value, is_rel))
    return out


def _language_texts(values: Iterable[Any]) -> list[Any]:
    """The texts of languageMap values (a value is a string or a list of strings)."""
    texts: list[Any] = []
    for value in values:
        texts.extend(value if isinstance(value, list) else [value])
    return texts


def _descend(value: Any, keys: tuple[str, ...]) -> list[Any]:
    current = [value]
    for key in keys:
        found: list[Any] = []
        for item in current:
            if isinstance(item, dict):
                if item.get(key) is not None:
                    found.append(item[key])
            elif isinstance(item, list):
                found.extend(e[key] for e in item if isinstance(e, dict) and e.get(key) is not None)
        current = found
    return current


def _elements(value: Any) -> list[Any]:
    """The compared elements of a target value: the items of a list, else the value."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if (
            isinstance(item, dict)
            and item.get("@type") == "DateTime"
            and isinstance(item.get("@value"), str)
        ):
            normalized = stored_datetime(item["@value"])
            out.append(DateTimeValue(normalized) if normalized else item)
        else:
            out.append(item)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _order_key(element: Any, literal: QScalar) -> tuple[Any, Any] | None:
    """(element, literal) as mutually comparable Python values, or None (no match)."""
    if isinstance(literal, DateTimeValue):
        if isinstance(element, DateTimeValue):
            return element.text, literal.text
        if isinstance(element, str):
            normalized = stored_datetime(element)
            return (normalized, literal.text) if normalized else None
        return None
    if isinstance(literal, bool):
        return (element, literal) if isinstance(element, bool) else None
    if _is_number(literal):
        return (element, literal) if _is_number(element) else None
    if isinstance(literal, str) and isinstance(element, str):
        return element, literal
    return None


def _equals(element: Any, literal: QScalar) -> bool:
    pair = _order_key(element, literal)
    return pair is not None and pair[0] == pair[1]


def _in_range(element: Any, bounds: Range) -> bool:
    low = _order_key(element, bounds.low)
    high = _order_key(element, bounds.high)
    if low is None or high is None or isinstance(bounds.low, bool):
        return False
    return bool(low[1] <= low[0] and high[0] <= high[1])


def _satisfies(element: Any, op: str, value: Any) -> bool:
    if op in ("==", "!="):
        if isinstance(value, Range):
            return _in_range(element, value)
        if isinstance(value, tuple):
            return any(_equals(element, v) for v in value)
        return _equals(element, value)
    pair = _order_key(element, value)
    if pair is None or isinstance(value, bool):
        return False
    left, right = pair
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def _match_comparison(term: Comparison, entity: dict[str, Any]) -> bool:
    targets = _targets(term.path, entity)
    if not targets:
        return False
    op = term.op
    if op == "exists":
        return True
    if op == "==":
        return any(_satisfies(e, op, term.value) for t, _ in targets for e in _elements(t))
    if op == "!=":
        return not any(_satisfies(e, op, term.value) for t, _ in targets for e in _elements(t))
    elements = [e for t, is_rel in targets if not is_rel for e in _elements(t)]
    if op in ("~=", "!~="):
        pattern = term.value
        assert isinstance(pattern, re.Pattern)
        strings = [e for e in elements if isinstance(e, str)]
        hit = any(pattern_search(pattern, s) for s in strings)
        return hit if op == "~=" else bool(strings) and not hit
    if op == "bounds":
        b = term.value
        assert isinstance(b, Bounds)
        return any(
            _satisfies(e, b.low_op, b.low) and _satisfies(e, b.high_op, b.high) for e in elements
        )
    return any(_satisfies(e, op, term.value) for e in elements)
