"""Aggregating history on SQLite (``options=aggregatedValues``).

One ``GROUP BY`` per series over integer time buckets (fixed periods), over a small table
of period bounds (calendar periods: months, years), or over the whole range, computing
only the measures the asked methods need. A series with instances still in
``recent_instances`` (see :mod:`urbanstack.store.sqlite_history`) is read from both
tables through a ``UNION ALL``; the others from the clustered table alone.

Fixed periods over ``observedAt`` (the clustering key) holding several instances each on
average are read period after period instead: a join of a per-connection table of period
numbers with one index range of the series per period, grouped in the order it is read.
That spares SQLite the sort of every instance by period (a quarter of the query's time at
24 instances a period); with mostly empty periods the seeks would cost more than the sort,
so a probe of the series' density decides.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Container
from typing import Any, NamedTuple

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
from urbanstack.store.sqlite_history import SHAPE_REAL, TIME_COLUMNS, Series, time_clause
from urbanstack.store.sqlite_rows import rows_at_once

MAX_CALENDAR_PERIODS = 10_000
#: periods read one index range each only up to this many (the size of the period-numbers
#: table each connection makes on first use) and only when the series holds at least
#: DENSE_PERIOD_INSTANCES instances a period on average
MAX_JOINED_PERIODS = 4096
DENSE_PERIOD_INSTANCES = 4
_SOURCE_COLUMNS = "eid, pid, ds, observed, created, modified, kind, vt, num, val, extra"
_BOTH_TABLES = (
    f"src AS (SELECT {_SOURCE_COLUMNS} FROM attr_instances WHERE eid = ? AND pid = ? AND ds = ? "
    f"UNION ALL SELECT {_SOURCE_COLUMNS} FROM recent_instances "
    "WHERE eid = ? AND pid = ? AND ds = ?)"
)


#: SQL of each measure an aggregation method needs (computed only when asked for)
_MEASURE_SQL = {
    "count": "count(*)",
    # a row has a number or a text/JSON value, never both, and values of different storage
    # classes never count as one: one DISTINCT set instead of two (7 % less per query)
    "distinct": "count(DISTINCT coalesce(num, val))",
    "sum": "sum(num)",
    "numbers": "count(num)",
    "squares": "sum(num * num)",
    "min": "coalesce(min(num), min(val))",
    "max": "coalesce(max(num), max(val))",
    "kind": "max(kind)",
    "vt": "max(vt)",
}
#: the measures of a series of numbers and booleans (no text, JSON nor deletion: those
#: have no ``num``): no text column to read; ``numbers`` = ``count`` shows a period was so
_NUMBER_MEASURE_SQL = {
    **_MEASURE_SQL,
    "distinct": "count(DISTINCT num)",
    "min": "min(num)",
    "max": "max(num)",
}
_INTEGER_MEASURES = frozenset({"count", "distinct", "numbers", "kind", "vt"})
_METHOD_MEASURES = {
    "totalCount": ("count",),
    "distinctCount": ("distinct",),
    "sum": ("sum",),
    "avg": ("sum", "numbers"),
    "min": ("min",),
    "max": ("max",),
    "stddev": ("sum", "numbers", "squares"),
    "sumsq": ("squares",),
}


_NUMBER_MEASURES = {
    method: (*measures, "numbers", "count") for method, measures in _METHOD_MEASURES.items()
}
#: the measures of a uniform series (see _uniform): types known, every instance a number
_UNIFORM_MEASURES = {
    method: tuple("count" if m == "numbers" else m for m in measures)
    for method, measures in _METHOD_MEASURES.items()
}


def aggregate_instances(
    conn: sqlite3.Connection,
    eid: int,
    series: dict[Series, str],
    query: TemporalQuery,
    recent: Container[Series] = frozenset(),
) -> dict[str, list[AttributeAggregate]]:
    """Each series' instances in the time range, aggregated per period by SQL; ``recent``
    names the series with instances in ``recent_instances``."""
    out: dict[str, list[AttributeAggregate]] = {}
    for (pid, ds), attr in series.items():
        source = _Source(eid, pid, ds, (pid, ds) in recent)
        aggregate = _aggregate_series(conn, source, attr, query)
        if aggregate is not None:
            out.setdefault(attr, []).append(aggregate)
    return out


#: a deletion is not a value: aggregations leave deletion rows out (see history.deletion_row)
#: (numbers and booleans, the usual series, are never deletions: the first test settles them)
_NOT_DELETION = (
    f"(vt IN ({VT_NUMBER}, {VT_BOOL}) OR extra IS NULL "
    f"OR substr(extra, 1, {len(DELETION_EXTRA_PREFIX)}) <> x'{DELETION_EXTRA_PREFIX.hex()}')"
)


class _Source:
    """Where a series' rows are read from: the clustered table, or both tables."""

    def __init__(self, eid: int, pid: int, ds: str, recent: bool) -> None:
        self.key = (eid, pid, ds)
        self.recent = recent
        self.table = "src" if recent else "attr_instances"
        self.ctes = [_BOTH_TABLES] if recent else []
        self.params: list[Any] = [*self.key, *self.key] if recent else []

    def sql(self, body: str, ctes: list[str] | None = None) -> str:
        """``body`` (reading ``self.table``) behind the ``WITH`` clauses it needs."""
        every = [*self.ctes, *(ctes or [])]
        return f"WITH {', '.join(every)} {body}" if every else body


