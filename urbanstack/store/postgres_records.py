"""Records and bounded logs on PostgreSQL (the default tenant's schema), mixed into
:class:`~urbanstack.store.postgres.PostgresStore`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from urbanstack.ngsild.model import now_timestamp
from urbanstack.store.base import Keep, RecordChange
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
        async def run(conn: asyncpg.Connection, schema: str) -> list[Any]:
            table = f"{schema}.records"
            now = now_timestamp()
            results = []
            for change in changes:
                doc = await conn.fetchval(
                    f"SELECT doc FROM {table} WHERE kind = $1 AND key = $2 FOR UPDATE",
                    kind,
                    change.key,
                )
                current = None if doc is None else orjson.loads(doc)
                new = change.apply(current)
                if isinstance(new, Keep):
                    results.append(current)
                    continue
                if new is None:
                    await conn.execute(
                        f"DELETE FROM {table} WHERE kind = $1 AND key = $2", kind, change.key
                    )
                elif current is None:
                    done = await conn.execute(
                        f"INSERT INTO {table} (kind, key, doc, modified) "
                        "VALUES ($1, $2, $3::json, $4) ON CONFLICT DO NOTHING",
                        kind,
                        change.key,
                        orjson.dumps(new).decode(),
                        now,
                    )
                    if done.endswith(" 0"):
                        raise Retry  # created meanwhile by another process: apply again
                else:
                    await conn.execute(
                        f"UPDATE {table} SET doc = $3::json, modified = $4 "
                        "WHERE kind = $1 AND key = $2",
                        kind,
                        change.key,
                        orjson.dumps(new).decode(),
                        now,
                    )
                results.append(new)
            return results

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
