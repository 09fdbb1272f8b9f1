"""Entity history on SQLite: writing instance rows, reading time ranges, aggregating in SQL.

Rows live in ``attr_instances`` clustered by series (entity, attribute, datasetId) and
time, so one series' time range is one B-tree range read in time order. Aggregation is
one ``GROUP BY`` per series over integer time buckets (fixed periods) or over a small
table of period bounds (calendar periods: months, years), computing only the methods
asked for.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from urbanstack.ngsild.history import (
    DELETION_EXTRA_PREFIX,
    VT_BOOL,
    VT_NUMBER,
    AggregateBucket,
    AttributeAggregate,
    HistoryRow,
    TemporalEntity,
    cut_to_window,
    measure_names,
    period_values,
)
from urbanstack.ngsild.model import ATTRIBUTE_TYPES
from urbanstack.ngsild.temporal import FixedPeriods, TemporalQuery, bucket_starts
from urbanstack.store.sqlite_rows import rows_at_once

KIND_CODES = {name: code for code, name in enumerate(ATTRIBUTE_TYPES)}
MAX_CALENDAR_PERIODS = 10_000
_TIME_COLUMNS = {"observedAt": "observed", "createdAt": "created", "modifiedAt": "modified"}
_ROW_COLUMNS = "observed, iid, has_observed, created, modified, kind, ds, vt, num, val, extra"
_TIME_INDEX = {"observed": 0, "created": 3, "modified": 4}
CHUNK = 500
Series = tuple[int, str]  # (pid, ds)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- writing


def entity_numbers(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
    """eid and stored types of each id that has a history."""
    found: dict[str, tuple[int, bytes]] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for eid, entity_id, types in conn.execute(
            f"SELECT eid, id, types FROM temporal_entities WHERE id IN ({marks})", chunk
        ):
            found[entity_id] = (eid, types)
    return found


MAX_ROWID = 2**63 - 1


def insert_numbered(
    conn: sqlite3.Connection,
    table: str,
    key: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> list[int]:
    """Insert ``rows`` (values of ``columns``) and return their integer primary keys
    ``key``: the numbers SQLite picks one insert at a time (the largest so far plus one),
    given in one statement instead of one per row."""
    names = ", ".join(columns)
    marks = ",".join("?" * len(columns))
    single = f"INSERT INTO {table} ({names}) VALUES ({marks})"
    if len(rows) == 1:
        return [conn.execute(single, rows[0]).lastrowid]  # type: ignore[list-item]
    first = (conn.execute(f"SELECT max({key}) FROM {table}").fetchone()[0] or 0) + 1
    if first + len(rows) > MAX_ROWID:  # SQLite would pick free numbers at random
        return [conn.execute(single, row).lastrowid for row in rows]  # type: ignore[misc]
    keys = list(range(first, first + len(rows)))
    conn.executemany(
        f"INSERT INTO {table} ({key}, {names}) VALUES (?,{marks})",
        [(k, *row) for k, row in zip(keys, rows, strict=True)],
    )
    return keys


def ensure_entities(conn: sqlite3.Connection, entities: dict[str, list[str]]) -> dict[str, int]:
    """eid of each id (created when new, types refreshed when they changed; an empty list
    keeps the types last known)."""
    known = entity_numbers(conn, list(entities))
    eids: dict[str, int] = {}
    fresh: list[tuple[str, bytes]] = []
    for entity_id, types in entities.items():
        encoded = orjson.dumps(types)
        row = known.get(entity_id)
        if row is None:
            fresh.append((entity_id, encoded))
        else:
            eids[entity_id] = row[0]
            if types and row[1] != encoded:  # no types known: keep the last ones
                conn.execute(
                    "UPDATE temporal_entities SET types = ? WHERE eid = ?", (encoded, row[0])
                )
    if fresh:
        numbers = insert_numbered(conn, "temporal_entities", "eid", ("id", "types"), fresh)
        eids.update(zip((entity_id for entity_id, _ in fresh), numbers, strict=True))
    return eids


def reserve_instance_numbers(conn: sqlite3.Connection, count: int) -> int:
    """The first of ``count`` fresh instance numbers (one counter per tenant file)."""
    first = conn.execute("SELECT value FROM history_counters WHERE name = 'next_iid'").fetchone()[0]
    conn.execute("UPDATE history_counters SET value = ? WHERE name = 'next_iid'", (first + count,))
    return first


def insert_rows(
    conn: sqlite3.Connection,
    pid: Callable[[str], int],
    rows_by_entity: Sequence[tuple[int, Sequence[HistoryRow]]],
) -> None:
    """Append history rows; each gets the next instance number (``row.iid`` is set)."""
    total = sum(len(rows) for _, rows in rows_by_entity)
    if not total:
        return
    iid = reserve_instance_numbers(conn, total)
    params = []
    for eid, rows in rows_by_entity:
        for row in rows:
            row.iid = iid
            params.append(_row_params(eid, pid(row.attr), row))
            iid += 1
    conn.executemany(_INSERT, params)


_INSERT = (
    "INSERT INTO attr_instances (eid, pid, ds, observed, iid, has_observed, created, modified, "
    "kind, vt, num, val, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_NUMERIC_VT = (VT_NUMBER, VT_BOOL)


def _row_params(eid: int, pid: int, row: HistoryRow) -> tuple[Any, ...]:
    numeric = row.vt in _NUMERIC_VT
    return (
        eid,
        pid,
        row.dataset_id or "",
        row.observed,
        row.iid,
        int(row.has_observed),
        row.created,
        row.modified,
        KIND_CODES[row.kind],
        row.vt,
        row.val if numeric else None,
        None if numeric else row.val,
        row.extra,
    )


def delete_entity_history(conn: sqlite3.Connection, entity_ids: Sequence[str]) -> int:
    """Drop the whole history of the given entities; the number of entities that had one."""
    known = entity_numbers(conn, entity_ids)
    for eid, _ in known.values():
        conn.execute("DELETE FROM attr_instances WHERE eid = ?", (eid,))
        conn.execute("DELETE FROM temporal_entities WHERE eid = ?", (eid,))
    return len(known)


def prune_older_than(conn: sqlite3.Connection, eids: Sequence[int], before: int) -> int:
    """Delete instances filed before ``before`` for the given entities; rows deleted."""
    deleted = 0
    for eid in eids:
        deleted += conn.execute(
            "DELETE FROM attr_instances WHERE eid = ? AND observed < ?", (eid, before)
        ).rowcount
    return deleted


def replace_instance(
    conn: sqlite3.Connection, eid: int, pid: int, iid: int, row: HistoryRow
) -> bool:
    """Overwrite instance ``iid`` with ``row`` (keeping its number and creation time)."""
    found = conn.execute(
        "SELECT ds, observed, created FROM attr_instances WHERE eid = ? AND pid = ? AND iid = ?",
        (eid, pid, iid),
    ).fetchone()
    if found is None:
        return False
    conn.execute(
        "DELETE FROM attr_instances WHERE eid = ? AND pid = ? AND ds = ? AND observed = ? "
        "AND iid = ?",
        (eid, pid, found[0], found[1], iid),
    )
    row.iid, row.created = iid, found[2]
    conn.execute(_INSERT, _row_params(eid, pid, row))
    return True


def entities_of_type(conn: sqlite3.Connection, entity_type: str) -> list[tuple[int, str]]:
    """(eid, id) of the entities with a history whose last known types include ``entity_type``."""
    return [
        (eid, entity_id)
        for eid, entity_id, types in conn.execute(
            "SELECT eid, id, types FROM temporal_entities ORDER BY eid"
        )
        if entity_type in orjson.loads(types)
    ]


ExportKey = tuple[int, str, int, int]  # (pid, ds, observed, iid)
EXPORT_START: ExportKey = (-1, "", -1, -1)


def export_batch(
    conn: sqlite3.Connection,
    eid: int,
    after: ExportKey,
    size: int,
    names: Callable[[int], str | None],
) -> tuple[list[HistoryRow], ExportKey]:
    """The next ``size`` rows of entity ``eid`` after primary key ``after``."""
    rows = conn.execute(
        f"SELECT pid, {_ROW_COLUMNS} FROM attr_instances "
        "WHERE eid = ? AND (pid, ds, observed, iid) > (?, ?, ?, ?) "
        "ORDER BY pid, ds, observed, iid LIMIT ?",
        (eid, *after, size),
    ).fetchall()
    out = [_history_row(names(r[0]) or "", r[1:]) for r in rows]
    last = (rows[-1][0], rows[-1][7], rows[-1][1], rows[-1][2]) if rows else after
    return out, last


# --- reading


def series_of(conn: sqlite3.Connection, eid: int, pids: Iterable[int] | None) -> list[Series]:
    """The (attribute, datasetId) series an entity has history for, by skipping through
    the primary key: one index seek per series instead of a scan of every instance."""
    found: list[Series] = []
    if pids is None:
        key: tuple[int, str] = (-1, "")
        while True:
            row = conn.execute(
                "SELECT pid, ds FROM attr_instances WHERE eid = ? AND (pid, ds) > (?, ?) "
                "ORDER BY pid, ds LIMIT 1",
                (eid, *key),
            ).fetchone()
            if row is None:
                return found
            found.append(row)
            key = (row[0], row[1])  # the next dataset (or attribute): strictly greater
    for pid in pids:
        ds, op = "", ">="  # the first dataset, then each following one
        while True:
            row = conn.execute(
                f"SELECT ds FROM attr_instances WHERE eid = ? AND pid = ? AND ds {op} ? "
                "ORDER BY ds LIMIT 1",
                (eid, pid, ds),
            ).fetchone()
            if row is None:
                break
            ds, op = row[0], ">"
            found.append((pid, ds))
    return found


def _time_clause(query: TemporalQuery, column: str) -> tuple[str, list[int]]:
    if query.time is None:
        return "", []
    low, high = query.time.bounds()
    clauses, params = [], []
    if low is not None:
        clauses.append(f" AND {column} >= ?")
        params.append(low)
    if high is not None:
        clauses.append(f" AND {column} < ?")
        params.append(high)
    return "".join(clauses), params


def _history_row(attr: str, r: Sequence[Any]) -> HistoryRow:
    # r: observed, iid, has_observed, created, modified, kind, ds, vt, num, val, extra
    return HistoryRow(
        attr,
        ATTRIBUTE_TYPES[r[5]],
        r[7],
        r[9] if r[8] is None else r[8],
        r[10],
        r[6] or None,
        r[0],
        bool(r[2]),
        r[3],
        r[4],
        r[1],
    )


def read_instances(
    conn: sqlite3.Connection, eid: int, series: dict[Series, str], query: TemporalQuery
) -> tuple[dict[str, list[HistoryRow]], tuple[int, int] | None]:
    """Each attribute's instances in the time range (oldest first, datasets merged), at
    most ``query.instance_limit`` per attribute; the window actually covered when cut short."""
    column = _TIME_COLUMNS[query.timeproperty]
    time_sql, time_params = _time_clause(query, column)
    descending = query.descending
    order = "DESC" if descending else "ASC"
    want = query.instance_limit
    can_overflow = not (query.last_n is not None and query.last_n <= want)
    if not can_overflow:
        want = query.last_n  # type: ignore[assignment]
    fetch = want + 1 if can_overflow else want
    at = _TIME_INDEX[column]
    sql = (
        f"SELECT {_ROW_COLUMNS} FROM attr_instances WHERE eid = ? AND pid = ? AND ds = ?"
        f"{time_sql} ORDER BY {column} {order}, iid {order} LIMIT ?"
    )
    by_attr: dict[str, list[Sequence[Sequence[Any]]]] = {}
    for (pid, ds), attr in series.items():
        raw = conn.execute(sql, (eid, pid, ds, *time_params, fetch)).fetchall()
        if raw:
            by_attr.setdefault(attr, []).append(raw)
    found: dict[str, list[HistoryRow]] = {}
    cut_at: list[int] = []
    for attr, parts in by_attr.items():
        if len(parts) == 1:
            raw = parts[0]
        else:  # several datasets: merge them on (time, instance number)
            raw = list(heapq.merge(*parts, key=lambda r: (r[at], r[1]), reverse=descending))[:fetch]
        if can_overflow and len(raw) > want:
            cut_at.append(raw[want][at])
            raw = raw[:want]
        found[attr] = [_history_row(attr, r) for r in raw]
    window = cut_to_window(found, cut_at, query) if cut_at else None
    if descending:
        for rows in found.values():
            rows.reverse()
    return found, window


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


def aggregate_instances(
    conn: sqlite3.Connection, eid: int, series: dict[Series, str], query: TemporalQuery
) -> dict[str, list[AttributeAggregate]]:
    """Each series' instances in the time range, aggregated per period by SQL."""
    out: dict[str, list[AttributeAggregate]] = {}
    for (pid, ds), attr in series.items():
        aggregate = _aggregate_series(conn, eid, pid, ds, attr, query)
        if aggregate is not None:
            out.setdefault(attr, []).append(aggregate)
    return out


