"""Compiling an :class:`EntityQuery` into one SQLite statement over the index tables.

The semantics are those of :func:`urbanstack.ngsild.q_match.match_q` (the reference
evaluator); the shared store tests check that both agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.q import (
    CORE_MEMBERS,
    ENTITY_MEMBERS,
    And,
    AttrPath,
    Bounds,
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
from urbanstack.ngsild.typeq import TypeAnd, TypeExpr, TypeOr, flat_type_names
from urbanstack.store.sqlite_index import (
    BOOL,
    DT,
    REL,
    UNINDEXED_MEMBERS,
    path_text,
    sql_value,
    typed_path,
)

PathLookup = Callable[[str], int | None]  # path -> pid (None when never stored)
#: keeps an object for the SQL functions while the statement runs; returns its slot number
SlotRegistry = Callable[[Any], int]


@dataclass
class CompiledQuery:
    """WHERE clauses and joins (each with its parameters, in text order) selecting a query's
    entities; ``near`` orders by distance, ``impossible`` means nothing can match."""

    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    #: the FROM clause before ``joins``
    source: str = "entities e"
    joins: list[str] = field(default_factory=list)
    join_params: list[Any] = field(default_factory=list)
    near: bool = False
    impossible: bool = False


def _literal(value: Any) -> Any:
    if isinstance(value, DateTimeValue):
        return value.text
    return sql_value(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


class _Pids:
    """The interned paths a comparison reads: plain, relationship and datetime values."""

    def __init__(self, path: str, lookup: PathLookup) -> None:
        self.plain = lookup(path)
        self.rel = lookup(typed_path(path, REL))
        self.dt = lookup(typed_path(path, DT))
        self.bool = lookup(typed_path(path, BOOL))

    def for_literal(self, value: Any, *, ordering: bool) -> list[int]:
        if isinstance(value, DateTimeValue):
            found = [self.dt]
        elif isinstance(value, bool):
            found = [self.bool]
        elif isinstance(value, str) and not ordering:
            found = [self.plain, self.rel]
        else:
            found = [self.plain]
        return [p for p in found if p is not None]

    def any(self) -> list[int]:
        return [p for p in (self.plain, self.rel, self.dt, self.bool) if p is not None]


def _in(pids: list[int]) -> str:
    return f"av.pid = {pids[0]}" if len(pids) == 1 else f"av.pid IN ({','.join(map(str, pids))})"


def _value_condition(op: str, value: Any, pids: _Pids, params: list[Any]) -> str:
    """A condition on the index row ``av`` for one comparison ("0" when nothing can match)."""
    if isinstance(value, Range | Bounds):
        low, high = value.low, value.high
        low_op, high_op = (
            (">=", "<=") if isinstance(value, Range) else (value.low_op, value.high_op)
        )
        targets = pids.for_literal(low, ordering=True)
        if not targets:
            return "0"
        params += [_literal(low), _literal(high)]
        return f"{_in(targets)} AND av.val {low_op} ? AND av.val {high_op} ?"
    if isinstance(value, tuple):
        groups: dict[tuple[int, ...], list[Any]] = {}
        for item in value:
            targets = tuple(pids.for_literal(item, ordering=False))
            if targets:
                groups.setdefault(targets, []).append(_literal(item))
        if not groups:
            return "0"
        parts = []
        for targets, items in groups.items():
            params += items
            parts.append(f"({_in(list(targets))} AND av.val IN ({','.join('?' * len(items))}))")
        return "(" + " OR ".join(parts) + ")"
    if isinstance(value, re.Pattern):
        if pids.plain is None:
            return "0"
        pattern = value.pattern
        if value.flags & re.IGNORECASE and not pattern.startswith("(?i)"):
            pattern = "(?i)" + pattern
        params.append(pattern)
        return f"av.pid = {pids.plain} AND av.val >= '' AND regexp(?, av.val)"
    targets = pids.for_literal(value, ordering=op != "==")
    if not targets:
        return "0"
    params.append(_literal(value))
    if op == "==":
        return f"{_in(targets)} AND av.val = ?"
    if op in (">", ">="):
        # numbers sort before all text in SQLite: bound numeric scans below ''
        bound = " AND av.val < ''" if _is_number(value) else ""
        return f"{_in(targets)} AND av.val {op} ?{bound}"
    if op in ("<", "<="):
        bound = "" if _is_number(value) else " AND av.val >= ''"
        return f"{_in(targets)} AND av.val {op} ?{bound}"
    raise BadRequestData(f"Unsupported q operator {op!r}")


def _entity_member_sql(term: Comparison, params: list[Any]) -> str:
    column = "e.created_at" if term.path.attr == "createdAt" else "e.modified_at"
    if term.op == "exists":
        return "1"
    value = term.value
    if isinstance(value, Bounds):
        params += [_literal(value.low), _literal(value.high)]
        return f"{column} {value.low_op} ? AND {column} {value.high_op} ?"
    if isinstance(value, Range):
        params += [_literal(value.low), _literal(value.high)]
        return f"{column} BETWEEN ? AND ?"
    values = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(v, DateTimeValue) for v in values):
        return "1" if term.op == "!=" else "0"
    params += [_literal(v) for v in values]
    marks = ",".join("?" * len(values))
    if term.op == "==":
        return f"{column} IN ({marks})"
    if term.op == "!=":
        return f"{column} NOT IN ({marks})"
    return f"{column} {term.op} ?"


NONE = "SELECT rid FROM entities WHERE 0"
ALL = "SELECT rid FROM entities"


def _intersect(sets: list[str]) -> str:
    return " INTERSECT ".join(f"SELECT rid FROM ({s})" for s in sets)


def _union(sets: list[str]) -> str:
    return " UNION ".join(f"SELECT rid FROM ({s})" for s in sets)


def _except(kept: str, removed: str) -> str:
    return f"SELECT rid FROM ({kept}) EXCEPT SELECT rid FROM ({removed})"


def _member(path: AttrPath) -> str | None:
    """The instance member (``observedAt`` ...) a path reads, if any."""
    return next((sub for sub in path.subs if sub in CORE_MEMBERS), None)


def _reads_member(path: AttrPath) -> bool:
    return _member(path) is not None


def _unindexed(path: AttrPath) -> bool:
    """Whether a path reads an instance member the index leaves out (see sqlite_index)."""
    return _member(path) in UNINDEXED_MEMBERS


def _document_check_sql(
    term: Comparison, lookup: PathLookup, params: list[Any], register: SlotRegistry | None
) -> str:
    """The entities having the term's attribute whose documents satisfy it: SQLite's JSON
    functions for an attribute's own ``observedAt``, ``createdAt`` or ``modifiedAt``, the
    reference evaluator (the SQL function ``q_term``) for sub-attributes and patterns."""
    attr = lookup(path_text(AttrPath(term.path.attr)))
    if attr is None:
        return NONE
    having = f"SELECT ap.rid FROM attr_presence ap WHERE ap.pid = {attr}"
    check = _member_json_sql(term, params)
    if check is None:
        if register is None:
            raise TypeError("a q term on unindexed instance members needs a slot registry")
        params.append(register(term))
        check = "q_term(?, e.doc)"
    return f"SELECT e.rid AS rid FROM entities e WHERE e.rid IN ({having}) AND {check}"


def _texts(values: tuple[Any, ...]) -> list[str] | None:
    """The literals a stored timestamp (text) can equal or be ordered against; None when
    one of them cannot (a number or a boolean never matches a timestamp)."""
    out = []
    for value in values:
        if isinstance(value, DateTimeValue):
            out.append(value.text)  # normalised as the stored times are: text order is time order
        elif isinstance(value, str):
            out.append(value)
        else:
            return None
    return out


def _member_json_sql(term: Comparison, params: list[Any]) -> str | None:
    """``attr.observedAt``/``createdAt``/``modifiedAt`` on the documents (None: not of that shape):
    some instance's member satisfies it (``!=``: some has it and none equals)."""
    path, op, value = term.path, term.op, term.value
    if len(path.subs) != 1 or path.keys or isinstance(value, re.Pattern):
        return None
    instances = f'$.attrs."{path.attr}"'
    member = f"json_extract(i.value, '$.{path.subs[0]}')"

    def some(condition: str, condition_params: list[Any]) -> str:
        params.append(instances)
        params.extend(condition_params)
        return (
            "EXISTS (SELECT 1 FROM json_each(CAST(e.doc AS TEXT), ?) i "
            f"WHERE {member} IS NOT NULL AND {condition})"
        )

    if op == "exists":
        return some("1", [])
    if op in ("==", "!="):
        if isinstance(value, Range):
            bounds = _texts((value.low, value.high))
            condition, literals = f"{member} BETWEEN ? AND ?", bounds
        else:
            literals = _texts(value if isinstance(value, tuple) else (value,))
            condition = f"{member} IN ({','.join('?' * len(literals or ()))})"
        if op == "==":
            return some(condition, literals) if literals else "0"
        present = some("1", [])
        return f"{present} AND NOT {some(condition, literals)}" if literals else present
    if op == "bounds" and isinstance(value, Bounds):
        bounds = _texts((value.low, value.high))
        if bounds is None:
            return "0"
        return some(f"{member} {value.low_op} ? AND {member} {value.high_op} ?", bounds)
    if op in (">", ">=", "<", "<="):
        literal = _texts((value,))
        return some(f"{member} {op} ?", literal) if literal else "0"
    return None


