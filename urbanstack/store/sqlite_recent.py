"""When the SQLite writer moves waiting history instances into the clustered table.

New history instances are appended to ``recent_instances`` (see
:mod:`urbanstack.store.sqlite_history`); :class:`RecentMover` counts them per tenant file as
the writer adds them, and moves them into ``attr_instances`` in a transaction of their own
once enough wait or the oldest has waited long enough: after a commit, or while the writer
is idle. It runs on the writer thread only.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Mapping

from urbanstack.store.sqlite_history import RecentTally, move_recent, recent_count

LOGGER = logging.getLogger("urbanstack.store.sqlite")


class RecentMover:
    """The writer's bookkeeping of ``recent_instances``, one tally per tenant file."""

    def __init__(self, rows: int, seconds: float) -> None:
        #: move once this many wait (0: new instances go straight to attr_instances)
        self.rows = rows
        #: move once the oldest has waited this long, in seconds
        self.seconds = seconds
        self._tallies: dict[str | None, RecentTally] = {}

    def opened(self, tenant: str | None, conn: sqlite3.Connection) -> None:
        """A tenant file was opened for writing: count what the last run left waiting."""
        tally = self._tallies[tenant] = RecentTally()
        tally.add(recent_count(conn))

    def tally(self, tenant: str | None) -> RecentTally | None:
        """Where the writer counts the instances it appends for ``tenant``; None when new
        instances go straight into the clustered table."""
        return self._tallies[tenant] if self.rows > 0 else None

    def wait_time(self) -> float | None:
        """Seconds until the first move falls due (0 when one is due); None when nothing
        waits, so the writer may wait for work without a limit."""
        waiting = [t.since for t in self._tallies.values() if t.rows and t.since is not None]
        if not waiting:
            return None
        return max(0.0, min(waiting) + self.seconds - time.monotonic())

    def move_due(
        self, conns: Mapping[str | None, sqlite3.Connection], tenant: str | None = None
    ) -> None:
        """Move the waiting instances of ``tenant`` (or of every tenant, when None) if
        enough wait or the oldest has waited long enough."""
        tenants = list(self._tallies) if tenant is None else [tenant]
        now = time.monotonic()
        for name in tenants:
            tally = self._tallies.get(name)
            if tally is None or not tally.rows or tally.since is None:
                continue
            if tally.rows >= self.rows or now - tally.since >= self.seconds:
                self.move(name, conns[name])

    def move_all(self, conns: Mapping[str | None, sqlite3.Connection]) -> None:
        """Move whatever waits (the writer is stopping)."""
        for name, tally in self._tallies.items():
            if tally.rows:
                self.move(name, conns[name])

    def move(self, tenant: str | None, conn: sqlite3.Connection) -> None:
        """Move a tenant's waiting instances in one transaction of their own; on failure
        they are tried again after the longest wait."""
        tally = self._tallies[tenant]
        try:
            conn.execute("BEGIN IMMEDIATE")
            move_recent(conn)
            conn.execute("COMMIT")
        except sqlite3.Error:
            LOGGER.exception("moving recent history instances failed (retried later)")
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            tally.since = time.monotonic()
            return
        tally.rows, tally.since = 0, None