class _Span(NamedTuple):
    """What a series holds in the query's range, as :func:`_span` finds it."""

    first: int | None
    latest: int | None
    #: the range may hold only numbers and booleans (checked per period when measured)
    numbers: bool
    #: (attribute type code, value type, reals) when every instance the attribute ever had
    #: is of this one numeric pair (``history_shapes``): nothing to check per period
    uniform: tuple[int, int, bool] | None


def _span(conn: sqlite3.Connection, source: _Source, column: str, query: TemporalQuery) -> _Span:
    """First and last time of a series in the query's range (two index seeks for
    observedAt, the clustering key; a range scan for the other times or when instances
    wait in ``recent_instances``), a hint that the range holds only numbers and booleans
    (with the seeks, the last instance is one; with the scan, every instance is) and the
    attribute's recorded shapes."""
    time_sql, time_params = time_clause(query, column)
    where = f"eid = ? AND pid = ? AND ds = ?{time_sql} AND {_NOT_DELETION}"
    params = (*source.key, *time_params)
    shapes = "(SELECT shapes FROM history_shapes WHERE pid = ?)"
    if column != "observed" or source.recent:
        row = conn.execute(
            source.sql(
                f"SELECT min({column}), max({column}), count(num) = count(*), {shapes} "
                f"FROM {source.table} WHERE {where}"
            ),
            (*source.params, source.key[1], *params),
        ).fetchone()
        return _Span(row[0], row[1], bool(row[2]), _uniform(row[3]))
    last = f"FROM attr_instances WHERE {where} ORDER BY observed DESC LIMIT 1"
    row = conn.execute(
        f"SELECT (SELECT observed FROM attr_instances WHERE {where} ORDER BY observed LIMIT 1), "
        f"(SELECT observed {last}), (SELECT vt {last}), {shapes}",
        params + params + params + (source.key[1],),
    ).fetchone()
    return _Span(row[0], row[1], row[2] in (VT_NUMBER, VT_BOOL), _uniform(row[3]))


def _uniform(shapes: int | None) -> tuple[int, int, bool] | None:
    """(attribute type code, value type, whether the numbers are reals) of the one pair of
    ``shapes`` (see ``sqlite_history.shape_bit``) when it is numeric, else None."""
    if not shapes or shapes & (shapes - 1):
        return None
    kind, code = divmod(shapes.bit_length() - 1, 8)
    if code == SHAPE_REAL:
        return kind, VT_NUMBER, True
    return (kind, code, False) if code in (VT_NUMBER, VT_BOOL) else None