#: a deletion is not a value: aggregations leave deletion rows out (see history.deletion_row)
#: (numbers and booleans, the usual series, are never deletions: the first test settles them)
_NOT_DELETION = (
    f"(vt IN ({VT_NUMBER}, {VT_BOOL}) OR extra IS NULL "
    f"OR substr(extra, 1, {len(DELETION_EXTRA_PREFIX)}) <> x'{DELETION_EXTRA_PREFIX.hex()}')"
)


def _span(
    conn: sqlite3.Connection, eid: int, pid: int, ds: str, column: str, query: TemporalQuery
) -> tuple[int | None, int | None]:
    """First and last time of a series in the query's range (two index seeks for
    observedAt, the clustering key; a range scan for the other times)."""
    time_sql, time_params = _time_clause(query, column)
    where = f"eid = ? AND pid = ? AND ds = ?{time_sql} AND {_NOT_DELETION}"
    params = (eid, pid, ds, *time_params)
    if column != "observed":
        row = conn.execute(
            f"SELECT min({column}), max({column}) FROM attr_instances WHERE {where}", params
        ).fetchone()
        return row[0], row[1]
    row = conn.execute(
        f"SELECT (SELECT observed FROM attr_instances WHERE {where} ORDER BY observed LIMIT 1), "
        f"(SELECT observed FROM attr_instances WHERE {where} ORDER BY observed DESC LIMIT 1)",
        params + params,
    ).fetchone()
    return row[0], row[1]


