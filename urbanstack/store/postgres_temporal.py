"""The history half of the PostgreSQL store (the temporal API), mixed into the store.

Kept apart from ``postgres.py`` for size; it uses the store's pool and transactions
(``_read``, ``_write``, ``_run_query``) and ``postgres_history`` for the SQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from urbanstack.ngsild.history import HistoryRow, TemporalEntity
from urbanstack.ngsild.query import EntityQuery
from urbanstack.ngsild.temporal import TemporalQuery
from urbanstack.store import postgres_history as history
from urbanstack.store.base import TemporalPage, validate_tenant

T = TypeVar("T")

if TYPE_CHECKING:
    from urbanstack.store.postgres import PostgresStore

    _Base = PostgresStore
else:
    _Base = object


def _count(status: str) -> int:
    """Rows a DELETE/UPDATE status string (``DELETE 3``) says it touched."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresHistory(_Base):
    """History methods of the storage contract on PostgreSQL."""

    async def _history_of(
        self,
        conn: asyncpg.Connection,
        schema: str,
        entity_ids: Sequence[str],
        query: TemporalQuery,
        exact_sums: bool = False,
    ) -> list[TemporalEntity]:
        rows = await conn.fetch(
            f"SELECT eid, id, types FROM {schema}.temporal_entities WHERE id = ANY($1::text[])",
            list(entity_ids),
        )
        known = {r["id"]: r for r in rows}
        out = []
        for entity_id in entity_ids:
            row = known.get(entity_id)
            if row is None:
                out.append(TemporalEntity(entity_id, [], {}))
                continue
            out.append(
                await history.load_history(
                    conn,
                    schema,
                    row["eid"],
                    entity_id,
                    list(row["types"]),
                    query,
                    exact_sums=exact_sums,
                )
            )
        return out

    async def get_history(
        self, tenant: str | None, entity_id: str, query: TemporalQuery
    ) -> TemporalEntity | None:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> TemporalEntity | None:
            async def read(exact_sums: bool) -> TemporalEntity | None:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    found = await conn.fetchval(
                        f"SELECT 1 FROM {schema}.temporal_entities WHERE id = $1", entity_id
                    )
                    if found is None:
                        return None
                    entities = await self._history_of(conn, schema, [entity_id], query, exact_sums)
                    return entities[0]

            return await _with_exact_sums_on_overflow(read)

        return await self._read(tenant, run)

    async def query_history(
        self, tenant: str | None, query: EntityQuery, temporal: TemporalQuery
    ) -> TemporalPage:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> TemporalPage:
            async def read(exact_sums: bool) -> TemporalPage:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    selected = await self._run_query(conn, schema, query, ids=True)
                    ids = [str(i) for i in selected.views or []]
                    entities = await self._history_of(conn, schema, ids, temporal, exact_sums)
                return TemporalPage(entities, selected.total)

            return await _with_exact_sums_on_overflow(read)

        return await self._read(tenant, run)

    async def _change_attribute_history(
        self,
        tenant: str | None,
        entity_id: str,
        attr: str,
        change: Callable[[asyncpg.Connection, str, int, list[int]], Awaitable[bool]],
    ) -> bool:
        """Run ``change(conn, schema, eid, sids)`` in a write, with the attribute's series;
        False when the entity has no history or the attribute was never recorded."""
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> bool:
            eid = await conn.fetchval(
                f"SELECT eid FROM {schema}.temporal_entities WHERE id = $1", entity_id
            )
            if eid is None:
                return False
            sids = await conn.fetch(
                f"SELECT sid FROM {schema}.attr_series WHERE eid = $1 AND attr = $2", eid, attr
            )
            if not sids:
                return False
            return await change(conn, schema, eid, [r["sid"] for r in sids])

        return await self._write(tenant, run, create=False)

    async def update_instance(
        self, tenant: str | None, entity_id: str, attr: str, instance: int, row: HistoryRow
    ) -> bool:
        async def change(conn: asyncpg.Connection, schema: str, eid: int, sids: list[int]) -> bool:
            found = await conn.fetchrow(
                f"DELETE FROM {schema}.attr_instances WHERE sid = ANY($1::bigint[]) "
                "AND iid = $2 RETURNING created",
                sids,
                instance,
            )
            if found is None:
                return False
            self._partitions.check(schema, [row.observed])
            keys = [(eid, attr, row.dataset_id or "")]
            sid = (await history.ensure_series(conn, schema, keys))[keys[0]]
            row.iid, row.created = instance, found["created"]
            await history.insert_instances(conn, schema, [history.row_values(sid, row)])
            return True

        return await self._change_attribute_history(tenant, entity_id, attr, change)

    async def delete_instance(
        self, tenant: str | None, entity_id: str, attr: str, instance: int
    ) -> bool:
        async def change(conn: asyncpg.Connection, schema: str, eid: int, sids: list[int]) -> bool:
            done = await conn.execute(
                f"DELETE FROM {schema}.attr_instances WHERE sid = ANY($1::bigint[]) AND iid = $2",
                sids,
                instance,
            )
            return _count(done) > 0

        return await self._change_attribute_history(tenant, entity_id, attr, change)

    async def delete_attribute_history(
        self, tenant: str | None, entity_id: str, attr: str, dataset_id: str | None, every: bool
    ) -> bool:
        async def change(conn: asyncpg.Connection, schema: str, eid: int, sids: list[int]) -> bool:
            series = f"{schema}.attr_series"
            if not every:
                rows = await conn.fetch(
                    f"SELECT sid FROM {series} WHERE sid = ANY($1::bigint[]) AND ds = $2",
                    sids,
                    dataset_id or "",
                )
                sids = [r["sid"] for r in rows]
            done = await conn.execute(
                f"DELETE FROM {schema}.attr_instances WHERE sid = ANY($1::bigint[])", sids
            )
            await conn.execute(f"DELETE FROM {series} WHERE sid = ANY($1::bigint[])", sids)
            return _count(done) > 0

        return await self._change_attribute_history(tenant, entity_id, attr, change)

    async def delete_history(self, tenant: str | None, entity_id: str) -> bool:
        tenant = validate_tenant(tenant)
        return await self._write(
            tenant,
            lambda conn, schema: self._delete_history(conn, schema, entity_id),
            create=False,
        )

    @staticmethod
    async def _delete_history(conn: asyncpg.Connection, schema: str, entity_id: str) -> bool:
        return await history.delete_entity_history(conn, schema, [entity_id]) > 0

    async def prune_history(self, tenant: str | None, before: int) -> int:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> int:
            # whole months before the cut: their partitions are emptied at once
            deleted = 0
            for name in await _partitions_before(conn, schema, before):
                deleted += await conn.fetchval(f'SELECT count(*) FROM {schema}."{name}"')
                await conn.execute(f'TRUNCATE {schema}."{name}"')
            done = await conn.execute(
                f"DELETE FROM {schema}.attr_instances WHERE observed < $1", before
            )
            return deleted + _count(done)

        return await self._write(tenant, run, create=False)

    async def count_history(self, tenant: str | None, entity_type: str) -> int:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> int:
            return await conn.fetchval(
                f"SELECT count(*) FROM {schema}.attr_instances a "
                f"JOIN {schema}.attr_series s ON s.sid = a.sid "
                f"JOIN {schema}.temporal_entities t ON t.eid = s.eid "
                "WHERE t.types @> ARRAY[$1::text]",
                entity_type,
            )

        return await self._read(tenant, run)

    async def history_types(self, tenant: str | None) -> dict[str, int]:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
            rows = await conn.fetch(
                f"SELECT t AS type, count(*) AS n FROM {schema}.temporal_entities, "
                "unnest(types) AS t GROUP BY t"
            )
            return {r["type"]: r["n"] for r in rows}

        return await self._read(tenant, run)

    async def history_entity_types(
        self, tenant: str | None, entity_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> dict[str, list[str]]:
            rows = await conn.fetch(
                f"SELECT id, types FROM {schema}.temporal_entities WHERE id = ANY($1::text[])",
                list(entity_ids),
            )
            return {r["id"]: list(r["types"]) for r in rows}

        return await self._read(tenant, run)

    async def export_history(
        self, tenant: str | None, entity_type: str, batch_size: int = 5000
    ) -> AsyncIterator[list[tuple[str, HistoryRow]]]:
        tenant = validate_tenant(tenant)

        async def entities(conn: asyncpg.Connection, schema: str) -> list[asyncpg.Record]:
            return await conn.fetch(
                f"SELECT eid, id FROM {schema}.temporal_entities "
                "WHERE types @> ARRAY[$1::text] ORDER BY eid",
                entity_type,
            )

        for entity in await self._read(tenant, entities):
            after: tuple[str, str, int, int] = ("", "", -(2**62), -1)
            while True:
                batch, after = await self._read(
                    tenant,
                    lambda conn, schema, a=after, e=entity["eid"]: _export_batch(
                        conn, schema, e, a, batch_size
                    ),
                )
                if not batch:
                    break
                yield [(entity["id"], row) for row in batch]


async def _partitions_before(conn: asyncpg.Connection, schema: str, before: int) -> list[str]:
    """Monthly partitions whose every instance is filed before ``before``."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass AND c.relname LIKE 'attr\\_instances\\_y%'",
        f"{schema}.attr_instances",
    )
    out = []
    for row in rows:
        name = row["relname"]
        month = (int(name[16:20]), int(name[21:23]))
        if history.month_start(history.next_month(month)) <= before:
            out.append(name)
    return out


async def _export_batch(
    conn: asyncpg.Connection,
    schema: str,
    eid: int,
    after: tuple[str, str, int, int],
    size: int,
) -> tuple[list[HistoryRow], tuple[str, str, int, int]]:
    """The next ``size`` rows of entity ``eid`` after (attribute, dataset, time, number)."""
    rows = await conn.fetch(
        f"SELECT s.attr, s.ds, a.* FROM {schema}.attr_instances a "
        f"JOIN {schema}.attr_series s ON s.sid = a.sid "
        "WHERE s.eid = $1 AND (s.attr, s.ds, a.observed, a.iid) > ($2, $3, $4, $5) "
        "ORDER BY s.attr, s.ds, a.observed, a.iid LIMIT $6",
        eid,
        *after,
        size,
    )
    out = [history.history_row(r["attr"], r["ds"], r) for r in rows]
    if not rows:
        return out, after
    last = rows[-1]
    return out, (last["attr"], last["ds"], last["observed"], last["iid"])


async def _with_exact_sums_on_overflow(read: Callable[[bool], Awaitable[T]]) -> T:
    """``read(False)``, or ``read(True)`` (sums in numeric) when float sums overflowed."""
    try:
        return await read(False)
    except asyncpg.exceptions.NumericValueOutOfRangeError:
        return await read(True)
