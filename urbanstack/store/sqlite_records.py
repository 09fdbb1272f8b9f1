"""Records and bounded logs on SQLite (the default tenant's file), mixed into
:class:`~urbanstack.store.sqlite.SQLiteStore`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from urbanstack.ngsild.model import now_timestamp
from urbanstack.store.base import RecordChange
from urbanstack.store.changes import run_record_changes

if TYPE_CHECKING:
    from urbanstack.store.sqlite import SQLiteStore

    _Base = SQLiteStore
else:
    _Base = object


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SQLiteRecords(_Base):
    """Record and log methods of the storage contract."""

    async def get_record(self, kind: str, key: str) -> Any | None:
        def run(conn: sqlite3.Connection) -> Any | None:
            row = conn.execute(
                "SELECT doc FROM records WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            return None if row is None else orjson.loads(row[0])

        return await self._read(None, run)

    async def list_records(
        self, kind: str, limit: int, offset: int = 0, prefix: str = ""
    ) -> tuple[list[tuple[str, Any]], int]:
        pattern = _escape_like(prefix) + "%"

        def run(conn: sqlite3.Connection) -> tuple[list[tuple[str, Any]], int]:
            where = "kind = ? AND key LIKE ? ESCAPE '\\'"
            rows = conn.execute(
                f"SELECT key, doc FROM records WHERE {where} ORDER BY key LIMIT ? OFFSET ?",
                (kind, pattern, limit, offset),
            ).fetchall()
            total = conn.execute(
                f"SELECT count(*) FROM records WHERE {where}", (kind, pattern)
            ).fetchone()[0]
            return [(key, orjson.loads(doc)) for key, doc in rows], total

        return await self._read(None, run)

    async def change_records(self, kind: str, changes: Sequence[RecordChange]) -> list[Any]:
        keys = list(dict.fromkeys(change.key for change in changes))

        def run(conn: sqlite3.Connection) -> list[Any]:
            stored: dict[str, Any] = {}
            for start in range(0, len(keys), 500):  # one query per 500 keys, not one each
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, doc in conn.execute(
                    f"SELECT key, doc FROM records WHERE kind = ? AND key IN ({marks})",
                    (kind, *chunk),
                ):
                    stored[key] = orjson.loads(doc)
            outcome = run_record_changes(changes, stored)
            now = now_timestamp()
            conn.executemany(
                "INSERT OR REPLACE INTO records (kind, key, doc, modified) VALUES (?, ?, ?, ?)",
                [
                    (kind, key, orjson.dumps(new), now)
                    for key, new in outcome.written.items()
                    if new is not None
                ],
            )
            conn.executemany(
                "DELETE FROM records WHERE kind = ? AND key = ?",
                [(kind, key) for key, new in outcome.written.items() if new is None],
            )
            return outcome.results

        return await self._write(None, run)

    async def append_log(self, kind: str, entries: Sequence[Any], keep: int) -> None:
        if not entries:
            return

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO logs (kind, doc) VALUES (?, ?)",
                [(kind, orjson.dumps(e)) for e in entries],
            )
            cutoff = conn.execute(
                "SELECT seq FROM logs WHERE kind = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (kind, keep),
            ).fetchone()
            if cutoff is not None:
                conn.execute("DELETE FROM logs WHERE kind = ? AND seq <= ?", (kind, cutoff[0]))

        await self._write(None, run)

    async def read_log(self, kind: str, limit: int, before: int = 0) -> list[tuple[int, Any]]:
        def run(conn: sqlite3.Connection) -> list[tuple[int, Any]]:
            rows = conn.execute(
                "SELECT seq, doc FROM logs WHERE kind = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (kind, before if before > 0 else 2**62, limit),
            ).fetchall()
            return [(seq, orjson.loads(doc)) for seq, doc in rows]

        return await self._read(None, run)