def _aggregate_series(
    conn: sqlite3.Connection, eid: int, pid: int, ds: str, attr: str, query: TemporalQuery
) -> AttributeAggregate | None:
    """One series' periods: a GROUP BY over integer buckets (fixed periods), over a
    VALUES table of period bounds (months, years), or over the whole range."""
    aggregation = query.aggregation
    assert aggregation is not None
    column = _TIME_COLUMNS[query.timeproperty]
    time_sql, time_params = _time_clause(query, column)
    low, high = query.time.bounds() if query.time is not None else (None, None)
    first, latest = _span(conn, eid, pid, ds, column, query)
    if first is None or latest is None:
        return None
    names = measure_names(aggregation.methods, _METHOD_MEASURES)
    measures = ", ".join(_MEASURE_SQL[n] for n in names)
    origin = low if low is not None else first
    period = aggregation.period
    series_sql = f"eid = ? AND pid = ? AND ds = ?{time_sql} AND {_NOT_DELETION}"
    params: list[Any]
    if period is None:
        sql = f"SELECT 0, {measures} FROM attr_instances WHERE {series_sql}"
        params = [eid, pid, ds, *time_params]
        periods: Any = [(origin, high if high is not None else latest)]
    elif period.months == 0:
        step = period.micros
        sql = (
            f"SELECT ({column} - ?) / ?, {measures} FROM attr_instances "
            f"WHERE {series_sql} AND {column} >= ? GROUP BY 1"
        )
        params = [origin, step, eid, pid, ds, *time_params, origin]
        periods = FixedPeriods(origin, step)
    else:
        end = high if high is not None else latest + 1
        starts = bucket_starts(origin, end, period)[:MAX_CALENDAR_PERIODS]
        periods = list(zip(starts, [*starts[1:], period.add_to(starts[-1])], strict=True))
        values = ",".join("(?,?,?)" for _ in periods)
        sql = (
            f"WITH p(i, lo, hi) AS (VALUES {values}) "
            f"SELECT p.i, {measures} FROM p JOIN attr_instances "
            f"ON {series_sql} AND {column} >= p.lo AND {column} < p.hi GROUP BY 1"
        )
        params = [v for i, (lo, hi) in enumerate(periods) for v in (i, lo, hi)]
        params += [eid, pid, ds, *time_params]
    buckets: list[AggregateBucket] = []
    kind = "Property"
    found = rows_at_once(conn, sql, params, len(names) + 1)
    for r in found if found is not None else conn.execute(sql, params):
        measured = dict(zip(names, r[1:], strict=True))
        kind = ATTRIBUTE_TYPES[measured["kind"]]
        start, stop = periods[r[0]]
        values_of = period_values(aggregation.methods, measured, kind)
        buckets.append(AggregateBucket(start, stop, values_of))
    if not buckets:
        return None
    return AttributeAggregate(attr, kind, ds or None, buckets)


def load_history(
    conn: sqlite3.Connection,
    eid: int,
    entity_id: str,
    types: list[str],
    attr_lookup: Callable[[int], str | None],
    query: TemporalQuery,
    wanted_pids: dict[int, str] | None,
) -> TemporalEntity:
    """One entity's history as :class:`TemporalEntity` (instances or aggregates)."""
    found = series_of(conn, eid, None if wanted_pids is None else list(wanted_pids))
    series: dict[Series, str] = {}
    for pid, ds in found:
        attr = wanted_pids[pid] if wanted_pids is not None else attr_lookup(pid)
        if attr is not None:
            series[(pid, ds)] = attr
    if query.aggregation is not None:
        return TemporalEntity(entity_id, types, {}, aggregate_instances(conn, eid, series, query))
    rows, window = read_instances(conn, eid, series, query)
    return TemporalEntity(entity_id, types, rows, None, window)