def _comparison_sql(
    term: Comparison,
    lookup: PathLookup,
    params: list[Any],
    tids: list[int] | None,
    register: SlotRegistry | None = None,
) -> str:
    path = term.path
    if path.attr in ENTITY_MEMBERS and not path.subs and not path.keys:
        return f"SELECT rid FROM entities e WHERE {_entity_member_sql(term, params)}"
    if _unindexed(path):
        return _document_check_sql(term, lookup, params, register)
    if path.keys == ("*",):
        path = AttrPath(path.attr, path.subs)
    pids = _Pids(path_text(path), lookup)
    values = "SELECT av.rid AS rid FROM attr_values av WHERE "
    if tids is not None:  # the query's types: value rows are kept per entity type
        values += f"av.tid IN ({','.join(map(str, tids))}) AND "
    if path.keys or _reads_member(path):  # no presence rows: any value row will do
        present = f"{values}{_in(pids.any())}" if pids.any() else NONE
    elif pids.plain is None:
        present = NONE
    else:
        present = f"SELECT ap.rid AS rid FROM attr_presence ap WHERE ap.pid = {pids.plain}"
    if term.op == "exists":
        return present
    if term.op in ("!=", "!~="):
        if term.op == "!~=":
            if pids.plain is None:
                return NONE
            present = f"{values}av.pid = {pids.plain} AND av.val >= ''"
        positive = "==" if term.op == "!=" else "~="
        cond = _value_condition(positive, term.value, pids, params)
        return present if cond == "0" else _except(present, f"{values}{cond}")
    cond = _value_condition(term.op, term.value, pids, params)
    return NONE if cond == "0" else f"{values}{cond}"


