"""Coordination of the API processes sharing one PostgreSQL store: session advisory locks
(``try_lock``) and announcements (``NOTIFY``/``LISTEN``), mixed into the PostgreSQL store.

Both run on one dedicated connection per process, outside the pool: advisory locks belong
to a session, so a process that dies releases its locks with its connection, and the
connection that LISTENs must stay open. When that connection is lost (a database restart,
a network cut) its locks are gone with it: :meth:`holds_lock` says so at once, the store
reconnects with back-off, and then tells every process (itself included) that
announcements may have been missed, so each reloads its caches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

import asyncpg
import orjson

from urbanstack.store.base import ANNOUNCEMENTS_MISSED

LOGGER = logging.getLogger(__name__)
CHANNEL = "urbanstack_announcements"
MAX_PAYLOAD = 7900  # NOTIFY payloads must stay under 8,000 bytes
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 5.0
CONNECT_TIMEOUT_S = 5.0
#: what a lost or closed connection raises
_CONNECTION_ERRORS = (asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a lock name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresCoordination:
    """try_lock / holds_lock / unlock / announce of the storage contract, for several
    processes."""

    shared_by_processes = True
    dsn: str
    announcement_listener: Any

    async def _open_coordination(self) -> None:
        self._coordination_lock = asyncio.Lock()
        self._held_locks: set[str] = set()
        self._coordination: asyncpg.Connection | None = None
        self._coordination_closing = asyncio.Event()
        self._reconnecting: asyncio.Task[None] | None = None
        await self._connect_coordination()

    async def _connect_coordination(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_S)
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_coordination_lost)
        self._coordination = conn

    async def _close_coordination(self) -> None:
        closing = getattr(self, "_coordination_closing", None)
        if closing is not None:
            closing.set()
        reconnecting, self._reconnecting = getattr(self, "_reconnecting", None), None
        if reconnecting is not None and not reconnecting.done():
            # a connection attempt is let finish (asyncpg leaves an unretrieved error
            # behind when one is cancelled); the attempt's own timeout bounds the wait
            try:
                await asyncio.wait_for(asyncio.shield(reconnecting), CONNECT_TIMEOUT_S + 1)
            except Exception:
                reconnecting.cancel()
        conn = getattr(self, "_coordination", None)
        self._coordination = None
        self._held_locks = set()
        if conn is not None:
            async with self._coordination_lock:  # after any statement in flight on it
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=5)

    def _on_coordination_lost(self, conn: asyncpg.Connection) -> None:
        if conn is not self._coordination or self._coordination_closing.is_set():
            return
        self._coordination = None
        if self._held_locks:
            LOGGER.warning(
                "database connection lost: locks %s are no longer this process's",
                ", ".join(sorted(self._held_locks)),
            )
        else:
            LOGGER.warning("database connection for locks and announcements lost")
        self._held_locks = set()
        self._reconnecting = asyncio.get_running_loop().create_task(
            self._reconnect(), name="postgres-coordination"
        )

    async def _reconnect(self) -> None:
        delay = RECONNECT_MIN_S
        closing = self._coordination_closing
        while not closing.is_set():
            try:
                await self._connect_coordination()
            except (*_CONNECTION_ERRORS, asyncpg.PostgresError, TimeoutError) as exc:
                LOGGER.debug("reconnection failed (%s), next try in %.2f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            if closing.is_set():  # closed while connecting: _close_coordination is waiting
                conn, self._coordination = self._coordination, None
                if conn is not None:
                    conn.terminate()
                return
            LOGGER.info("database connection for locks and announcements restored")
            # every process, this one included, may have missed announcements meanwhile
            await self.announce(ANNOUNCEMENTS_MISSED, {})
            return

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
        """Take the named lock; False (never an exception) while the connection is down."""
        if name in self._held_locks:
            return True
        conn = self._coordination
        if conn is None:
            return False
        async with self._coordination_lock:
            try:
                taken = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(name)))
            except _CONNECTION_ERRORS:
                return False
        if taken and conn is self._coordination and not conn.is_closed():
            self._held_locks.add(name)
            return True
        return False

    def holds_lock(self, name: str) -> bool:
        return name in self._held_locks

    async def unlock(self, name: str) -> None:
        if name not in self._held_locks:
            return  # lost with its connection (the session released it), or never taken
        self._held_locks.discard(name)
        conn = self._coordination
        if conn is None:
            return
        async with self._coordination_lock:
            with contextlib.suppress(*_CONNECTION_ERRORS):  # gone with the session
                await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(name))

    async def announce(self, topic: str, message: dict[str, Any]) -> None:
        payload = orjson.dumps({"topic": topic, "message": message}).decode()
        if len(payload) > MAX_PAYLOAD:
            raise ValueError("announcement too large for NOTIFY")
        conn = self._coordination
        if conn is not None:
            async with self._coordination_lock:
                try:
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
                    return
                except _CONNECTION_ERRORS:
                    pass
        # the reconnection tells every process to reload, which covers this one
        LOGGER.warning("announcement %r not sent: the database connection is down", topic)
