"""Entity history on SQLite: writing instance rows, reading time ranges, aggregating in SQL.

Rows live in ``attr_instances`` clustered by (entity, attribute, time), so one
attribute's time range is one B-tree range; aggregation is one ``GROUP BY`` per
attribute over integer time buckets (fixed periods) or over a small table of period
bounds (calendar periods: months, years).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from urbanstack.ngsild.history import (
    VT_BOOL,
    VT_JSON,
    AggregateBucket,
    AttributeAggregate,
    HistoryRow,
    TemporalEntity,
)
from urbanstack.ngsild.model import ATTRIBUTE_TYPES
from urbanstack.ngsild.temporal import Aggregation, TemporalQuery, bucket_starts

KIND_CODES = {name: code for code, name in enumerate(ATTRIBUTE_TYPES)}
MAX_CALENDAR_PERIODS = 10_000
_TIME_COLUMNS = {"observedAt": "observed", "createdAt": "created", "modifiedAt": "modified"}
_ROW_COLUMNS = "observed, iid, has_observed, created, modified, kind, dataset_id, vt, val, extra"
CHUNK = 500


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


def ensure_entities(conn: sqlite3.Connection, entities: dict[str, list[str]]) -> dict[str, int]:
    """eid of each id (created when new, types refreshed when they changed)."""
    known = entity_numbers(conn, list(entities))
    eids: dict[str, int] = {}
    for entity_id, types in entities.items():
        encoded = orjson.dumps(types)
        row = known.get(entity_id)
        if row is None:
            eids[entity_id] = conn.execute(
                "INSERT INTO temporal_entities (id, types) VALUES (?, ?)", (entity_id, encoded)
            ).lastrowid  # type: ignore[assignment]
        else:
            eids[entity_id] = row[0]
            if row[1] != encoded:
                conn.execute(
                    "UPDATE temporal_entities SET types = ? WHERE eid = ?", (encoded, row[0])
                )
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
    "INSERT INTO attr_instances (eid, pid, observed, iid, has_observed, created, modified, "
    "kind, dataset_id, vt, val, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _row_params(eid: int, pid: int, row: HistoryRow) -> tuple[Any, ...]:
    return (
        eid,
        pid,
        row.observed,
        row.iid,
        int(row.has_observed),
        row.created,
        row.modified,
        KIND_CODES[row.kind],
        row.dataset_id,
        row.vt,
        row.val,
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
        "SELECT observed, created FROM attr_instances WHERE eid = ? AND pid = ? AND iid = ?",
        (eid, pid, iid),
    ).fetchone()
    if found is None:
        return False
    conn.execute(
        "DELETE FROM attr_instances WHERE eid = ? AND pid = ? AND observed = ? AND iid = ?",
        (eid, pid, found[0], iid),
    )
    row.iid, row.created = iid, found[1]
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


def export_batch(
    conn: sqlite3.Connection,
    eid: int,
    after: tuple[int, int, int],
    size: int,
    names: Callable[[int], str | None],
) -> tuple[list[HistoryRow], tuple[int, int, int]]:
    """The next ``size`` rows of entity ``eid`` after key ``after`` (pid, observed, iid)."""
    rows = conn.execute(
        f"SELECT pid, {_ROW_COLUMNS} FROM attr_instances "
        "WHERE eid = ? AND (pid, observed, iid) > (?, ?, ?) ORDER BY pid, observed, iid LIMIT ?",
        (eid, *after, size),
    ).fetchall()
    out = [_history_row(names(r[0]) or "", r[1:]) for r in rows]
    last = (rows[-1][0], rows[-1][1], rows[-1][2]) if rows else after
    return out, last


# --- reading


def attribute_pids(conn: sqlite3.Connection, eid: int) -> list[int]:
    """The attributes an entity has history for, by skipping through the primary key
    (one index seek per attribute instead of a scan of every instance)."""
    pids: list[int] = []
    last = -1
    while True:
        row = conn.execute(
            "SELECT pid FROM attr_instances WHERE eid = ? AND pid > ? ORDER BY pid LIMIT 1",
            (eid, last),
        ).fetchone()
        if row is None:
            return pids
        last = row[0]
        pids.append(last)


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


def _history_row(attr: str, r: tuple[Any, ...]) -> HistoryRow:
    return HistoryRow(
        attr=attr,
        kind=ATTRIBUTE_TYPES[r[5]],
        vt=r[7],
        val=r[8],
        extra=r[9],
        dataset_id=r[6],
        observed=r[0],
        has_observed=bool(r[2]),
        created=r[3],
        modified=r[4],
        iid=r[1],
    )


def read_instances(
    conn: sqlite3.Connection, eid: int, attrs: dict[int, str], query: TemporalQuery
) -> tuple[dict[str, list[HistoryRow]], tuple[int, int] | None]:
    """Each attribute's instances in the time range (oldest first), at most
    ``query.instance_limit`` per attribute; the window actually covered when cut short."""
    column = _TIME_COLUMNS[query.timeproperty]
    time_sql, time_params = _time_clause(query, column)
    descending = query.descending
    order = "DESC" if descending else "ASC"
    want = query.instance_limit
    if query.last_n is not None and query.last_n <= want:
        want, can_overflow = query.last_n, False
    else:
        can_overflow = True
    found: dict[str, list[HistoryRow]] = {}
    cut_at: list[int] = []
    time_of = {"observed": 0, "created": 3, "modified": 4}[column]
    for pid, attr in attrs.items():
        raw = conn.execute(
            f"SELECT {_ROW_COLUMNS} FROM attr_instances WHERE eid = ? AND pid = ?{time_sql} "
            f"ORDER BY {column} {order}, iid {order} LIMIT ?",
            (eid, pid, *time_params, want + 1 if can_overflow else want),
        ).fetchall()
        if can_overflow and len(raw) > want:
            cut_at.append(raw[want][time_of])
            raw = raw[:want]
        if raw:
            found[attr] = [_history_row(attr, r) for r in raw]
    window = None
    if cut_at:
        # every attribute is complete up to the earliest cut (latest, going backwards)
        boundary = max(cut_at) if descending else min(cut_at)
        for attr, rows in list(found.items()):
            kept = [
                r
                for r in rows
                if (_time(r, column) > boundary if descending else _time(r, column) < boundary)
            ]
            if kept:
                found[attr] = kept
            else:
                del found[attr]
        low, high = query.time.bounds() if query.time is not None else (None, None)
        times = [_time(r, column) for rows in found.values() for r in rows]
        if descending:
            window = (boundary, high if high is not None else max(times, default=boundary))
        else:
            window = (low if low is not None else min(times, default=boundary), boundary)
    if descending:
        for rows in found.values():
            rows.reverse()
    return found, window


def _time(row: HistoryRow, column: str) -> int:
    if column == "observed":
        return row.observed
    return row.created if column == "created" else row.modified


_NUMERIC = "CASE WHEN vt IN (1, 2) THEN val END"
_ORDERED = f"CASE WHEN vt != {VT_JSON} THEN val END"
_MEASURES = (
    f"count(*), count(DISTINCT val), sum({_NUMERIC}), count({_NUMERIC}), min({_ORDERED}), "
    f"max({_ORDERED}), sum(({_NUMERIC}) * ({_NUMERIC})), max(kind), max(vt = {VT_BOOL})"
)


def aggregate_instances(
    conn: sqlite3.Connection, eid: int, attrs: dict[int, str], query: TemporalQuery
) -> dict[str, list[AttributeAggregate]]:
    """Each attribute's instances in the time range, aggregated per period by SQL."""
    out: dict[str, list[AttributeAggregate]] = {}
    for pid, attr in attrs.items():
        series = _aggregate_attribute(conn, eid, pid, attr, query)
        if series:
            out[attr] = series
    return out