def compile_q(
    expr: QExpr,
    lookup: PathLookup,
    params: list[Any],
    tids: list[int] | None = None,
    register: SlotRegistry | None = None,
) -> str:
    """The set of entity rids (a SELECT of ``rid``) matching a q expression; with ``tids``
    (the interned types the query asks for) value lookups stay within those types; terms
    the index cannot answer are handed to ``register`` for the ``q_term`` SQL function."""
    if isinstance(expr, Comparison):
        return _comparison_sql(expr, lookup, params, tids, register)
    if isinstance(expr, And):
        return _intersect([compile_q(t, lookup, params, tids, register) for t in expr.terms])
    if isinstance(expr, Or):
        return _union([compile_q(t, lookup, params, tids, register) for t in expr.terms])
    raise TypeError(f"not a q expression: {expr!r}")


def compile_types(expr: TypeExpr, params: list[Any]) -> str:
    """The set of entity rids whose types match a type expression."""
    flat = flat_type_names(expr)
    if flat is not None:
        params += flat
        marks = ",".join("?" * len(flat))
        return f"SELECT t.rid AS rid FROM entity_types t WHERE t.type IN ({marks})"
    if isinstance(expr, TypeAnd):
        return _intersect([compile_types(t, params) for t in expr.terms])
    if isinstance(expr, TypeOr):
        return _union([compile_types(t, params) for t in expr.terms])
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
    return f"SELECT s.rid AS rid FROM entity_scopes s WHERE {test}"


def compile_scope(expr: ScopeExpr, params: list[Any]) -> str:
    """The set of entity rids whose scopes match a scopeQ expression."""
    if isinstance(expr, ScopePattern):
        return _scope_pattern_sql(expr, params)
    terms = [compile_scope(t, params) for t in expr.terms]
    return _intersect(terms) if isinstance(expr, ScopeAnd) else _union(terms)


