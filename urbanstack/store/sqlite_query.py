"""Compiling an :class:`EntityQuery` into one SQLite statement over the index tables.

The semantics are those of :func:`urbanstack.ngsild.q.match_q` (the reference
evaluator); the shared store tests check that both agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.q import (
    ENTITY_MEMBERS,
    And,
    AttrPath,
    Comparison,
    DateTimeValue,
    Or,
    QExpr,
    Range,
)
from urbanstack.ngsild.query import EntityQuery
from urbanstack.ngsild.scope import (
    ScopeAnd,
    ScopeExpr,
    ScopePattern,
    scope_pattern_regex,
)
from urbanstack.ngsild.typeq import TypeAnd, TypeExpr, TypeName, TypeOr
from urbanstack.store.sqlite_index import DT, KEY, REL, SUB, sql_value

PathLookup = Callable[[str], int | None]  # path -> pid (None when never stored)


@dataclass
class CompiledQuery:
    """SQL text and parameters; ``geo_slot`` names the predicate the UDFs must use."""

    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    join_params: list[Any] = field(default_factory=list)
    near: bool = False
    impossible: bool = False


def path_text(path: AttrPath) -> str:
    """The index path of a q attribute path."""
    text = path.attr
    for sub in path.subs:
        text += SUB + sub
    for key in path.keys:
        text += KEY + key
    return text


def _literal(value: Any) -> Any:
    if isinstance(value, DateTimeValue):
        return value.text
    return sql_value(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _kind_test(value: Any, *, ordering: bool) -> str:
    """Which leaf rows a literal may be compared with (see sqlite_index kinds)."""
    if isinstance(value, DateTimeValue):
        return f"av.kind = '{DT}'"
    if isinstance(value, str):
        return "av.kind IS NULL" if ordering else f"(av.kind IS NULL OR av.kind = '{REL}')"
    return "av.kind IS NULL"


def _value_condition(op: str, value: Any, params: list[Any]) -> str:
    """A condition on the index row ``av`` for one comparison (without the path test)."""
    if isinstance(value, Range):
        params += [_literal(value.low), _literal(value.high)]
        return f"av.val BETWEEN ? AND ? AND {_kind_test(value.low, ordering=True)}"
    if isinstance(value, tuple):
        groups: dict[str, list[Any]] = {}
        for item in value:
            groups.setdefault(_kind_test(item, ordering=False), []).append(_literal(item))
        parts = []
        for kind_test, items in groups.items():
            params += items
            parts.append(f"(av.val IN ({','.join('?' * len(items))}) AND {kind_test})")
        return "(" + " OR ".join(parts) + ")"
    if isinstance(value, re.Pattern):
        pattern = value.pattern
        if value.flags & re.IGNORECASE and not pattern.startswith("(?i)"):
            pattern = "(?i)" + pattern
        params.append(pattern)
        return "av.kind IS NULL AND typeof(av.val) = 'text' AND regexp(?, av.val)"
    params.append(_literal(value))
    if op == "==":
        return f"av.val = ? AND {_kind_test(value, ordering=False)}"
    kind_test = _kind_test(value, ordering=True)
    if op in (">", ">="):
        # numbers sort before all text in SQLite: bound numeric scans below ''
        bound = " AND av.val < ''" if _is_number(value) else ""
        return f"av.val {op} ?{bound} AND {kind_test}"
    if op in ("<", "<="):
        bound = "" if _is_number(value) else " AND av.val >= ''"
        return f"av.val {op} ?{bound} AND {kind_test}"
    raise BadRequestData(f"Unsupported q operator {op!r}")


def _entity_member_sql(term: Comparison, params: list[Any]) -> str:
    column = "e.created_at" if term.path.attr == "createdAt" else "e.modified_at"
    if term.op == "exists":
        return "1"
    values = term.value if isinstance(term.value, tuple) else (term.value,)
    if not all(isinstance(v, DateTimeValue) for v in values) and not isinstance(term.value, Range):
        return "0" if term.op != "!=" else "1"
    if isinstance(term.value, Range):
        params += [_literal(term.value.low), _literal(term.value.high)]
        return f"{column} BETWEEN ? AND ?"
    params += [_literal(v) for v in values]
    marks = ",".join("?" * len(values))
    if term.op == "==":
        return f"{column} IN ({marks})"
    if term.op == "!=":
        return f"{column} NOT IN ({marks})"
    return f"{column} {term.op} ?"


def _comparison_sql(term: Comparison, lookup: PathLookup, params: list[Any]) -> str:
    path = term.path
    if path.attr in ENTITY_MEMBERS and not path.subs and not path.keys:
        return _entity_member_sql(term, params)
    if path.keys == ("*",):
        path = AttrPath(path.attr, path.subs)
    pid = lookup(path_text(path))
    if pid is None:
        return "0"  # no entity ever had this path
    base = f"SELECT 1 FROM attr_values av WHERE av.rid = e.rid AND av.pid = {pid}"
    if term.op == "exists":
        if path.keys:
            return f"EXISTS ({base})"
        return f"EXISTS ({base} AND av.val IS NULL)"
    if term.op == "!=":
        cond = _value_condition("==", term.value, params)
        return f"(EXISTS ({base}) AND NOT EXISTS ({base} AND {cond}))"
    if term.op == "!~=":
        cond = _value_condition("~=", term.value, params)
        text_row = f"{base} AND av.kind IS NULL AND typeof(av.val) = 'text'"
        return f"(EXISTS ({text_row}) AND NOT EXISTS ({base} AND {cond}))"
    cond = _value_condition(term.op, term.value, params)
    return f"EXISTS ({base} AND {cond})"


def compile_q(expr: QExpr, lookup: PathLookup, params: list[Any]) -> str:
    """SQL for a q expression, correlated on ``e.rid``."""
    if isinstance(expr, Comparison):
        return _comparison_sql(expr, lookup, params)
    if isinstance(expr, And):
        return "(" + " AND ".join(compile_q(t, lookup, params) for t in expr.terms) + ")"
    if isinstance(expr, Or):
        return "(" + " OR ".join(compile_q(t, lookup, params) for t in expr.terms) + ")"
    raise TypeError(f"not a q expression: {expr!r}")


def _flat_type_names(expr: TypeExpr) -> list[str] | None:
    if isinstance(expr, TypeName):
        return [expr.iri]
    if isinstance(expr, TypeOr):
        names: list[str] = []
        for term in expr.terms:
            sub = _flat_type_names(term)
            if sub is None:
                return None
            names += sub
        return names
    return None


def compile_types(expr: TypeExpr, params: list[Any]) -> str:
    """SQL for a type expression, correlated on ``e.rid``."""
    flat = _flat_type_names(expr)
    if flat is not None:
        params += flat
        marks = ",".join("?" * len(flat))
        return f"e.rid IN (SELECT t.rid FROM entity_types t WHERE t.type IN ({marks}))"
    if isinstance(expr, TypeAnd):
        return "(" + " AND ".join(compile_types(t, params) for t in expr.terms) + ")"
    if isinstance(expr, TypeOr):
        return "(" + " OR ".join(compile_types(t, params) for t in expr.terms) + ")"
    raise TypeError(f"not a type expression: {expr!r}")


def _scope_pattern_sql(pattern: ScopePattern, params: list[Any]) -> str:
    if "+" in pattern.levels:
        params.append(scope_pattern_regex(pattern))
        test = "regexp(?, s.scope)"
    elif not pattern.levels:
        test = "1"  # the lone /#: any scope
    else:
        path = "/" + "/".join(pattern.levels)
        if pattern.descendants:
            # the scope itself, or anything below it ('0' follows '/' in code-point order)
            params += [path, path + "/", path + "0"]
            test = "(s.scope = ? OR (s.scope >= ? AND s.scope < ?))"
        else:
            params.append(path)
            test = "s.scope = ?"
    return f"EXISTS (SELECT 1 FROM entity_scopes s WHERE s.rid = e.rid AND {test})"


def compile_scope(expr: ScopeExpr, params: list[Any]) -> str:
    """SQL for a scopeQ expression over the entity's scope rows, correlated on ``e.rid``."""
    if isinstance(expr, ScopePattern):
        return _scope_pattern_sql(expr, params)
    joiner = " AND " if isinstance(expr, ScopeAnd) else " OR "
    return "(" + joiner.join(compile_scope(t, params) for t in expr.terms) + ")"


