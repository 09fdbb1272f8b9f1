"""Entity history on PostgreSQL: writing instance rows, monthly partitions, reading series.

Instances live in ``attr_instances``, range-partitioned by month of ``observed`` and keyed
by series (``attr_series``: entity, attribute, datasetId) then time, so one series' time
range is one index range in few partitions. Partitions are created on demand, in a short
transaction of their own: a write that needs a missing month raises
:class:`NeedPartitions`, the store creates them and runs the write again. Months far
from now go to the default partition instead of making a table each.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from urbanstack.ngsild.history import (
    VT_BOOL,
    VT_JSON,
    VT_NUMBER,
    HistoryRow,
    TemporalEntity,
    cut_to_window,
    instance_budget,
    row_time,
)
from urbanstack.ngsild.model import ATTRIBUTE_TYPES
from urbanstack.ngsild.temporal import TemporalQuery, to_micros

KIND_CODES = {name: code for code, name in enumerate(ATTRIBUTE_TYPES)}
TIME_COLUMNS = {"observedAt": "observed", "createdAt": "created", "modifiedAt": "modified"}
ROW_COLUMNS = "observed, iid, has_observed, created, modified, kind, vt, num, inum, val, extra"
PARTITION_YEARS_BACK = 20  # months older than this go to the default partition
PARTITION_YEARS_AHEAD = 1
_INT64 = 2**63
Month = tuple[int, int]  # (year, month)
Series = tuple[int, str, str]  # (sid, attribute, datasetId)


class NeedPartitions(Exception):
    """A write needs monthly partitions that do not exist yet."""

    def __init__(self, schema: str, months: set[Month]) -> None:
        super().__init__(f"{schema}: {sorted(months)}")
        self.schema = schema
        self.months = months


def month_of(micros: int) -> Month:
    moment = datetime.fromtimestamp(micros / 1_000_000, UTC)
    return moment.year, moment.month


def month_start(month: Month) -> int:
    year, number = month
    if number > 12:
        year, number = year + 1, 1
    return to_micros(f"{year:04d}-{number:02d}-01T00:00:00.000000Z")


def next_month(month: Month) -> Month:
    year, number = month
    return (year + 1, 1) if number == 12 else (year, number + 1)


class Partitions:
    """Which months have a partition (or were left to the default one), per schema."""

    def __init__(self) -> None:
        self.known: dict[str, set[Month]] = {}

    @staticmethod
    def window() -> tuple[Month, Month]:
        now = datetime.now(UTC)
        return (now.year - PARTITION_YEARS_BACK, now.month), (
            now.year + PARTITION_YEARS_AHEAD,
            now.month,
        )

    def check(self, schema: str, times: Iterable[int]) -> None:
        """Raise NeedPartitions for the months of ``times`` that have none yet."""
        known = self.known.get(schema, set())
        low, high = self.window()
        missing = set()
        for micros in times:
            try:
                month = month_of(micros)
            except (OverflowError, OSError, ValueError):
                continue  # far outside any window: the default partition
            if month not in known and low <= month <= high:
                missing.add(month)
        if missing:
            raise NeedPartitions(schema, missing)

    async def load(self, conn: asyncpg.Connection, schema: str) -> None:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = $1::regclass",
            f"{schema}.attr_instances",
        )
        known = self.known.setdefault(schema, set())
        for row in rows:
            name = row["relname"]
            if name.startswith("attr_instances_y"):  # attr_instances_y2026m11
                known.add((int(name[16:20]), int(name[21:23])))

    async def create(self, conn: asyncpg.Connection, schema: str, months: set[Month]) -> None:
        """Create the partitions of ``months`` (in the caller's transaction, which holds
        the schema's advisory lock); a month the default partition already holds rows
        of stays there."""
        known = self.known.setdefault(schema, set())
        for month in sorted(months):
            name = f"attr_instances_y{month[0]:04d}m{month[1]:02d}"
            try:
                async with conn.transaction():
                    await conn.execute(
                        f'CREATE TABLE IF NOT EXISTS {schema}."{name}" PARTITION OF '
                        f"{schema}.attr_instances FOR VALUES FROM ({month_start(month)}) "
                        f"TO ({month_start(next_month(month))})"
                    )
            except asyncpg.CheckViolationError:
                pass  # rows of that month are in the default partition: they stay there
            known.add(month)


# --- writing


async def ensure_entities(
    conn: asyncpg.Connection, schema: str, entities: dict[str, list[str]]
) -> dict[str, int]:
    """eid of each id (created when new, types refreshed when they changed)."""
    ids = list(entities)
    rows = await conn.fetch(
        f"SELECT eid, id, types FROM {schema}.temporal_entities WHERE id = ANY($1::text[])", ids
    )
    eids = {r["id"]: r["eid"] for r in rows}
    changed = [r for r in rows if entities[r["id"]] and list(r["types"]) != entities[r["id"]]]
    if changed:
        await conn.execute(
            f"UPDATE {schema}.temporal_entities t SET types = string_to_array(u.t, chr(31)) "
            "FROM unnest($1::bigint[], $2::text[]) AS u(eid, t) WHERE t.eid = u.eid",
            [r["eid"] for r in changed],
            ["\x1f".join(entities[r["id"]]) for r in changed],
        )
    missing = [i for i in ids if i not in eids]
    while missing:
        created = await conn.fetch(
            f"INSERT INTO {schema}.temporal_entities (id, types) "
            "SELECT u.i, string_to_array(u.t, chr(31)) FROM unnest($1::text[], $2::text[]) "
            "AS u(i, t) ON CONFLICT (id) DO NOTHING RETURNING eid, id",
            missing,
            ["\x1f".join(entities[i]) for i in missing],
        )
        eids.update({r["id"]: r["eid"] for r in created})
        if len(created) < len(missing):  # created meanwhile by another transaction
            rows = await conn.fetch(
                f"SELECT eid, id FROM {schema}.temporal_entities WHERE id = ANY($1::text[])",
                [i for i in missing if i not in eids],
            )
            eids.update({r["id"]: r["eid"] for r in rows})
        missing = [i for i in ids if i not in eids]
    return eids


async def ensure_series(
    conn: asyncpg.Connection, schema: str, keys: list[tuple[int, str, str]]
) -> dict[tuple[int, str, str], int]:
    """sid of each (eid, attribute, datasetId), created when new."""
    sids: dict[tuple[int, str, str], int] = {}
    for _ in range(3):
        columns = [list(c) for c in zip(*keys, strict=True)] if keys else [[], [], []]
        rows = await conn.fetch(
            f"SELECT s.sid, s.eid, s.attr, s.ds FROM {schema}.attr_series s "
            "JOIN unnest($1::bigint[], $2::text[], $3::text[]) AS u(eid, attr, ds) "
            "ON s.eid = u.eid AND s.attr = u.attr AND s.ds = u.ds",
            *columns,
        )
        sids.update({(r["eid"], r["attr"], r["ds"]): r["sid"] for r in rows})
        missing = [k for k in keys if k not in sids]
        if not missing:
            return sids
        columns = [list(c) for c in zip(*missing, strict=True)]
        rows = await conn.fetch(
            f"INSERT INTO {schema}.attr_series (eid, attr, ds) "
            "SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) "
            "ON CONFLICT (eid, attr, ds) DO NOTHING RETURNING sid, eid, attr, ds",
            *columns,
        )
        sids.update({(r["eid"], r["attr"], r["ds"]): r["sid"] for r in rows})
        keys = [k for k in keys if k not in sids]
        if not keys:
            return sids
    raise RuntimeError("attribute series kept being created concurrently")


def row_values(sid: int, row: HistoryRow) -> tuple[Any, ...]:
    """The ``attr_instances`` columns of one history row."""
    num = inum = val = None
    if row.vt in (VT_NUMBER, VT_BOOL):
        value = row.val
        num = float(value)
        if isinstance(value, int) and -_INT64 <= value < _INT64:
            inum = int(value)
    elif row.vt == VT_JSON:
        val = row.val.decode() if isinstance(row.val, bytes | bytearray) else row.val
    else:
        val = row.val
    return (
        sid,
        row.observed,
        row.iid,
        row.has_observed,
        row.created,
        row.modified,
        KIND_CODES[row.kind],
        row.vt,
        num,
        inum,
        val,
        row.extra,
    )


INSERT_INSTANCES = (
    "INSERT INTO {schema}.attr_instances (sid, observed, iid, has_observed, created, modified, "
    "kind, vt, num, inum, val, extra) SELECT * FROM unnest($1::bigint[], $2::bigint[], "
    "$3::bigint[], $4::boolean[], $5::bigint[], $6::bigint[], $7::smallint[], $8::smallint[], "
    "$9::float8[], $10::bigint[], $11::text[], $12::bytea[])"
)


async def insert_instances(
    conn: asyncpg.Connection, schema: str, rows: list[tuple[Any, ...]]
) -> None:
    if rows:
        columns = [list(c) for c in zip(*rows, strict=True)]
        await conn.execute(INSERT_INSTANCES.format(schema=schema), *columns)


async def insert_history(
    conn: asyncpg.Connection,
    schema: str,
    pending: dict[str, list[HistoryRow]],
    types: dict[str, list[str]],
    partitions: Partitions,
) -> None:
    """Append history rows; each gets the next instance number (``row.iid`` is set)."""
    partitions.check(schema, (r.observed for rows in pending.values() for r in rows))
    eids = await ensure_entities(conn, schema, {i: types.get(i, []) for i in pending})
    keys = {(eids[i], r.attr, r.dataset_id or "") for i, rows in pending.items() for r in rows}
    sids = await ensure_series(conn, schema, sorted(keys))
    total = sum(len(rows) for rows in pending.values())
    numbers = await conn.fetch(
        "SELECT nextval($1::regclass) AS n FROM generate_series(1, $2)",
        f"{schema}.instance_numbers",
        total,
    )
    fresh = iter(sorted(r["n"] for r in numbers))
    values = []
    for entity_id, rows in pending.items():
        eid = eids[entity_id]
        for row in rows:
            row.iid = next(fresh)
            values.append(row_values(sids[(eid, row.attr, row.dataset_id or "")], row))
    await insert_instances(conn, schema, values)


async def delete_entity_history(
    conn: asyncpg.Connection, schema: str, entity_ids: Sequence[str]
) -> int:
    """Drop the whole history of the given entities; the number of entities that had one."""
    eids = await conn.fetch(
        f"DELETE FROM {schema}.temporal_entities WHERE id = ANY($1::text[]) RETURNING eid",
        list(entity_ids),
    )
    if eids:
        sids = await conn.fetch(
            f"DELETE FROM {schema}.attr_series WHERE eid = ANY($1::bigint[]) RETURNING sid",
            [r["eid"] for r in eids],
        )
        if sids:
            await conn.execute(
                f"DELETE FROM {schema}.attr_instances WHERE sid = ANY($1::bigint[])",
                [r["sid"] for r in sids],
            )
    return len(eids)


# --- reading


def history_row(attr: str, ds: str, r: asyncpg.Record) -> HistoryRow:
    vt = r["vt"]
    if vt in (VT_NUMBER, VT_BOOL):
        val: Any = r["inum"] if r["inum"] is not None else r["num"]
    elif vt == VT_JSON:
        val = r["val"].encode()
    else:
        val = r["val"]
    return HistoryRow(
        attr,
        ATTRIBUTE_TYPES[r["kind"]],
        vt,
        val,
        r["extra"],
        ds or None,
        r["observed"],
        r["has_observed"],
        r["created"],
        r["modified"],
        r["iid"],
    )


async def series_of(
    conn: asyncpg.Connection, schema: str, eid: int, attrs: Sequence[str] | None
) -> list[Series]:
    """The (sid, attribute, datasetId) series an entity has (some may hold no rows)."""
    if attrs is None:
        rows = await conn.fetch(
            f"SELECT sid, attr, ds FROM {schema}.attr_series WHERE eid = $1 ORDER BY attr, ds",
            eid,
        )
    else:
        rows = await conn.fetch(
            f"SELECT sid, attr, ds FROM {schema}.attr_series WHERE eid = $1 "
            "AND attr = ANY($2::text[]) ORDER BY attr, ds",
            eid,
            list(attrs),
        )
    return [(r["sid"], r["attr"], r["ds"]) for r in rows]


def time_clause(query: TemporalQuery, column: str, first: int) -> tuple[str, list[int]]:
    """`` AND column >= $n AND column < $m`` for the query's time filter, from ``$first``."""
    if query.time is None:
        return "", []
    low, high = query.time.bounds()
    clauses, params = [], []
    for bound, op in ((low, ">="), (high, "<")):
        if bound is not None:
            clauses.append(f" AND {column} {op} ${first + len(params)}")
            params.append(bound)
    return "".join(clauses), params


async def read_instances(
    conn: asyncpg.Connection, schema: str, series: list[Series], query: TemporalQuery
) -> tuple[dict[str, list[HistoryRow]], tuple[int, int] | None]:
    """Each attribute's instances in the time range (oldest first, datasets merged), at
    most ``query.instance_limit`` per attribute; the window actually covered when cut short."""
    column = TIME_COLUMNS[query.timeproperty]
    time_sql, time_params = time_clause(query, column, 3)
    descending = query.descending
    order = "DESC" if descending else "ASC"
    want, fetch = instance_budget(query)
    can_overflow = fetch > want
    # one round trip: each series' first rows, through its (sid, time) index range
    rows = await conn.fetch(
        f"SELECT u.sid, r.* FROM unnest($1::bigint[]) AS u(sid) CROSS JOIN LATERAL "
        f"(SELECT {ROW_COLUMNS} FROM {schema}.attr_instances a WHERE a.sid = u.sid{time_sql} "
        f"ORDER BY {column} {order}, iid {order} LIMIT $2) r",
        [s[0] for s in series],
        fetch,
        *time_params,
    )
    names = {sid: (attr, ds) for sid, attr, ds in series}
    by_series: dict[int, list[HistoryRow]] = {}
    for r in rows:
        attr, ds = names[r["sid"]]
        by_series.setdefault(r["sid"], []).append(history_row(attr, ds, r))
    by_attr: dict[str, list[list[HistoryRow]]] = {}
    for sid, attr, _ in series:
        if sid in by_series:
            by_attr.setdefault(attr, []).append(by_series[sid])
    found: dict[str, list[HistoryRow]] = {}
    cut_at: list[int] = []
    for attr, parts in by_attr.items():
        if len(parts) == 1:
            merged = parts[0]
        else:  # several datasets: merge them on (time, instance number)
            prop = query.timeproperty
            merged = list(
                heapq.merge(
                    *parts, key=lambda h: (row_time(h, prop), h.iid or 0), reverse=descending
                )
            )[:fetch]
        if can_overflow and len(merged) > want:
            cut_at.append(row_time(merged[want], query.timeproperty))
            merged = merged[:want]
        found[attr] = merged
    window = cut_to_window(found, cut_at, query) if cut_at else None
    if descending:
        for kept in found.values():
            kept.reverse()
    return found, window


async def load_history(
    conn: asyncpg.Connection,
    schema: str,
    eid: int,
    entity_id: str,
    types: list[str],
    query: TemporalQuery,
    *,
    exact_sums: bool = False,
) -> TemporalEntity:
    """One entity's history as :class:`TemporalEntity` (instances or aggregates; see
    ``aggregate_instances`` for ``exact_sums``)."""
    from urbanstack.store.postgres_aggregate import aggregate_instances

    wanted = sorted(query.attrs) if query.attrs is not None else None
    series = await series_of(conn, schema, eid, wanted)
    if query.aggregation is not None:
        aggregates = await aggregate_instances(conn, schema, series, query, exact_sums=exact_sums)
        return TemporalEntity(entity_id, types, {}, aggregates)
    rows, window = await read_instances(conn, schema, series, query)
    return TemporalEntity(entity_id, types, rows, None, window)