def _selector_sql(
    ids: tuple[str, ...], id_pattern: str | None, types: TypeExpr | None, params: list[Any]
) -> list[str]:
    sets = []
    if ids:
        sets.append(f"SELECT rid FROM entities WHERE id IN ({','.join('?' * len(ids))})")
        params += list(ids)
    if id_pattern:
        sets.append("SELECT rid FROM entities WHERE regexp(?, id)")
        params.append(id_pattern)
    if types is not None:
        sets.append(compile_types(types, params))
    return sets


def _type_check(expr: TypeExpr, params: list[Any]) -> str | None:
    """A per-entity check for a plain list of types (cheaper than a set when another
    filter drives the query); None for expressions that need the set algebra."""
    flat = flat_type_names(expr)
    if flat is None:
        return None
    params += flat
    marks = ",".join("?" * len(flat))
    return f"EXISTS (SELECT 1 FROM entity_types t WHERE t.rid = d.rid AND t.type IN ({marks}))"


def compile_query(
    query: EntityQuery,
    lookup: PathLookup,
    geo_slot: int | None = None,
    geo_bbox: tuple[float, float, float, float] | None = None,
    register: SlotRegistry | None = None,
) -> CompiledQuery:
    """The rid set (index-only set algebra), checks and geo join selecting ``query``'s entities.

    Selective filters (ids, idPattern, q, scopeQ) become sets of entity rids computed
    from the index tables alone and combined with INTERSECT / UNION / EXCEPT; broad ones
    (a list of types, attrs) are then checked per candidate, or drive the query when
    nothing else does. Entity documents are read only for the rids of the page.
    """
    out = CompiledQuery()
    set_params: list[Any] = []
    check_params: list[Any] = []
    sets = _selector_sql(query.ids, query.id_pattern, None, set_params)
    if query.selectors:
        alternatives = []
        for sel in query.selectors:
            parts = _selector_sql(sel.ids, sel.id_pattern, sel.types, set_params)
            alternatives.append(_intersect(parts) if parts else ALL)
        sets.append(_union(alternatives))
    if query.q is not None:
        flat = flat_type_names(query.types) if query.types is not None else None
        tids = None if flat is None else [t for t in map(lookup, flat) if t is not None]
        sets.append(compile_q(query.q, lookup, set_params, tids, register))
    if query.scope_q is not None:
        sets.append(compile_scope(query.scope_q, set_params))
    checks: list[str] = []
    if query.types is not None:
        check = _type_check(query.types, check_params) if sets else None
        if check is None:
            sets.append(compile_types(query.types, set_params))
        else:
            checks.append(check)
    if query.attrs:
        pids = [p for p in (lookup(a) for a in query.attrs) if p is not None]
        if not pids:
            out.impossible = True
            return out
        marks = ",".join(str(p) for p in pids)
        if sets:
            checks.append(
                "EXISTS (SELECT 1 FROM attr_presence ap WHERE ap.rid = d.rid "
                f"AND ap.pid IN ({marks}))"
            )
        else:
            sets.append(f"SELECT ap.rid AS rid FROM attr_presence ap WHERE ap.pid IN ({marks})")
    if sets:
        driver = sets[0] if len(sets) == 1 else _intersect(sets)
        if checks:
            # checked on the candidate rids, before any entity row is read
            driver = f"SELECT d.rid FROM ({driver}) AS d WHERE {' AND '.join(checks)}"
        out.where.append(f"e.rid IN ({driver})")
    out.params += set_params + check_params
    if query.geo is not None and geo_slot is not None:
        gpid = lookup(query.geo.geoproperty)
        if gpid is None:
            out.impossible = True
            return out
        out.near = query.geo.georel == "near"
        if geo_bbox is not None:
            # the R*Tree first (CROSS JOIN fixes the order): a few shapes in the box, then
            # their entities, rather than every entity of the type, then its shape
            minx, miny, maxx, maxy = geo_bbox
            out.source = (
                f"geo_rtree r CROSS JOIN geo g ON g.gid = r.gid AND g.pid = {gpid} "
                "AND r.maxx >= ? AND r.minx <= ? AND r.maxy >= ? AND r.miny <= ? "
                "CROSS JOIN entities e ON e.rid = g.rid"
            )
            out.join_params += [minx, maxx, miny, maxy]
        else:
            out.joins.append(f"JOIN geo g ON g.rid = e.rid AND g.pid = {gpid}")
        out.where.append("geo_match(?, g.wkb)")
        out.params.append(geo_slot)
    return out
