"""JSON-LD contexts on SQLite (the default tenant's file), mixed into
:class:`~urbanstack.store.sqlite.SQLiteStore`."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import orjson

from urbanstack.store.base import ContextRecord

if TYPE_CHECKING:
    from urbanstack.store.sqlite import SQLiteStore

    _Base = SQLiteStore
else:
    _Base = object


class SQLiteContexts(_Base):
    """Context methods of the storage contract."""

    @staticmethod
    def _context(row: tuple[Any, ...]) -> ContextRecord:
        return ContextRecord(
            id=row[0],
            url=row[1],
            kind=row[2],
            body=orjson.loads(row[3]),
            created_at=row[4],
            last_used=row[5],
            hits=row[6],
        )

    _CONTEXT_COLUMNS = "id, url, kind, body, created_at, last_used, hits"

    async def put_context(self, record: ContextRecord) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM jsonld_contexts WHERE url = ? AND id != ?", (record.url, record.id)
            )
            conn.execute(
                f"INSERT OR REPLACE INTO jsonld_contexts ({self._CONTEXT_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    record.id,
                    record.url,
                    record.kind,
                    orjson.dumps(record.body),
                    record.created_at,
                    record.last_used,
                    record.hits,
                ),
            )

        await self._write(None, run)

    async def get_context(self, key: str) -> ContextRecord | None:
        def run(conn: sqlite3.Connection) -> ContextRecord | None:
            row = conn.execute(
                f"SELECT {self._CONTEXT_COLUMNS} FROM jsonld_contexts WHERE id = ? OR url = ?",
                (key, key),
            ).fetchone()
            return self._context(row) if row else None

        return await self._read(None, run)

    async def list_contexts(self) -> list[ContextRecord]:
        def run(conn: sqlite3.Connection) -> list[ContextRecord]:
            rows = conn.execute(
                f"SELECT {self._CONTEXT_COLUMNS} FROM jsonld_contexts ORDER BY created_at, id"
            ).fetchall()
            return [self._context(r) for r in rows]

        return await self._read(None, run)

    async def delete_context(self, context_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM jsonld_contexts WHERE id = ?", (context_id,))
            return cur.rowcount > 0

        return await self._write(None, run)

    async def touch_context(self, context_id: str, when: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE jsonld_contexts SET hits = hits + 1, last_used = ? WHERE id = ?",
                (when, context_id),
            )

        await self._write(None, run)
