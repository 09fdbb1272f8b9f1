"""Compiling an :class:`EntityQuery` into one PostgreSQL statement.

Every filter becomes a boolean condition on the entity row ``e``: ``q`` terms on the index
document ``e.ix`` (GIN ``jsonb_path_ops``: equality is a containment lookup, orderings a
JSON path over one key's values), types and scopes on their array columns (GIN), geo
relations in PostGIS against ``entity_geo`` (GiST). The semantics are those of
:func:`urbanstack.ngsild.q_match.match_q`, as for the SQLite store; the shared store
tests check both against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.geo import GeoQuery
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
from urbanstack.ngsild.scope import ScopeAnd, ScopeExpr, ScopePattern, scope_pattern_regex
from urbanstack.ngsild.typeq import TypeAnd, TypeExpr, TypeOr, flat_type_names
from urbanstack.store.postgres_index import (
    BOOL,
    DT,
    PRESENT,
    REL,
    path_text,
    typed_path,
)

FALSE = "FALSE"
_PLACEHOLDER = re.compile(r"\$(\d+)")
TRUE = "TRUE"


class Params:
    """Positional parameters of one statement: :meth:`add` returns the ``$n`` placeholder."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{'::' + cast if cast else ''}"

    def bind(self, sql: str) -> tuple[str, list[Any]]:
        """``sql`` renumbered to the parameters it uses, and their values (a parameter
        PostgreSQL never sees has no type it can infer)."""
        used: dict[int, int] = {}

        def renumber(match: re.Match[str]) -> str:
            number = int(match.group(1))
            return f"${used.setdefault(number, len(used) + 1)}"

        text = _PLACEHOLDER.sub(renumber, sql)
        return text, [self.values[n - 1] for n in used]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _literal(value: Any) -> Any:
    return value.text if isinstance(value, DateTimeValue) else value


class _Keys:
    """The index keys a comparison reads: plain, relationship, datetime and boolean values."""

    def __init__(self, path: str) -> None:
        self.plain = path
        self.rel = typed_path(path, REL)
        self.dt = typed_path(path, DT)
        self.bool = typed_path(path, BOOL)

    def for_literal(self, value: Any, *, ordering: bool) -> list[str]:
        if isinstance(value, DateTimeValue):
            return [self.dt]
        if isinstance(value, bool):
            return [self.bool]
        if isinstance(value, str) and not ordering:
            return [self.plain, self.rel]
        return [self.plain]

    def all(self) -> list[str]:
        return [self.plain, self.rel, self.dt, self.bool]


def _any(parts: list[str]) -> str:
    parts = [p for p in parts if p != FALSE]
    if not parts:
        return FALSE
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _all(parts: list[str]) -> str:
    if FALSE in parts:
        return FALSE
    parts = [p for p in parts if p != TRUE]
    if not parts:
        return TRUE
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def _contains(key: str, value: Any, params: Params) -> str:
    return f"e.ix @> {params.add(_json({key: [value]}), 'jsonb')}"


_JSONPATH_OPS = {">": ">", ">=": ">=", "<": "<", "<=": "<="}


def _ordering(key: str, condition: str, variables: dict[str, Any], params: Params) -> str:
    return (
        f"jsonb_path_exists(e.ix -> {params.add(key, 'text')}, "
        f"{params.add('$[*] ? (' + condition + ')', 'jsonpath')}, "
        f"{params.add(_json(variables), 'jsonb')})"
    )


def _regex(pattern: re.Pattern[str]) -> str:
    text = pattern.pattern
    if pattern.flags & re.IGNORECASE and not text.startswith("(?i)"):
        text = "(?i)" + text
    return text


def _string_matches(key: str, pattern: str, params: Params) -> str:
    return (
        f"EXISTS (SELECT 1 FROM jsonb_array_elements(e.ix -> {params.add(key, 'text')}) v "
        f"WHERE jsonb_typeof(v) = 'string' AND (v #>> '{{}}') ~ {params.add(pattern, 'text')})"
    )