def _aggregate_attribute(
    conn: sqlite3.Connection, eid: int, pid: int, attr: str, query: TemporalQuery
) -> list[AttributeAggregate]:
    """One attribute's periods: a GROUP BY over integer buckets (fixed periods), over a
    VALUES table of period bounds (months, years), or over the whole range."""
    aggregation = query.aggregation
    assert aggregation is not None
    column = _TIME_COLUMNS[query.timeproperty]
    time_sql, time_params = _time_clause(query, column)
    low, high = query.time.bounds() if query.time is not None else (None, None)
    first, latest = conn.execute(
        f"SELECT min({column}), max({column}) FROM attr_instances "
        f"WHERE eid = ? AND pid = ?{time_sql}",
        (eid, pid, *time_params),
    ).fetchone()
    if first is None:
        return []
    origin = low if low is not None else first
    period = aggregation.period
    params: list[Any]
    if period is None:
        sql = (
            f"SELECT dataset_id, 0, {_MEASURES} FROM attr_instances "
            f"WHERE eid = ? AND pid = ?{time_sql} GROUP BY dataset_id"
        )
        params = [eid, pid, *time_params]
        periods = [(origin, high if high is not None else latest)]
    elif period.months == 0:
        step = period.micros
        sql = (
            f"SELECT dataset_id, ({column} - ?) / ?, {_MEASURES} FROM attr_instances "
            f"WHERE eid = ? AND pid = ? AND {column} >= ?{time_sql} "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
        params = [origin, step, eid, pid, origin, *time_params]
        periods = _FixedPeriods(origin, step)  # type: ignore[assignment]
    else:
        end = high if high is not None else latest + 1
        starts = bucket_starts(origin, end, period)[:MAX_CALENDAR_PERIODS]
        periods = list(zip(starts, [*starts[1:], period.add_to(starts[-1])], strict=True))
        values = ",".join("(?,?,?)" for _ in periods)
        sql = (
            f"WITH p(i, lo, hi) AS (VALUES {values}) "
            f"SELECT dataset_id, p.i, {_MEASURES} FROM p JOIN attr_instances "
            f"ON eid = ? AND pid = ? AND {column} >= p.lo AND {column} < p.hi{time_sql} "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
        params = [v for i, (lo, hi) in enumerate(periods) for v in (i, lo, hi)]
        params += [eid, pid, *time_params]
    series: dict[Any, AttributeAggregate] = {}
    for r in conn.execute(sql, params):
        kind = ATTRIBUTE_TYPES[r[9]]
        aggregate = series.get(r[0])
        if aggregate is None:
            aggregate = series[r[0]] = AttributeAggregate(attr, kind, r[0], [])
        start, stop = periods[r[1]]
        values_of = _measures(aggregation, r[2:], bool(r[10]), kind.endswith("Relationship"))
        aggregate.buckets.append(AggregateBucket(start, stop, values_of))
    return list(series.values())


class _FixedPeriods:
    """Period ``i`` of a fixed-length bucketing, as ``periods[i]``."""

    def __init__(self, origin: int, step: int) -> None:
        self.origin, self.step = origin, step

    def __getitem__(self, index: int) -> tuple[int, int]:
        return self.origin + index * self.step, self.origin + (index + 1) * self.step


def _typed(value: Any, boolean: bool) -> Any:
    return bool(value) if boolean and value is not None else value


def _measures(
    aggregation: Aggregation, m: Sequence[Any], boolean: bool, relationship: bool
) -> dict[str, Any]:
    """The requested methods from one GROUP BY row; None where a method does not apply
    (sums of text, min/max of relationships)."""
    count, distinct, total, numbers, low, high, squares = m[:7]
    values: dict[str, Any] = {}
    for method in aggregation.methods:
        if method == "totalCount":
            values[method] = count
        elif method == "distinctCount":
            values[method] = distinct
        elif method == "sum":
            values[method] = total
        elif method == "avg":
            values[method] = None if not numbers else total / numbers
        elif method == "min":
            values[method] = None if relationship else _typed(low, boolean)
        elif method == "max":
            values[method] = None if relationship else _typed(high, boolean)
        elif method == "sumsq":
            values[method] = squares
        elif method == "stddev":
            values[method] = _stddev(numbers, total, squares)
    return values


def _stddev(n: int, total: float | None, squares: float | None) -> float | None:
    """Sample standard deviation (as Stellio) from count, sum and sum of squares."""
    if not n or total is None or squares is None:
        return None
    if n == 1:
        return 0.0
    return math.sqrt(max((squares - total * total / n) / (n - 1), 0.0))


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
    if wanted_pids is None:
        attrs = {p: a for p in attribute_pids(conn, eid) if (a := attr_lookup(p)) is not None}
    else:
        attrs = wanted_pids
    if query.aggregation is not None:
        return TemporalEntity(entity_id, types, {}, aggregate_instances(conn, eid, attrs, query))
    found, window = read_instances(conn, eid, attrs, query)
    return TemporalEntity(entity_id, types, found, None, window)