def _selector_sql(
    ids: tuple[str, ...], id_pattern: str | None, types: TypeExpr | None, params: list[Any]
) -> list[str]:
    where = []
    if ids:
        where.append(f"e.id IN ({','.join('?' * len(ids))})")
        params += list(ids)
    if id_pattern:
        where.append("regexp(?, e.id)")
        params.append(id_pattern)
    if types is not None:
        where.append(compile_types(types, params))
    return where


def compile_query(
    query: EntityQuery,
    lookup: PathLookup,
    geo_slot: int | None = None,
    geo_bbox: tuple[float, float, float, float] | None = None,
) -> CompiledQuery:
    """The WHERE clauses (and geo join) selecting the entities of ``query``."""
    out = CompiledQuery()
    out.where += _selector_sql(query.ids, query.id_pattern, query.types, out.params)
    if query.selectors:
        alternatives = []
        for sel in query.selectors:
            parts = _selector_sql(sel.ids, sel.id_pattern, sel.types, out.params)
            alternatives.append("(" + (" AND ".join(parts) or "1") + ")")
        out.where.append("(" + " OR ".join(alternatives) + ")")
    if query.attrs:
        pids = [p for p in (lookup(a) for a in query.attrs) if p is not None]
        if not pids:
            out.impossible = True
        else:
            out.where.append(
                "EXISTS (SELECT 1 FROM attr_values av WHERE av.rid = e.rid AND av.pid IN "
                f"({','.join(str(p) for p in pids)}) AND av.val IS NULL)"
            )
    if query.q is not None:
        out.where.append(compile_q(query.q, lookup, out.params))
    if query.scope_q is not None:
        out.where.append(compile_scope(query.scope_q, out.params))
    if query.geo is not None and geo_slot is not None:
        gpid = lookup(query.geo.geoproperty)
        if gpid is None:
            out.impossible = True
            return out
        out.near = query.geo.georel == "near"
        out.joins.append(f"JOIN geo g ON g.rid = e.rid AND g.pid = {gpid}")
        if geo_bbox is not None:
            minx, miny, maxx, maxy = geo_bbox
            out.joins.append(
                "JOIN geo_rtree r ON r.gid = g.gid AND r.maxx >= ? AND r.minx <= ? "
                "AND r.maxy >= ? AND r.miny <= ?"
            )
            out.join_params += [minx, maxx, miny, maxy]
        out.where.append("geo_match(?, g.wkb)")
        out.params.append(geo_slot)
    return out