def _value_condition(op: str, value: Any, keys: _Keys, params: Params) -> str:
    """A condition on ``e`` for one comparison (FALSE when nothing can match)."""
    if isinstance(value, Range | Bounds):
        low_op, high_op = (
            (">=", "<=") if isinstance(value, Range) else (value.low_op, value.high_op)
        )
        targets = keys.for_literal(value.low, ordering=True)
        condition = f"@ {_JSONPATH_OPS[low_op]} $low && @ {_JSONPATH_OPS[high_op]} $high"
        variables = {"low": _literal(value.low), "high": _literal(value.high)}
        return _any([_ordering(t, condition, variables, params) for t in targets])
    if isinstance(value, tuple):
        return _any(
            [
                _contains(target, _literal(item), params)
                for item in value
                for target in keys.for_literal(item, ordering=False)
            ]
        )
    if isinstance(value, re.Pattern):
        return _string_matches(keys.plain, _regex(value), params)
    if op == "==":
        targets = keys.for_literal(value, ordering=False)
        return _any([_contains(t, _literal(value), params) for t in targets])
    if op in _JSONPATH_OPS:
        targets = keys.for_literal(value, ordering=True)
        variables = {"v": _literal(value)}
        return _any([_ordering(t, f"@ {op} $v", variables, params) for t in targets])
    raise BadRequestData(f"Unsupported q operator {op!r}")


def _entity_member_sql(term: Comparison, params: Params) -> str:
    column = "e.created_at" if term.path.attr == "createdAt" else "e.modified_at"
    if term.op == "exists":
        return TRUE
    value = term.value
    if isinstance(value, Bounds):
        low, high = (
            params.add(_literal(value.low), "text"),
            params.add(_literal(value.high), "text"),
        )
        return f"({column} {value.low_op} {low} AND {column} {value.high_op} {high})"
    if isinstance(value, Range):
        low, high = (
            params.add(_literal(value.low), "text"),
            params.add(_literal(value.high), "text"),
        )
        return f"({column} BETWEEN {low} AND {high})"
    values = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(v, DateTimeValue) for v in values):
        return TRUE if term.op == "!=" else FALSE
    listed = params.add([_literal(v) for v in values], "text[]")
    if term.op == "==":
        return f"{column} = ANY({listed})"
    if term.op == "!=":
        return f"{column} <> ALL({listed})"
    return f"{column} {term.op} {params.add(_literal(values[0]), 'text')}"


def _comparison_sql(term: Comparison, params: Params) -> str:
    path = term.path
    if path.attr in ENTITY_MEMBERS and not path.subs and not path.keys:
        return _entity_member_sql(term, params)
    if path.keys == ("*",):
        path = AttrPath(path.attr, path.subs)
    keys = _Keys(path_text(path))

    def present() -> str:
        if path.keys or any(sub in CORE_MEMBERS for sub in path.subs):  # values only
            return _any([f"e.ix ? {params.add(k, 'text')}" for k in keys.all()])
        return _contains(PRESENT, keys.plain, params)

    if term.op == "exists":
        return present()
    if term.op in ("!=", "!~="):
        positive = "==" if term.op == "!=" else "~="
        condition = _value_condition(positive, term.value, keys, params)
        if term.op == "!~=":
            exists = _string_matches(keys.plain, "", params)
        else:
            exists = present()
        return exists if condition == FALSE else f"({exists} AND NOT {condition})"
    return _value_condition(term.op, term.value, keys, params)


def compile_q(expr: QExpr, params: Params) -> str:
    """A condition on the entity row ``e`` matching a q expression."""
    if isinstance(expr, Comparison):
        return _comparison_sql(expr, params)
    if isinstance(expr, And):
        return _all([compile_q(t, params) for t in expr.terms])
    if isinstance(expr, Or):
        return _any([compile_q(t, params) for t in expr.terms])
    raise TypeError(f"not a q expression: {expr!r}")


def compile_types(expr: TypeExpr, params: Params) -> str:
    """A condition on ``e`` (GIN on ``e.types``) matching a type expression."""
    flat = flat_type_names(expr)
    if flat is not None:
        return f"e.types && {params.add(flat, 'text[]')}"
    if isinstance(expr, TypeAnd):
        return _all([compile_types(t, params) for t in expr.terms])
    if isinstance(expr, TypeOr):
        return _any([compile_types(t, params) for t in expr.terms])
    raise TypeError(f"not a type expression: {expr!r}")


def _scope_pattern_sql(pattern: ScopePattern, params: Params) -> str:
    if "+" in pattern.levels:
        test = f"s ~ {params.add(scope_pattern_regex(pattern), 'text')}"
    elif not pattern.levels:
        return "cardinality(e.scopes) > 0"  # the lone /#: any scope
    else:
        path = "/" + "/".join(pattern.levels)
        if not pattern.descendants:
            return f"e.scopes @> {params.add([path], 'text[]')}"
        test = f"(s = {params.add(path)} OR starts_with(s, {params.add(path + '/')}))"
    return f"EXISTS (SELECT 1 FROM unnest(e.scopes) s WHERE {test})"


