"""Aggregating history in PostgreSQL (``options=aggregatedValues``).

One ``GROUP BY`` per series over integer time buckets (fixed periods), over a table of
period bounds (calendar periods: months, years), or over the whole range, computing only
the measures the asked methods need.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from urbanstack.ngsild.history import (
    DELETION_EXTRA_PREFIX,
    VT_BOOL,
    VT_NUMBER,
    AttributeAggregate,
    measure_names,
    period_columns,
)
from urbanstack.ngsild.model import ATTRIBUTE_TYPES
from urbanstack.ngsild.temporal import (
    Aggregation,
    FixedPeriods,
    TemporalQuery,
    bucket_starts,
    period_bounds,
)
from urbanstack.store.postgres_history import TIME_COLUMNS, Series, time_clause

MAX_CALENDAR_PERIODS = 10_000
#: SQL of each measure an aggregation method needs (computed only when asked for)
_MEASURE_SQL = {
    "count": "count(*)",
    "distinct": "count(DISTINCT num) + count(DISTINCT val)",
    "sum": "sum(num)",
    "isum": "sum(inum)",
    "numbers": "count(num)",
    "integers": "count(inum)",
    "squares": "sum(num * num)",
    "min": "min(num)",
    "imin": "min(inum)",
    "tmin": "min(val)",
    "max": "max(num)",
    "imax": "max(inum)",
    "tmax": "max(val)",
    "kind": "max(kind)",
    "vt": "max(vt)",
}
#: the sums again, added up exactly (numeric) and turned into a float afterwards, infinite
#: beyond the float range: for a series whose float sums overflowed (PostgreSQL raises
#: where SQLite gives infinity)
_FLOAT_MAX = "1.7976931348623157e308"
_EXACT_MEASURE_SQL = {
    name: (
        f"(CASE WHEN abs({total}) > {_FLOAT_MAX} THEN sign({total})::float8 * 'Infinity'::float8 "
        f"ELSE ({total})::float8 END)"
    )
    for name, total in (
        ("sum", "sum(num::numeric)"),
        ("squares", "sum(num::numeric * num::numeric)"),
    )
}
_METHOD_MEASURES = {
    "totalCount": ("count",),
    "distinctCount": ("distinct",),
    "sum": ("sum", "isum", "numbers", "integers"),
    "avg": ("sum", "numbers"),
    "min": ("min", "imin", "tmin", "numbers", "integers"),
    "max": ("max", "imax", "tmax", "numbers", "integers"),
    "stddev": ("sum", "numbers", "squares"),
    "sumsq": ("squares",),
}


async def aggregate_instances(
    conn: asyncpg.Connection,
    schema: str,
    series: list[Series],
    query: TemporalQuery,
    *,
    exact_sums: bool = False,
) -> dict[str, list[AttributeAggregate]]:
    """Each series' instances in the time range, aggregated per period by SQL; with
    ``exact_sums``, sums in numeric (slower; for values whose float sums overflow)."""
    out: dict[str, list[AttributeAggregate]] = {}
    for sid, attr, ds in series:
        aggregate = await _aggregate_series(conn, schema, sid, attr, ds, query, exact_sums)
        if aggregate is not None:
            out.setdefault(attr, []).append(aggregate)
    return out


#: a deletion is not a value: aggregations leave deletion rows out (see history.deletion_row)
#: (numbers and booleans, the usual series, are never deletions: the first test settles them)
_NOT_DELETION = (
    f"(vt IN ({VT_NUMBER}, {VT_BOOL}) OR substring(extra from 1 for "
    f"{len(DELETION_EXTRA_PREFIX)}) IS DISTINCT FROM '\\x{DELETION_EXTRA_PREFIX.hex()}'::bytea)"
)


async def _aggregate_series(
    conn: asyncpg.Connection,
    schema: str,
    sid: int,
    attr: str,
    ds: str,
    query: TemporalQuery,
    exact_sums: bool,
) -> AttributeAggregate | None:
    aggregation = query.aggregation
    assert aggregation is not None
    column = TIME_COLUMNS[query.timeproperty]
    table = f"{schema}.attr_instances"
    time_sql, time_params = time_clause(query, column, 2)
    span = await conn.fetchrow(
        f"SELECT min({column}) AS first, max({column}) AS latest FROM {table} "
        f"WHERE sid = $1{time_sql} AND {_NOT_DELETION}",
        sid,
        *time_params,
    )
    if span is None or span["first"] is None:
        return None
    low, high = query.time.bounds() if query.time is not None else (None, None)
    names = measure_names(aggregation.methods, _METHOD_MEASURES)
    sql_of = {**_MEASURE_SQL, **_EXACT_MEASURE_SQL} if exact_sums else _MEASURE_SQL
    measures = ", ".join(f"{sql_of[n]} AS {n}" for n in names)
    origin = low if low is not None else span["first"]
    period = aggregation.period
    after = len(time_params) + 2  # the next free parameter number
    args: list[Any] = [sid, *time_params]
    periods: Any
    if period is None:
        sql = f"SELECT 0 AS i, {measures} FROM {table} WHERE sid = $1{time_sql} AND {_NOT_DELETION}"
        periods = [(origin, high if high is not None else span["latest"])]
    elif period.months == 0:
        sql = (
            f"SELECT ({column} - ${after}) / ${after + 1} AS i, {measures} FROM {table} "
            f"WHERE sid = $1{time_sql} AND {_NOT_DELETION} AND {column} >= ${after} GROUP BY 1"
        )
        args += [origin, period.micros]
        periods = FixedPeriods(origin, period.micros)
    else:
        end = high if high is not None else span["latest"] + 1
        starts = bucket_starts(origin, end, period)[:MAX_CALENDAR_PERIODS]
        periods = list(zip(starts, [*starts[1:], period.add_to(starts[-1])], strict=True))
        sql = (
            f"SELECT p.i - 1 AS i, {measures} FROM unnest(${after}::bigint[], "
            f"${after + 1}::bigint[]) WITH ORDINALITY AS p(lo, hi, i) JOIN {table} "
            f"ON sid = $1{time_sql} AND {_NOT_DELETION} AND {column} >= p.lo AND {column} < p.hi "
            "GROUP BY 1"
        )
        args += [[lo for lo, _ in periods], [hi for _, hi in periods]]
    found = [
        {k: int(v) if isinstance(v, Decimal) else v for k, v in r.items()}
        for r in await conn.fetch(sql + " ORDER BY 1", *args)
    ]
    if not found:
        return None
    columns = {name: [m[name] for m in found] for name in names}
    givens = [_given(aggregation, m) for m in found]
    given = {name: [g[name] for g in givens] for name in givens[0]}
    kinds = [ATTRIBUTE_TYPES[m["kind"]] for m in found]
    starts, ends = period_bounds(periods, [int(m["i"]) for m in found])
    return AttributeAggregate(
        attr,
        kinds[-1],
        ds or None,
        starts,
        ends,
        period_columns(aggregation.methods, columns, kinds, given),
    )


#: method -> the columns holding it for real numbers, integers and text
_PICKED = {
    "sum": ("sum", "isum", ""),
    "min": ("min", "imin", "tmin"),
    "max": ("max", "imax", "tmax"),
}


def _given(aggregation: Aggregation, m: dict[str, Any]) -> dict[str, Any]:
    """The requested sum, min and max as the values were given (measured only if asked)."""
    return {name: _pick(m, *_PICKED[name]) for name in _PICKED if name in aggregation.methods}


def _pick(m: dict[str, Any], real: str, integer: str, text: str) -> Any:
    """A min/max/sum as the values were given: integers stay integers, else numbers, else
    text."""
    if m["numbers"]:
        return m[integer] if m["integers"] == m["numbers"] else m[real]
    return m[text] if text else None
