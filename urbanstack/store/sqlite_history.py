"""Entity history on SQLite: writing instance rows and reading time ranges.

Rows live in ``attr_instances`` clustered by series (entity, attribute, datasetId) and
time, so one series' time range is one B-tree range read in time order.

Clustering has a price on the write path: a batch of measures from a thousand devices
lands on a thousand leaf pages, each copied whole into the write-ahead log, and the cost
per instance grows with the table (measured 9 -> 25 us and 1.4 -> 9.9 kB per instance
over the first half million). So new instances are first appended, in arrival order, to
the unindexed ``recent_instances`` (a few pages per batch); the writer moves them into
``attr_instances`` in one sorted ``INSERT ... SELECT`` every few seconds or tens of
thousands of rows (:func:`move_recent`), which touches each series' last page once.
Every read and change below covers both tables; ``recent_instances`` is small, and read
in one scan per request. Aggregation is in :mod:`urbanstack.store.sqlite_aggregate`.
"""

from __future__ import annotations

import heapq
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from urbanstack.ngsild.history import VT_BOOL, VT_NUMBER, HistoryRow, cut_to_window, instance_budget
from urbanstack.ngsild.model import ATTRIBUTE_TYPES
from urbanstack.ngsild.temporal import TemporalQuery

KIND_CODES = {name: code for code, name in enumerate(ATTRIBUTE_TYPES)}
TABLES = ("attr_instances", "recent_instances")  # clustered, then recent arrivals
_COLUMNS = "eid, pid, ds, observed, iid, has_observed, created, modified, kind, vt, num, val, extra"
TIME_COLUMNS = {"observedAt": "observed", "createdAt": "created", "modifiedAt": "modified"}
_ROW_COLUMNS = "observed, iid, has_observed, created, modified, kind, ds, vt, num, val, extra"
_TIME_INDEX = {"observed": 0, "created": 3, "modified": 4}
CHUNK = 500
Series = tuple[int, str]  # (pid, ds)
#: an entity's instances still in ``recent_instances``, by series, as ``_ROW_COLUMNS`` rows
Recent = dict[Series, list[tuple[Any, ...]]]


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


@dataclass
class RecentTally:
    """How many instances wait in one file's ``recent_instances`` and since when, as the
    writer counts them: asking SQLite after every commit costs a hand-over of the
    interpreter lock each time. Deletions there are not subtracted (a move comes early)."""

    rows: int = 0
    since: float | None = None  # time.monotonic() of the first one

    def add(self, rows: int) -> None:
        self.rows += rows
        if rows and self.since is None:
            self.since = time.monotonic()


def insert_rows(
    conn: sqlite3.Connection,
    pid: Callable[[str], int],
    rows_by_entity: Sequence[tuple[int, Sequence[HistoryRow]]],
    *,
    recent: RecentTally | None = None,
) -> None:
    """Append history rows; each gets the next instance number (``row.iid`` is set).
    They go to ``recent_instances``, counted in ``recent``, when it is given, else
    straight into ``attr_instances``."""
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
    record_shapes(conn, params)
    if recent is None:
        conn.executemany(_INSERT[TABLES[0]], params)
        return
    conn.executemany(_INSERT[TABLES[1]], params)
    recent.add(len(params))


#: the value code of a number stored as a real in ``history_shapes`` (after the VT_* codes;
#: an integer keeps VT_NUMBER)
SHAPE_REAL = 4


def shape_bit(kind_code: int, vt: int, num: Any = None) -> int:
    """The bit of ``history_shapes.shapes`` standing for (attribute type, value type), a
    number stored as a real (``num`` a float) counting as a value type of its own."""
    return 1 << (kind_code * 8 + (SHAPE_REAL if isinstance(num, float) else vt))


_RECORD_SHAPES = (
    "INSERT INTO history_shapes (pid, shapes) VALUES (?, ?) ON CONFLICT (pid) DO UPDATE "
    "SET shapes = shapes | excluded.shapes WHERE shapes | excluded.shapes <> shapes"
)


def record_shapes(conn: sqlite3.Connection, params: Sequence[tuple[Any, ...]]) -> None:
    """Add the (attribute type, value type) pairs of instance rows (``_row_params``
    tuples) to ``history_shapes``; a pair already there writes nothing."""
    shapes: dict[int, int] = {}
    for row in params:
        pid = row[1]
        shapes[pid] = shapes.get(pid, 0) | shape_bit(row[8], row[9], row[10])
    conn.executemany(_RECORD_SHAPES, shapes.items())


_INSERT = {t: f"INSERT INTO {t} ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)" for t in TABLES}
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


def move_recent(conn: sqlite3.Connection) -> int:
    """Move every instance of ``recent_instances`` into ``attr_instances``, in key order
    (inside the caller's transaction); the number moved."""
    moved = conn.execute(
        f"INSERT INTO attr_instances ({_COLUMNS}) SELECT {_COLUMNS} FROM recent_instances "
        "ORDER BY eid, pid, ds, observed, iid"
    ).rowcount
    conn.execute("DELETE FROM recent_instances")
    return moved


