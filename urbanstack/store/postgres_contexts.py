"""JSON-LD contexts on PostgreSQL (kept in the default tenant's schema), mixed into
:class:`~urbanstack.store.postgres.PostgresStore`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import orjson

from urbanstack.store.base import ContextRecord

if TYPE_CHECKING:
    from urbanstack.store.postgres import PostgresStore

    _Base = PostgresStore
else:
    _Base = object


class PostgresContexts(_Base):
    """Context methods of the storage contract."""

    _CONTEXT_COLUMNS = "id, url, kind, body, created_at, last_used, hits"

    @staticmethod
    def _context(row: asyncpg.Record) -> ContextRecord:
        return ContextRecord(
            id=row["id"],
            url=row["url"],
            kind=row["kind"],
            body=orjson.loads(row["body"]),
            created_at=row["created_at"],
            last_used=row["last_used"],
            hits=row["hits"],
        )

    async def put_context(self, record: ContextRecord) -> None:
        async def run(conn: asyncpg.Connection, schema: str) -> None:
            table = f"{schema}.jsonld_contexts"
            await conn.execute(
                f"DELETE FROM {table} WHERE url = $1 AND id <> $2", record.url, record.id
            )
            await conn.execute(
                f"INSERT INTO {table} ({self._CONTEXT_COLUMNS}) "
                "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET "
                "url = EXCLUDED.url, kind = EXCLUDED.kind, body = EXCLUDED.body, "
                "created_at = EXCLUDED.created_at, last_used = EXCLUDED.last_used, "
                "hits = EXCLUDED.hits",
                record.id,
                record.url,
                record.kind,
                orjson.dumps(record.body).decode(),
                record.created_at,
                record.last_used,
                record.hits,
            )

        await self._write(None, run)

    async def get_context(self, key: str) -> ContextRecord | None:
        async def run(conn: asyncpg.Connection, schema: str) -> ContextRecord | None:
            row = await conn.fetchrow(
                f"SELECT {self._CONTEXT_COLUMNS} FROM {schema}.jsonld_contexts "
                "WHERE id = $1 OR url = $1",
                key,
            )
            return self._context(row) if row else None

        return await self._read(None, run)

    async def list_contexts(self) -> list[ContextRecord]:
        async def run(conn: asyncpg.Connection, schema: str) -> list[ContextRecord]:
            rows = await conn.fetch(
                f"SELECT {self._CONTEXT_COLUMNS} FROM {schema}.jsonld_contexts "
                "ORDER BY created_at, id"
            )
            return [self._context(r) for r in rows]

        return await self._read(None, run)

    async def delete_context(self, context_id: str) -> bool:
        async def run(conn: asyncpg.Connection, schema: str) -> bool:
            done = await conn.execute(
                f"DELETE FROM {schema}.jsonld_contexts WHERE id = $1", context_id
            )
            return done != "DELETE 0"

        return await self._write(None, run)

    async def touch_context(self, context_id: str, when: str) -> None:
        async def run(conn: asyncpg.Connection, schema: str) -> None:
            await conn.execute(
                f"UPDATE {schema}.jsonld_contexts SET hits = hits + 1, last_used = $1 "
                "WHERE id = $2",
                when,
                context_id,
            )

        await self._write(None, run)