def _aggregate_series(
    conn: sqlite3.Connection, source: _Source, attr: str, query: TemporalQuery
) -> AttributeAggregate | None:
    """One series' periods: a GROUP BY over integer buckets (fixed periods), over a
    VALUES table of period bounds (months, years), or over the whole range. A series of
    numbers is measured by a shorter query first (no text column, no deletion test); a
    period holding anything else sends it to the general one."""
    aggregation = query.aggregation
    assert aggregation is not None
    first, latest, numbers, uniform = _span(conn, source, TIME_COLUMNS[query.timeproperty], query)
    if first is None or latest is None:
        return None
    joined = _joined_periods(conn, source, query, first, latest)
    if uniform is not None:
        names = measure_names(aggregation.methods, _UNIFORM_MEASURES, types=False)
        shape = _Shape(source, query, first, latest, names, _NUMBER_MEASURE_SQL, "", joined)
        shape.of_numbers(reals=uniform[2])
        rows = shape.rows(conn)
        return _attribute_aggregate(attr, source, rows, names, shape.periods, aggregation, uniform)
    if numbers:
        names = measure_names(aggregation.methods, _NUMBER_MEASURES)
        shape = _Shape(source, query, first, latest, names, _NUMBER_MEASURE_SQL, "", joined)
        rows = shape.rows(conn)
        n, count = names.index("numbers") + 1, names.index("count") + 1
        if all(r[n] == r[count] for r in rows):  # no text, JSON nor deletion: exact
            return _attribute_aggregate(attr, source, rows, names, shape.periods, aggregation)
    names = measure_names(aggregation.methods, _METHOD_MEASURES)
    row_filter = f" AND {_NOT_DELETION}"
    shape = _Shape(source, query, first, latest, names, _MEASURE_SQL, row_filter, joined)
    return _attribute_aggregate(attr, source, shape.rows(conn), names, shape.periods, aggregation)


_NUMBERS = "aggregation_periods"


def _joined_periods(
    conn: sqlite3.Connection, source: _Source, query: TemporalQuery, first: int, latest: int
) -> tuple[int, int] | None:
    """(start of the first period holding an instance, number of periods from there) when
    the series' periods are best read one index range each (see the module docstring)."""
    aggregation = query.aggregation
    assert aggregation is not None
    period = aggregation.period
    if period is None or period.months or source.recent or query.timeproperty != "observedAt":
        return None
    low, high = query.time.bounds() if query.time is not None else (None, None)
    origin = low if low is not None else first
    step = period.micros
    base = origin + (first - origin) // step * step
    count = (latest - base) // step + 1
    if count > MAX_JOINED_PERIODS:
        return None
    end = high if high is not None else latest + 1
    eid, pid, ds = source.key
    probe = conn.execute(
        "SELECT observed FROM attr_instances WHERE eid = ? AND pid = ? AND ds = ? "
        "AND observed >= ? ORDER BY observed LIMIT 1 OFFSET ?",
        (eid, pid, ds, base, count * DENSE_PERIOD_INSTANCES - 1),
    ).fetchone()
    if probe is None or probe[0] >= end:
        return None
    return base, count


def _make_period_numbers(conn: sqlite3.Connection) -> None:
    """The connection's table of period numbers 0 .. MAX_JOINED_PERIODS - 1 (in memory),
    made by the first joined reading on the connection."""
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_NUMBERS} (i INTEGER PRIMARY KEY)")
    conn.execute(
        f"INSERT OR IGNORE INTO temp.{_NUMBERS} WITH RECURSIVE n(i) AS "
        f"(SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {MAX_JOINED_PERIODS - 1}) "
        "SELECT i FROM n"
    )


def _attribute_aggregate(
    attr: str,
    source: _Source,
    rows: list[Any],
    names: list[str],
    periods: Any,
    aggregation: Aggregation,
    uniform: tuple[int, int, bool] | None = None,
) -> AttributeAggregate | None:
    if not rows:
        return None
    indexes, *measured = map(list, zip(*rows, strict=True))
    columns = dict(zip(names, measured, strict=True))
    if uniform is not None:
        columns["kind"], columns["vt"] = [uniform[0]] * len(rows), [uniform[1]] * len(rows)
        columns["numbers"] = columns.get("count", [])
        kinds = [ATTRIBUTE_TYPES[uniform[0]]] * len(rows)
    else:
        kinds = [ATTRIBUTE_TYPES[k] for k in columns["kind"]]
    starts, ends = period_bounds(periods, indexes)
    return AttributeAggregate(
        attr,
        kinds[-1],
        source.key[2] or None,
        starts,
        ends,
        period_columns(aggregation.methods, columns, kinds),
    )