def recent_count(conn: sqlite3.Connection) -> int:
    """About how many instances wait in ``recent_instances`` (exact unless some were
    deleted there): the largest rowid, as rowids restart from 1 once the table is empty."""
    return conn.execute("SELECT max(rowid) FROM recent_instances").fetchone()[0] or 0


def _in_chunks(
    conn: sqlite3.Connection, sql: str, eids: Sequence[int], extra: Sequence[Any] = ()
) -> int:
    """Run ``sql`` (with ``{marks}`` for an ``IN`` list of eids) over ``eids`` in chunks, on
    both tables (``{table}``); the rows it changed."""
    changed = 0
    for chunk in _chunks(eids):
        marks = ",".join("?" * len(chunk))
        for table in TABLES:
            changed += conn.execute(sql.format(table=table, marks=marks), (*chunk, *extra)).rowcount
    return changed


def delete_entity_history(conn: sqlite3.Connection, entity_ids: Sequence[str]) -> int:
    """Drop the whole history of the given entities; the number of entities that had one."""
    known = entity_numbers(conn, entity_ids)
    eids = [eid for eid, _ in known.values()]
    _in_chunks(conn, "DELETE FROM {table} WHERE eid IN ({marks})", eids)
    for chunk in _chunks(eids):
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM temporal_entities WHERE eid IN ({marks})", chunk)
    return len(known)


def prune_older_than(conn: sqlite3.Connection, eids: Sequence[int], before: int) -> int:
    """Delete instances filed before ``before`` for the given entities; rows deleted."""
    return _in_chunks(
        conn, "DELETE FROM {table} WHERE eid IN ({marks}) AND observed < ?", eids, (before,)
    )


def delete_instance(conn: sqlite3.Connection, eid: int, pid: int, iid: int) -> bool:
    """Delete instance ``iid`` of an attribute; whether it existed."""
    sql = "DELETE FROM {} WHERE eid = ? AND pid = ? AND iid = ?"
    return sum(conn.execute(sql.format(t), (eid, pid, iid)).rowcount for t in TABLES) > 0


def delete_series(conn: sqlite3.Connection, eid: int, pid: int, dataset_id: str | None) -> bool:
    """Delete an attribute's history: one dataset's (``''`` is the default instance) or,
    with ``dataset_id`` None, every dataset's; whether there was any."""
    sql, params = "DELETE FROM {} WHERE eid = ? AND pid = ?", [eid, pid]
    if dataset_id is not None:
        sql += " AND ds = ?"
        params.append(dataset_id)
    return sum(conn.execute(sql.format(t), params).rowcount for t in TABLES) > 0


def replace_instance(
    conn: sqlite3.Connection, eid: int, pid: int, iid: int, row: HistoryRow
) -> bool:
    """Overwrite instance ``iid`` with ``row`` (keeping its number and creation time)."""
    found = conn.execute(
        "SELECT ds, observed, created FROM attr_instances WHERE eid = ? AND pid = ? AND iid = ?",
        (eid, pid, iid),
    ).fetchone()
    if found is not None:  # deleted by its whole key: one seek, not a scan of the series
        conn.execute(
            "DELETE FROM attr_instances WHERE eid = ? AND pid = ? AND ds = ? AND observed = ? "
            "AND iid = ?",
            (eid, pid, found[0], found[1], iid),
        )
    else:
        found = conn.execute(
            "DELETE FROM recent_instances WHERE eid = ? AND pid = ? AND iid = ? "
            "RETURNING ds, observed, created",
            (eid, pid, iid),
        ).fetchone()
        if found is None:
            return False
    row.iid, row.created = iid, found[2]
    params = _row_params(eid, pid, row)
    record_shapes(conn, [params])
    conn.execute(_INSERT[TABLES[0]], params)
    return True


def count_instances(conn: sqlite3.Connection, eids: Sequence[int]) -> int:
    """Number of instances the given entities have (one count per table and 500 entities)."""
    total = 0
    for chunk in _chunks(eids):
        marks = ",".join("?" * len(chunk))
        for table in TABLES:
            sql = f"SELECT count(*) FROM {table} WHERE eid IN ({marks})"
            total += conn.execute(sql, chunk).fetchone()[0]
    return total


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
    """The next ``size`` rows of entity ``eid`` after key ``after`` (both tables, merged)."""
    parts = [
        conn.execute(
            f"SELECT pid, {_ROW_COLUMNS} FROM {table} "
            "WHERE eid = ? AND (pid, ds, observed, iid) > (?, ?, ?, ?) "
            "ORDER BY pid, ds, observed, iid LIMIT ?",
            (eid, *after, size),
        ).fetchall()
        for table in TABLES
    ]
    rows = list(heapq.merge(*parts, key=lambda r: (r[0], r[7], r[1], r[2])))[:size]
    out = [_history_row(names(r[0]) or "", r[1:]) for r in rows]
    last = (rows[-1][0], rows[-1][7], rows[-1][1], rows[-1][2]) if rows else after
    return out, last


