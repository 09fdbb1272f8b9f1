"""The history half of the SQLite store (the temporal API), mixed into :class:`SQLiteStore`.

Kept apart from ``sqlite.py`` for size; it uses the store's connections and writer
thread (``_read``, ``_write``, ``_pid_lookup``) and ``sqlite_history`` for the SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from urbanstack.ngsild.history import HistoryRow, TemporalEntity
from urbanstack.ngsild.query import EntityQuery
from urbanstack.ngsild.temporal import TemporalQuery
from urbanstack.store import sqlite_history
from urbanstack.store.base import TemporalPage, validate_tenant
from urbanstack.store.sqlite_aggregate import aggregate_instances

if TYPE_CHECKING:
    from urbanstack.store.sqlite import SQLiteStore

    _Base = SQLiteStore
else:
    _Base = object

PRUNE_CHUNK = 200  # entities per retention write


class SQLiteHistory(_Base):
    """History methods of the storage contract on the SQLite files."""

    # --- history

    async def tenants(self) -> list[str | None]:
        return [None, *sorted(t for t in self._known_tenants if t is not None)]

    def _attr_names(self, conn: sqlite3.Connection) -> Callable[[int], str | None]:
        names: dict[int, str | None] = {}

        def name(pid: int) -> str | None:
            if pid not in names:
                row = conn.execute("SELECT path FROM paths WHERE pid = ?", (pid,)).fetchone()
                names[pid] = row[0] if row else None
            return names[pid]

        return name

    def _history_of(
        self,
        conn: sqlite3.Connection,
        tenant: str | None,
        entity_ids: Sequence[str],
        query: TemporalQuery,
    ) -> list[TemporalEntity]:
        """The histories of ``entity_ids``, an empty one for an id without history."""
        return [
            found or TemporalEntity(entity_id, [], {})
            for entity_id, found in zip(
                entity_ids, self._histories(conn, tenant, entity_ids, query), strict=True
            )
        ]

    def _histories(
        self,
        conn: sqlite3.Connection,
        tenant: str | None,
        entity_ids: Sequence[str],
        query: TemporalQuery,
    ) -> list[TemporalEntity | None]:
        """The histories of ``entity_ids``, None for an id without history."""
        known = sqlite_history.entity_numbers(conn, entity_ids)
        wanted: dict[int, str] | None = None
        if query.attrs is not None:
            lookup = self._pid_lookup(conn, tenant)
            wanted = {p: a for a in sorted(query.attrs) if (p := lookup(a)) is not None}
        names = self._attr_names(conn)
        recent = sqlite_history.recent_of(conn, [eid for eid, _ in known.values()])
        out: list[TemporalEntity | None] = []
        for entity_id in entity_ids:
            row = known.get(entity_id)
            if row is None:
                out.append(None)
                continue
            types = orjson.loads(row[1])
            out.append(load_history(conn, row[0], entity_id, types, names, query, wanted, recent))
        return out

    async def get_history(
        self, tenant: str | None, entity_id: str, query: TemporalQuery
    ) -> TemporalEntity | None:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> TemporalEntity | None:
            return self._histories(conn, tenant, [entity_id], query)[0]

        if is_small_history_read(query):
            return await self._point_read(tenant, run)
        return await self._read(tenant, run)

    async def query_history(
        self, tenant: str | None, query: EntityQuery, temporal: TemporalQuery
    ) -> TemporalPage:
        tenant = validate_tenant(tenant)
        page = self._page_reader(tenant, query, ids=True)

        def run(conn: sqlite3.Connection) -> TemporalPage:
            selected = page(conn)
            entities = self._history_of(conn, tenant, selected.views or [], temporal)
            return TemporalPage(entities, selected.total)

        return await self._read(tenant, run)

    async def _change_attribute_history(
        self,
        tenant: str | None,
        entity_id: str,
        attr: str,
        change: Callable[[sqlite3.Connection, int, int], bool],
    ) -> bool:
        """Run ``change(conn, eid, pid)`` in a write; False when the entity has no history
        or the attribute was never recorded."""
        tenant = validate_tenant(tenant)
        self._check_tenant(tenant)

        def run(conn: sqlite3.Connection) -> bool:
            known = sqlite_history.entity_numbers(conn, [entity_id])
            pid = self._pid_lookup(conn, tenant)(attr)
            if entity_id not in known or pid is None:
                return False
            return change(conn, known[entity_id][0], pid)

        return await self._write(tenant, run)

    async def update_instance(
        self, tenant: str | None, entity_id: str, attr: str, instance: int, row: HistoryRow
    ) -> bool:
        return await self._change_attribute_history(
            tenant,
            entity_id,
            attr,
            lambda conn, eid, pid: sqlite_history.replace_instance(conn, eid, pid, instance, row),
        )

    async def delete_instance(
        self, tenant: str | None, entity_id: str, attr: str, instance: int
    ) -> bool:
        return await self._change_attribute_history(
            tenant,
            entity_id,
            attr,
            lambda conn, eid, pid: sqlite_history.delete_instance(conn, eid, pid, instance),
        )

    async def delete_attribute_history(
        self, tenant: str | None, entity_id: str, attr: str, dataset_id: str | None, every: bool
    ) -> bool:
        dataset = None if every else dataset_id or ""
        return await self._change_attribute_history(
            tenant,
            entity_id,
            attr,
            lambda conn, eid, pid: sqlite_history.delete_series(conn, eid, pid, dataset),
        )

    async def delete_history(self, tenant: str | None, entity_id: str) -> bool:
        tenant = validate_tenant(tenant)
        self._check_tenant(tenant)
        return await self._write(
            tenant, lambda conn: sqlite_history.delete_entity_history(conn, [entity_id]) > 0
        )

    async def prune_history(self, tenant: str | None, before: int) -> int:
        tenant = validate_tenant(tenant)
        self._check_tenant(tenant)
        eids = await self._read(
            tenant,
            lambda conn: [r[0] for r in conn.execute("SELECT eid FROM temporal_entities")],
        )
        deleted = 0
        for start in range(0, len(eids), PRUNE_CHUNK):
            chunk = eids[start : start + PRUNE_CHUNK]
            # one short write per chunk: other writes interleave with a long prune
            deleted += await self._write(
                tenant, lambda conn, c=chunk: sqlite_history.prune_older_than(conn, c, before)
            )
        return deleted

    async def count_history(self, tenant: str | None, entity_type: str) -> int:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> int:
            eids = [e for e, _ in sqlite_history.entities_of_type(conn, entity_type)]
            return sqlite_history.count_instances(conn, eids)

        return await self._read(tenant, run)

    async def history_types(self, tenant: str | None) -> dict[str, int]:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            for (types,) in conn.execute("SELECT types FROM temporal_entities"):
                for entity_type in orjson.loads(types):
                    counts[entity_type] = counts.get(entity_type, 0) + 1
            return counts

        return await self._read(tenant, run)

    async def history_entity_types(
        self, tenant: str | None, entity_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> dict[str, list[str]]:
            known = sqlite_history.entity_numbers(conn, entity_ids)
            return {entity_id: orjson.loads(types) for entity_id, (_, types) in known.items()}

        return await self._read(tenant, run)

    async def export_history(
        self, tenant: str | None, entity_type: str, batch_size: int = 5000
    ) -> AsyncIterator[list[tuple[str, HistoryRow]]]:
        tenant = validate_tenant(tenant)
        entities = await self._read(
            tenant, lambda conn: sqlite_history.entities_of_type(conn, entity_type)
        )
        for eid, entity_id in entities:
            after = sqlite_history.EXPORT_START
            while True:
                batch, after = await self._read(
                    tenant,
                    lambda conn, a=after, e=eid: sqlite_history.export_batch(
                        conn, e, a, batch_size, self._attr_names(conn)
                    ),
                )
                if not batch:
                    break
                yield [(entity_id, row) for row in batch]


#: a read of at most this many instances (``lastN`` times the attributes asked for) runs on
#: the event loop, like a retrieval by id (see ``SQLiteStore._point_read``)
SMALL_HISTORY_READ = 400


def is_small_history_read(query: TemporalQuery) -> bool:
    """Whether a one-entity temporal read is bounded and short: the last few instances of a
    few named attributes (a dashboard's sparkline), not aggregations or time ranges. On the
    event loop it costs ~0.3 ms of SQLite; on a reader thread it waited for the interpreter
    lock once per row while the loop served other requests."""
    if query.aggregation is not None or query.last_n is None or query.attrs is None:
        return False
    return query.last_n * len(query.attrs) <= SMALL_HISTORY_READ


def load_history(
    conn: sqlite3.Connection,
    eid: int,
    entity_id: str,
    types: list[str],
    attr_lookup: Callable[[int], str | None],
    query: TemporalQuery,
    wanted_pids: dict[int, str] | None,
    recent_by_entity: dict[int, sqlite_history.Recent],
) -> TemporalEntity:
    """One entity's history as :class:`TemporalEntity` (instances or aggregates);
    ``recent_by_entity`` is :func:`sqlite_history.recent_of` for the entities read."""
    recent = recent_by_entity.get(eid, {})
    found = sqlite_history.series_of(
        conn, eid, None if wanted_pids is None else list(wanted_pids), recent
    )
    series: dict[sqlite_history.Series, str] = {}
    for pid, ds in found:
        attr = wanted_pids[pid] if wanted_pids is not None else attr_lookup(pid)
        if attr is not None:
            series[(pid, ds)] = attr
    if query.aggregation is not None:
        aggregates = aggregate_instances(conn, eid, series, query, recent)
        return TemporalEntity(entity_id, types, {}, aggregates)
    rows, window = sqlite_history.read_instances(conn, eid, series, query, recent)
    return TemporalEntity(entity_id, types, rows, None, window)
