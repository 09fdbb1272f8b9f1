"""Records and bounded logs on PostgreSQL (the default tenant's schema), mixed into
:class:`~urbanstack.store.postgres.PostgresStore`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from urbanstack.ngsild.model import now_timestamp
from urbanstack.store.base import RecordChange
from urbanstack.store.changes import run_record_changes
from urbanstack.store.postgres_write import Retry

if TYPE_CHECKING:
    from urbanstack.store.postgres import PostgresStore

    _Base = PostgresStore
else:
    _Base = object


class PostgresRecords(_Base):
    """Record and log methods of the storage contract."""

    async def get_record(self, kind: str, key: str) -> Any | None:
        async def run(conn: asyncpg.Connection, schema: str) -> Any | None:
            doc = await conn.fetchval(
                f"SELECT doc FROM {schema}.records WHERE kind = $1 AND key = $2", kind, key
            )
            return None if doc is None else orjson.loads(doc)

        return await self._read(None, run)

    async def list_records(
        self, kind: str, limit: int, offset: int = 0, prefix: str = ""
    ) -> tuple[list[tuple[str, Any]], int]:
        async def run(conn: asyncpg.Connection, schema: str) -> tuple[list[tuple[str, Any]], int]:
            where = "kind = $1 AND starts_with(key, $2)"
            rows = await conn.fetch(
                f"SELECT key, doc FROM {schema}.records WHERE {where} ORDER BY key "
                "LIMIT $3 OFFSET $4",
                kind,
                prefix,
                limit,
                offset,
            )
            total = await conn.fetchval(
                f"SELECT count(*) FROM {schema}.records WHERE {where}", kind, prefix
            )
            return [(r["key"], orjson.loads(r["doc"])) for r in rows], total

        return await self._read(None, run)

    async def change_records(self, kind: str, changes: Sequence[RecordChange]) -> list[Any]:
        keys = list(dict.fromkeys(change.key for change in changes))

        async def run(conn: asyncpg.Connection, schema: str) -> list[Any]:
            table = f"{schema}.records"
            rows = await conn.fetch(  # every key in one query (locked), not one each
                f"SELECT key, doc FROM {table} WHERE kind = $1 AND key = ANY($2::text[]) "
                "ORDER BY key FOR UPDATE",
                kind,
                keys,
            )
            stored = {r["key"]: orjson.loads(r["doc"]) for r in rows}
            outcome = run_record_changes(changes, stored)
            now = now_timestamp()
            docs = {
                k: orjson.dumps(v).decode() for k, v in outcome.written.items() if v is not None
            }
            created = [k for k in docs if k not in stored]
            updated = [k for k in docs if k in stored]
            deleted = [k for k, v in outcome.written.items() if v is None and k in stored]
            if created:
                done = await conn.fetch(
                    f"INSERT INTO {table} (kind, key, doc, modified) "
                    "SELECT $1, k, d::json, $4 FROM unnest($2::text[], $3::text[]) AS c(k, d) "
                    "ON CONFLICT DO NOTHING RETURNING key",
                    kind,
                    created,
                    [docs[k] for k in created],
                    now,
                )
                if len(done) < len(created):
                    raise Retry  # created meanwhile by another process: apply again
            if updated:
                await conn.execute(
                    f"UPDATE {table} AS r SET doc = u.d::json, modified = $4 "
                    "FROM unnest($2::text[], $3::text[]) AS u(k, d) "
                    "WHERE r.kind = $1 AND r.key = u.k",
                    kind,
                    updated,
                    [docs[k] for k in updated],
                    now,
                )
            if deleted:
                await conn.execute(
                    f"DELETE FROM {table} WHERE kind = $1 AND key = ANY($2::text[])", kind, deleted
                )
            return outcome.results

        return await self._write(None, run)

    async def append_log(self, kind: str, entries: Sequence[Any], keep: int) -> None:
        if not entries:
            return

        async def run(conn: asyncpg.Connection, schema: str) -> None:
            table = f"{schema}.logs"
            await conn.execute(
                f"INSERT INTO {table} (kind, doc) SELECT $1, u.d::json "
                "FROM unnest($2::text[]) WITH ORDINALITY AS u(d, n) ORDER BY u.n",
                kind,
                [orjson.dumps(e).decode() for e in entries],
            )
            cutoff = await conn.fetchval(
                f"SELECT seq FROM {table} WHERE kind = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2",
                kind,
                keep,
            )
            if cutoff is not None:
                await conn.execute(
                    f"DELETE FROM {table} WHERE kind = $1 AND seq <= $2", kind, cutoff
                )

        await self._write(None, run)

    async def read_log(self, kind: str, limit: int, before: int = 0) -> list[tuple[int, Any]]:
        async def run(conn: asyncpg.Connection, schema: str) -> list[tuple[int, Any]]:
            rows = await conn.fetch(
                f"SELECT seq, doc FROM {schema}.logs WHERE kind = $1 AND seq < $2 "
                "ORDER BY seq DESC LIMIT $3",
                kind,
                before if before > 0 else 2**62,
                limit,
            )
            return [(r["seq"], orjson.loads(r["doc"])) for r in rows]

        return await self._read(None, run)