# --- reading


def recent_of(conn: sqlite3.Connection, eids: Sequence[int]) -> dict[int, Recent]:
    """The instances of the given entities still in ``recent_instances`` (one scan of that
    small table per 500 entities), by entity and series."""
    found: dict[int, Recent] = {}
    for chunk in _chunks(eids):
        marks = ",".join("?" * len(chunk))
        for eid, pid, *row in conn.execute(
            f"SELECT eid, pid, {_ROW_COLUMNS} FROM recent_instances WHERE eid IN ({marks})",
            chunk,
        ):
            found.setdefault(eid, {}).setdefault((pid, row[6]), []).append(tuple(row))
    return found


#: an attribute's datasets, one index seek each (one statement: the first dataset, then
#: each one strictly after the last found)
_DATASETS = (
    "WITH RECURSIVE d(ds) AS ("
    "SELECT (SELECT ds FROM attr_instances WHERE eid = ?1 AND pid = ?2 ORDER BY ds LIMIT 1) "
    "UNION ALL SELECT (SELECT ds FROM attr_instances WHERE eid = ?1 AND pid = ?2 AND ds > d.ds "
    "ORDER BY ds LIMIT 1) FROM d WHERE d.ds IS NOT NULL) "
    "SELECT ds FROM d WHERE ds IS NOT NULL"
)


def series_of(
    conn: sqlite3.Connection, eid: int, pids: Sequence[int] | None, recent: Recent
) -> list[Series]:
    """The (attribute, datasetId) series an entity has history for, by skipping through
    the primary key (one index seek per series instead of a scan of every instance), and
    those with recent instances only; ordered by attribute (as in ``pids`` when given),
    then dataset."""
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
                break
            found.append(row)
            key = (row[0], row[1])  # the next dataset (or attribute): strictly greater
    else:
        for pid in pids:
            found += [(pid, ds) for (ds,) in conn.execute(_DATASETS, (eid, pid))]
    only_recent = recent.keys() - set(found)
    if pids is not None:
        only_recent = {s for s in only_recent if s[0] in pids}
    if not only_recent:
        return found
    found += only_recent
    if pids is None:
        return sorted(found)
    rank = {pid: i for i, pid in enumerate(pids)}
    return sorted(found, key=lambda s: (rank[s[0]], s[1]))


def time_clause(query: TemporalQuery, column: str) -> tuple[str, list[int]]:
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


def _recent_part(
    rows: list[tuple[Any, ...]], at: int, bounds: tuple[int | None, int | None], descending: bool
) -> list[tuple[Any, ...]]:
    """Recent instances of one series in the time range, in the order of the SQL reads."""
    low, high = bounds
    kept = [r for r in rows if (low is None or r[at] >= low) and (high is None or r[at] < high)]
    kept.sort(key=lambda r: (r[at], r[1]), reverse=descending)
    return kept


def read_instances(
    conn: sqlite3.Connection,
    eid: int,
    series: dict[Series, str],
    query: TemporalQuery,
    recent: Recent | None = None,
) -> tuple[dict[str, list[HistoryRow]], tuple[int, int] | None]:
    """Each attribute's instances in the time range (oldest first, datasets merged), at
    most ``query.instance_limit`` per attribute; the window actually covered when cut short."""
    column = TIME_COLUMNS[query.timeproperty]
    time_sql, time_params = time_clause(query, column)
    descending = query.descending
    order = "DESC" if descending else "ASC"
    want, fetch = instance_budget(query)
    can_overflow = fetch > want
    at = _TIME_INDEX[column]
    bounds = query.time.bounds() if query.time is not None else (None, None)
    sql = (
        f"SELECT {_ROW_COLUMNS} FROM attr_instances WHERE eid = ? AND pid = ? AND ds = ?"
        f"{time_sql} ORDER BY {column} {order}, iid {order} LIMIT ?"
    )
    by_attr: dict[str, list[Sequence[Sequence[Any]]]] = {}
    for (pid, ds), attr in series.items():
        raw = conn.execute(sql, (eid, pid, ds, *time_params, fetch)).fetchall()
        if raw:
            by_attr.setdefault(attr, []).append(raw)
        if recent and (pid, ds) in recent:
            part = _recent_part(recent[(pid, ds)], at, bounds, descending)
            if part:
                by_attr.setdefault(attr, []).append(part[:fetch])
    found: dict[str, list[HistoryRow]] = {}
    cut_at: list[int] = []
    for attr, parts in by_attr.items():
        if len(parts) == 1:
            raw = parts[0]
        else:  # several datasets or both tables: merge them on (time, instance number)
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
