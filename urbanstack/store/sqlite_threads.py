"""The SQLite store's threads and connections: one writer thread that owns the write
connections and commits whatever is queued as one group, and a pool of reader threads,
each with its own connections (a mixin of :class:`~urbanstack.store.sqlite.SQLiteStore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from urbanstack.ngsild.errors import NonexistentTenant
from urbanstack.runtime import pin_serving_thread
from urbanstack.store.base import EntityChange, StoreError
from urbanstack.store.sqlite_functions import regexp, reraising_function_errors
from urbanstack.store.sqlite_paths import WritePaths
from urbanstack.store.sqlite_rows import register_row_functions
from urbanstack.store.sqlite_tasks import run_tasks
from urbanstack.store.sqlite_write import Prepared

if TYPE_CHECKING:
    from urbanstack.store.sqlite import SQLiteStore

    _Base = SQLiteStore
else:
    _Base = object

LOGGER = logging.getLogger("urbanstack.store.sqlite")
SCHEMA_VERSION = 8
MAX_GROUP = 512
#: entity changes per write group: ten 1,000-entity batches commit one after another (each
#: answered when it is written) instead of all together after the last one
MAX_GROUP_ENTITIES = 2000
T = TypeVar("T")


class QueuedWrite:
    """A write waiting for the writer thread: ``fn`` runs on the tenant's write connection
    and its outcome settles ``future`` on ``loop``; ``weight`` counts its entity changes."""

    __slots__ = ("fn", "future", "joint", "loop", "tenant", "weight")

    def __init__(
        self,
        tenant: str | None,
        fn: Callable[[sqlite3.Connection], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        weight: int = 1,
        joint: ChangeWork | None = None,
    ) -> None:
        self.tenant = tenant
        self.fn = fn
        self.loop = loop
        self.future = future
        self.weight = weight
        self.joint = joint


class ChangeWork(NamedTuple):
    """An entity-change task's input, for running it together with its neighbours."""

    changes: Sequence[EntityChange]
    prepared: dict[int, Prepared]


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SQLiteThreads(_Base):
    """Connections, the writer thread and the reader pool of the SQLite store."""

    # --- connections

    def _file(self, tenant: str | None) -> Path:
        if tenant is None:
            return self.path
        return self.tenant_dir / f"{tenant}.db"

    def _connect(self, tenant: str | None, *, write: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._file(tenant), isolation_level=None, check_same_thread=False, timeout=30
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        # the OS page cache holds the file; each connection keeps a modest cache of its own
        conn.execute(f"PRAGMA cache_size={-32768 if write else -8192}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.create_function("regexp", 2, regexp, deterministic=True)
        register_row_functions(conn)
        conn.create_function("geo_match", 2, self._geo_match)
        conn.create_function("geo_distance", 2, self._geo_distance)
        conn.create_function("q_term", 2, self._q_term)
        if write:
            self._migrate(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"Database schema {version} is newer than this urbanstack")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            sql = (
                resources.files("urbanstack.store")
                .joinpath("sql", f"sqlite_{step:03d}.sql")
                .read_text("utf-8")
            )
            conn.executescript(sql)
            conn.execute(f"PRAGMA user_version={step}")
            LOGGER.info("migrated %s to schema %d", self.path, step)

    def _write_conn(self, tenant: str | None) -> sqlite3.Connection:
        conn = self._write_conns.get(tenant)
        if conn is None:
            if tenant is not None:
                self.tenant_dir.mkdir(parents=True, exist_ok=True)
            conn = self._connect(tenant, write=True)
            self._write_conns[tenant] = conn
            self._write_paths[tenant] = WritePaths(conn)
            self._known_tenants.add(tenant)
            self._recent.opened(tenant, conn)
        return conn

    def _read_conn(self, tenant: str | None) -> sqlite3.Connection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(tenant)
        if conn is None:
            conn = self._connect(tenant, write=False)
            conns[tenant] = conn
            with self._read_conns_lock:
                self._read_conns.append(conn)
        return conn

    # --- the writer thread

    def _write_loop(self) -> None:
        pin_serving_thread()  # beside the event loop, when the process pins it (runtime.py)
        stop = False
        carry: QueuedWrite | None = None  # taken from the queue, but for the next group
        while not stop:
            first = carry if carry is not None else self._next_task()
            carry = None
            if first is None:
                break
            batch = [first]
            weight = first.weight
            while len(batch) < MAX_GROUP and weight < MAX_GROUP_ENTITIES:
                try:
                    task = self._queue.get_nowait()
                except queue.Empty:
                    break
                if task is None:
                    stop = True
                    break
                if weight + task.weight > MAX_GROUP_ENTITIES:
                    carry = task  # big batches commit one after another, not all at once
                    break
                batch.append(task)
                weight += task.weight
            by_tenant: dict[str | None, list[QueuedWrite]] = {}
            for task in batch:
                by_tenant.setdefault(task.tenant, []).append(task)
            for tenant, tasks in by_tenant.items():
                self._run_group(tenant, tasks)
        self._recent.move_all(self._write_conns)
        for conn in self._write_conns.values():
            conn.close()
        self._write_conns.clear()
        self._write_paths.clear()

    def _next_task(self) -> QueuedWrite | None:
        """The next queued write (None: stop); while none comes, moves the recent history
        instances that are due."""
        while True:
            wait = self._recent.wait_time()
            if wait is None:
                return self._queue.get()
            try:
                return self._queue.get(timeout=wait)
            except queue.Empty:
                self._recent.move_due(self._write_conns)

    def _run_group(self, tenant: str | None, tasks: list[QueuedWrite]) -> None:
        try:
            conn = self._write_conn(tenant)
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            err = StoreError(f"Cannot open the store for writing: {exc}", exc)
            self._resolve([(t, False, err) for t in tasks])
            return
        paths = self._write_paths[tenant]
        try:
            outcomes = run_tasks(conn, paths, tasks, self._run_changes_jointly)
        except Exception as exc:  # the retry could not roll back or begin again
            LOGGER.exception("write group failed")
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            paths.rollback()
            self._outbox_dirty.pop(tenant, None)
            self._resolve([(t, False, StoreError(f"Write failed: {exc}", exc)) for t in tasks])
            return
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            LOGGER.exception("commit failed")
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            paths.rollback()
            self._outbox_dirty.pop(tenant, None)
            err = StoreError(f"Commit failed: {exc}", exc)
            self._resolve([(t, False, err) for t, _, _ in outcomes])
            return
        learned = paths.commit()
        if learned:
            self._pids.setdefault(tenant, {}).update(learned)
            self._pid_misses.setdefault(tenant, set()).clear()
        subscriptions = self._outbox_dirty.pop(tenant, None)
        if subscriptions:
            listener = self.outbox_listener
            if listener is not None and tasks:
                with contextlib.suppress(RuntimeError):
                    tasks[0].loop.call_soon_threadsafe(listener, tenant, frozenset(subscriptions))
        self._resolve(outcomes)
        self._recent.move_due(self._write_conns, tenant)

    @staticmethod
    def _resolve(outcomes: list[tuple[QueuedWrite, bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for task, ok, value in outcomes:
            by_loop.setdefault(task.loop, []).append((task.future, ok, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, items)

    async def _write(
        self,
        tenant: str | None,
        fn: Callable[[sqlite3.Connection], T],
        weight: int = 1,
        joint: ChangeWork | None = None,
    ) -> T:
        if self._writer is None:
            raise StoreError("The store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(QueuedWrite(tenant, fn, loop, future, weight, joint))
        return await future

    def _check_tenant(self, tenant: str | None) -> None:
        # known = found at open() or created (and migrated) by the writer: a reader never
        # opens a tenant file that is still being created
        if tenant not in self._known_tenants:
            raise NonexistentTenant(f"Tenant {tenant!r} does not exist")

    def _inline_conn(self, tenant: str | None) -> sqlite3.Connection:
        conn = self._inline_conns.get(tenant)
        if conn is None:
            conn = self._connect(tenant, write=False)
            conn.execute("PRAGMA busy_timeout=0")
            self._inline_conns[tenant] = conn
        return conn

    async def _point_read(self, tenant: str | None, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read by primary key: bounded and sub-millisecond, so it runs on the event loop
        (a thread hop costs more than the read); if SQLite is busy it goes to the pool."""
        if self._readers is None:
            raise StoreError("The store is not open")
        self._check_tenant(tenant)
        try:
            return fn(self._inline_conn(tenant))
        except sqlite3.OperationalError:
            return await self._read(tenant, fn)

    async def _read(self, tenant: str | None, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StoreError("The store is not open")
        self._check_tenant(tenant)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._readers,
                lambda: reraising_function_errors(lambda: fn(self._read_conn(tenant))),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"Read failed: {exc}", exc) from exc
