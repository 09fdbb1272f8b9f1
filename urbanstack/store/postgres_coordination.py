"""Coordination of the API processes sharing one PostgreSQL store: session advisory locks
(``try_lock``) and announcements (``NOTIFY``/``LISTEN``), mixed into the PostgreSQL store.

Both run on one dedicated connection per process, outside the pool: advisory locks belong
to a session, so a process that dies releases its locks with its connection, and the
connection that LISTENs must stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

import asyncpg
import orjson

LOGGER = logging.getLogger(__name__)
CHANNEL = "urbanstack_announcements"
MAX_PAYLOAD = 7900  # NOTIFY payloads must stay under 8,000 bytes


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a lock name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresCoordination:
    """try_lock / unlock / announce of the storage contract, for several processes."""

    shared_by_processes = True
    dsn: str
    announcement_listener: Any

    async def _open_coordination(self) -> None:
        self._coordination_lock = asyncio.Lock()
        self._coordination: asyncpg.Connection | None = await asyncpg.connect(self.dsn)
        await self._coordination.add_listener(CHANNEL, self._on_notify)

    async def _close_coordination(self) -> None:
        conn = getattr(self, "_coordination", None)
        self._coordination = None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        listener = self.announcement_listener
        if listener is None:
            return
        try:
            data = orjson.loads(payload)
            listener(data["topic"], data["message"])
        except Exception:
            LOGGER.exception("bad announcement %r", payload[:200])

    async def try_lock(self, name: str) -> bool:
        conn = getattr(self, "_coordination", None)
        if conn is None:
            return False
        async with self._coordination_lock:
            return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(name)))

    async def unlock(self, name: str) -> None:
        conn = getattr(self, "_coordination", None)
        if conn is None:
            return
        async with self._coordination_lock:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(name))

    async def announce(self, topic: str, message: dict[str, Any]) -> None:
        payload = orjson.dumps({"topic": topic, "message": message}).decode()
        if len(payload) > MAX_PAYLOAD:
            raise ValueError("announcement too large for NOTIFY")
        conn = getattr(self, "_coordination", None)
        if conn is None:
            return
        async with self._coordination_lock:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