class _Shape:
    """The aggregation query of one series: its SQL, parameters and periods."""

    def __init__(
        self,
        source: _Source,
        query: TemporalQuery,
        first: int,
        latest: int,
        names: list[str],
        measure_sql: dict[str, str],
        row_filter: str,
        joined: tuple[int, int] | None,
    ) -> None:
        aggregation = query.aggregation
        assert aggregation is not None
        column = TIME_COLUMNS[query.timeproperty]
        time_sql, time_params = time_clause(query, column)
        low, high = query.time.bounds() if query.time is not None else (None, None)
        measures = ", ".join(measure_sql[n] for n in names)
        origin = low if low is not None else first
        period = aggregation.period
        series_sql = f"eid = ? AND pid = ? AND ds = ?{time_sql}{row_filter}"
        table, (eid, pid, ds) = source.table, source.key
        self.width = len(names) + 1
        self.names = names
        self.integer_columns = {0} | {
            i for i, name in enumerate(names, start=1) if name in _INTEGER_MEASURES
        }
        self.real_columns: set[int] = set()
        if period is None:
            self.sql = source.sql(f"SELECT 0, {measures} FROM {table} WHERE {series_sql}")
            self.params = [*source.params, eid, pid, ds, *time_params]
            self.periods: Any = [(origin, high if high is not None else latest)]
        elif joined is not None:
            base, count = joined
            step = period.micros
            end = high if high is not None else latest + 1
            self.sql = (
                f"SELECT n.i, {measures} FROM temp.{_NUMBERS} AS n JOIN attr_instances "
                f"ON eid = ? AND pid = ? AND ds = ? AND observed >= ? + n.i * ? "
                f"AND observed < min(? + (n.i + 1) * ?, ?){row_filter} "
                "WHERE n.i < ? GROUP BY n.i"
            )
            self.params = [eid, pid, ds, base, step, base, step, end, count]
            self.periods = FixedPeriods(base, step)
        elif period.months == 0:
            step = period.micros
            self.sql = source.sql(
                f"SELECT ({column} - ?) / ?, {measures} FROM {table} "
                f"WHERE {series_sql} AND {column} >= ? GROUP BY 1"
            )
            self.params = [*source.params, origin, step, eid, pid, ds, *time_params, origin]
            self.periods = FixedPeriods(origin, step)
        else:
            end = high if high is not None else latest + 1
            starts = bucket_starts(origin, end, period)[:MAX_CALENDAR_PERIODS]
            self.periods = list(zip(starts, [*starts[1:], period.add_to(starts[-1])], strict=True))
            values = ",".join("(?,?,?)" for _ in self.periods)
            self.sql = source.sql(
                f"SELECT p.i, {measures} FROM p JOIN {table} "
                f"ON {series_sql} AND {column} >= p.lo AND {column} < p.hi GROUP BY 1",
                [f"p(i, lo, hi) AS (VALUES {values})"],
            )
            self.params = [*source.params]
            self.params += [v for i, (lo, hi) in enumerate(self.periods) for v in (i, lo, hi)]
            self.params += [eid, pid, ds, *time_params]

    def of_numbers(self, *, reals: bool) -> None:
        """Every instance measured is a number, all reals (``reals``) or all integers (or
        booleans): each measure is a real or an integer, as the one-step read wants (but
        squares of integers grow into reals beyond 2**63: read with their type)."""
        if reals:
            self.real_columns = set(range(self.width)) - self.integer_columns
        else:
            squares = {i for i, name in enumerate(self.names, start=1) if name == "squares"}
            self.integer_columns = set(range(self.width)) - squares

    def rows(self, conn: sqlite3.Connection) -> list[Any]:
        """The measured periods, one row each: (period number, measures...)."""
        try:
            return self._rows(conn)
        except sqlite3.OperationalError as exc:
            if _NUMBERS not in str(exc):
                raise
        _make_period_numbers(conn)
        return self._rows(conn)

    def _rows(self, conn: sqlite3.Connection) -> list[Any]:
        found = rows_at_once(
            conn, self.sql, self.params, self.width, self.integer_columns, self.real_columns
        )
        return found if found is not None else conn.execute(self.sql, self.params).fetchall()
