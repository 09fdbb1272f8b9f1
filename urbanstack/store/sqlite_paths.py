"""Interned attribute paths (the ``paths`` table): the writer's map, and readers' lookups.

A write interns every path its index and history rows name, often a hundred per entity:
the writer keeps one dict per tenant file, so each lookup is a plain dict hit and only an
unknown path costs SQL. Paths learned inside the open transaction stay ``pending`` until
it commits, and are forgotten if their savepoint or transaction rolls back (the rows that
inserted them are gone, so their numbers may be handed out again).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


class WritePaths(dict[str, int]):
    """path -> pid on the writer connection of one tenant file (writer thread only)."""

    __slots__ = ("conn", "pending")

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self.conn = conn
        self.pending: dict[str, int] = {}  # learned in the open transaction, in order

    def __missing__(self, path: str) -> int:
        row = self.conn.execute("SELECT pid FROM paths WHERE path = ?", (path,)).fetchone()
        if row is None:
            pid = self.conn.execute("INSERT INTO paths (path) VALUES (?)", (path,)).lastrowid
            assert pid is not None
        else:
            pid = row[0]
        self[path] = self.pending[path] = pid
        return pid

    def mark(self) -> int:
        """A point to roll back to (the number of pending paths)."""
        return len(self.pending)

    def rollback(self, mark: int = 0) -> None:
        """Forget the paths learned since ``mark`` (their savepoint was rolled back)."""
        if len(self.pending) > mark:
            for path in list(self.pending)[mark:]:
                del self.pending[path]
                self.pop(path, None)

    def commit(self) -> dict[str, int]:
        """The paths learned by the transaction that just committed (then none pending)."""
        learned, self.pending = self.pending, {}
        return learned


def read_lookup(
    conn: sqlite3.Connection, cache: dict[str, int], misses: set[str]
) -> Callable[[str], int | None]:
    """path -> pid or None for queries on ``conn``, through the shared ``cache`` of committed
    paths; ``misses`` remembers unknown paths until a write interns new ones."""

    def lookup(path: str) -> int | None:
        pid = cache.get(path)
        if pid is None and path not in misses:
            row = conn.execute("SELECT pid FROM paths WHERE path = ?", (path,)).fetchone()
            if row is None:
                misses.add(path)  # forgotten when a write interns new paths
            else:
                pid = cache[path] = row[0]
        return pid

    return lookup