def compile_scope(expr: ScopeExpr, params: Params) -> str:
    """A condition on ``e`` matching a scopeQ expression."""
    if isinstance(expr, ScopePattern):
        return _scope_pattern_sql(expr, params)
    terms = [compile_scope(t, params) for t in expr.terms]
    return _all(terms) if isinstance(expr, ScopeAnd) else _any(terms)


def _selector_sql(
    ids: tuple[str, ...], id_pattern: str | None, types: TypeExpr | None, params: Params
) -> list[str]:
    parts = []
    if ids:
        parts.append(f"e.id = ANY({params.add(list(ids), 'text[]')})")
    if id_pattern:
        parts.append(f"e.id ~ {params.add(id_pattern, 'text')}")
    if types is not None:
        parts.append(compile_types(types, params))
    return parts


#: candidate REL query, as PostGIS predicates (geometry, lon/lat plane, as shapely)
GEO_RELATIONS = {
    "within": "ST_Within",
    "contains": "ST_Contains",
    "intersects": "ST_Intersects",
    "disjoint": "ST_Disjoint",
    "overlaps": "ST_Overlaps",
    "equals": "ST_Equals",
}


@dataclass
class CompiledQuery:
    """The WHERE condition on ``e`` and, for ``near``, the geo hits driving the query."""

    where: str
    params: Params
    near: str | None = None  # a SELECT of (rid, d): matching entities and their distance
    joins: list[str] = field(default_factory=list)


def _geo_sql(geo: GeoQuery, schema: str, params: Params) -> tuple[str | None, str | None]:
    """(near hits SELECT, or a condition on ``e``) for a geo-query, computed by PostGIS."""
    attr = params.add(geo.geoproperty, "text")
    if geo.georel == "near":
        lon, lat = geo.geometry["coordinates"][:2]
        point = (
            f"ST_SetSRID(ST_MakePoint({params.add(float(lon), 'float8')}, "
            f"{params.add(float(lat), 'float8')}), 4326)::geography"
        )
        distance = f"ST_Distance(g.geom::geography, {point}, false)"
        tests = [f"g.attr = {attr}"]
        if geo.max_distance is not None:
            limit = params.add(float(geo.max_distance), "float8")
            # the sphere is the one of ngsild.geo (mean radius): inclusive, as there
            tests.append(f"ST_DWithin(g.geom::geography, {point}, {limit}, false)")
        if geo.min_distance is not None:
            tests.append(f"{distance} >= {params.add(float(geo.min_distance), 'float8')}")
        hits = (
            f"SELECT g.rid, min({distance}) AS d FROM {schema}.entity_geo g "
            f"WHERE {' AND '.join(tests)} GROUP BY g.rid"
        )
        return hits, None
    shape = f"ST_Force2D(ST_GeomFromGeoJSON({params.add(_json(geo.geometry), 'text')}))"
    relation = GEO_RELATIONS[geo.georel]
    return None, (
        f"e.rid IN (SELECT g.rid FROM {schema}.entity_geo g "
        f"WHERE g.attr = {attr} AND {relation}(g.geom, {shape}))"
    )


def compile_query(query: EntityQuery, schema: str, params: Params | None = None) -> CompiledQuery:
    """The condition selecting ``query``'s entities in ``schema`` (quoted)."""
    params = params or Params()
    parts = _selector_sql(query.ids, query.id_pattern, None, params)
    if query.selectors:
        parts.append(
            _any(
                [_all(_selector_sql(s.ids, s.id_pattern, s.types, params)) for s in query.selectors]
            )
        )
    if query.types is not None:
        parts.append(compile_types(query.types, params))
    if query.q is not None:
        parts.append(compile_q(query.q, params))
    if query.scope_q is not None:
        parts.append(compile_scope(query.scope_q, params))
    if query.attrs:
        parts.append(_any([_contains(PRESENT, a, params) for a in sorted(query.attrs)]))
    near = None
    if query.geo is not None:
        near, condition = _geo_sql(query.geo, schema, params)
        if condition is not None:
            parts.append(condition)
    return CompiledQuery(_all(parts), params, near)
