"""The embedded SQLite store: one database file per tenant, WAL, group commit.

Every write goes through one writer thread that owns the write connections and
groups whatever is queued into one transaction (each change in its own savepoint);
reads run on a small thread pool, each thread with its own connections, so reads
never block writes and the event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from urbanstack.ngsild.errors import NgsiLdError
from urbanstack.ngsild.model import Entity, now_timestamp
from urbanstack.ngsild.q_match import match_q
from urbanstack.ngsild.query import EntityQuery, QueryResult
from urbanstack.runtime import release_thread
from urbanstack.store.base import (
    ChangeResult,
    DiscoveryRow,
    EntityChange,
    EntityStore,
    StoreError,
    StoreInfo,
    validate_tenant,
)
from urbanstack.store.sqlite_contexts import SQLiteContexts
from urbanstack.store.sqlite_functions import (
    record_function_error,
)
from urbanstack.store.sqlite_paths import WritePaths, read_lookup
from urbanstack.store.sqlite_query import SlotRegistry, compile_query
from urbanstack.store.sqlite_recent import RecentMover
from urbanstack.store.sqlite_records import SQLiteRecords
from urbanstack.store.sqlite_subscriptions import SQLiteSubscriptions, write_outbox
from urbanstack.store.sqlite_temporal import SQLiteHistory
from urbanstack.store.sqlite_threads import (
    SCHEMA_VERSION,
    ChangeWork,
    QueuedWrite,
    SQLiteThreads,
)
from urbanstack.store.sqlite_write import Prepared, apply_changes, existing_ids, prepare_new

LOGGER = logging.getLogger(__name__)
PREPARE_SLICE = 64  # new entities prepared on the event loop between two yields
PRUNE_CHUNK = 200  # entities per retention write


class SQLiteStore(
    SQLiteThreads, SQLiteHistory, SQLiteSubscriptions, SQLiteRecords, SQLiteContexts, EntityStore
):
    """Entities in SQLite files: ``path`` for the default tenant, ``<path>-tenants/`` for others."""

    def __init__(
        self,
        path: str | Path,
        *,
        read_workers: int = 2,
        synchronous: str = "FULL",
        keep_history_on_delete: bool = True,
        history_recent_rows: int = 40_000,
        history_recent_seconds: float = 5.0,
    ) -> None:
        self.path = Path(path)
        # new history instances wait in recent_instances until this many or this old
        # (sqlite_history.py); 0 rows writes them straight into attr_instances
        self._recent = RecentMover(history_recent_rows, history_recent_seconds)
        self.keep_history_on_delete = keep_history_on_delete
        self.tenant_dir = self.path.with_name(self.path.name + "-tenants")
        self.read_workers = read_workers
        self.synchronous = synchronous
        self._queue: queue.SimpleQueue[QueuedWrite | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._write_conns: dict[str | None, sqlite3.Connection] = {}
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_conns_lock = threading.Lock()
        self._inline_conns: dict[str | None, sqlite3.Connection] = {}
        self._pids: dict[str | None, dict[str, int]] = {}
        self._write_paths: dict[str | None, WritePaths] = {}  # the writer's, per tenant
        self._pid_misses: dict[str | None, set[str]] = {}
        self._known_tenants: set[str | None] = {None}
        self._slots: dict[int, Any] = {}
        # subscriptions with new outbox rows in this group, per tenant
        self._outbox_dirty: dict[str | None, set[str]] = {}

    # --- lifecycle

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # readers step through rows without the interpreter lock: every CPU may serve them
        self._readers = ThreadPoolExecutor(
            self.read_workers, thread_name_prefix="sqlite-read", initializer=release_thread
        )
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        await self._write(None, lambda conn: None)
        if self.tenant_dir.is_dir():
            for file in self.tenant_dir.glob("*.db"):
                self._known_tenants.add(file.stem)

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._read_conns_lock:
            for conn in [*self._read_conns, *self._inline_conns.values()]:
                conn.close()
            self._read_conns.clear()
            self._inline_conns.clear()

    async def ping(self) -> bool:
        try:
            return await self._read(None, lambda c: c.execute("SELECT 1").fetchone()[0] == 1)
        except Exception:
            return False

    async def info(self) -> StoreInfo:
        return StoreInfo(
            backend="sqlite",
            backend_version=sqlite3.sqlite_version,
            schema_version=SCHEMA_VERSION,
            details={"path": str(self.path)},
        )

    # --- paths (interned attribute paths)

    def _pid_lookup(
        self, conn: sqlite3.Connection, tenant: str | None
    ) -> Callable[[str], int | None]:
        return read_lookup(
            conn, self._pids.setdefault(tenant, {}), self._pid_misses.setdefault(tenant, set())
        )

    # --- entities

    async def tenant_exists(self, tenant: str | None) -> bool:
        tenant = validate_tenant(tenant)
        return tenant in self._known_tenants

    async def change_entities(
        self, tenant: str | None, changes: Sequence[EntityChange]
    ) -> list[ChangeResult]:
        tenant = validate_tenant(tenant)
        prepared = await self._prepare(tenant, changes)

        def run(conn: sqlite3.Connection) -> list[ChangeResult]:
            return self._apply_changes(conn, tenant, changes, prepared)

        work = ChangeWork(changes, prepared)
        results = await self._write(tenant, run, len(changes), work)
        if self.commit_listener is not None:
            self.commit_listener(tenant, results)
        return results

    def _apply_changes(
        self,
        conn: sqlite3.Connection,
        tenant: str | None,
        changes: Sequence[EntityChange],
        prepared: dict[int, Prepared],
    ) -> list[ChangeResult]:
        """Persist ``changes`` and queue their notifications (writer thread)."""
        results = apply_changes(
            conn,
            changes,
            self._write_paths[tenant].__getitem__,
            self.view_renderer,
            prepared,
            self.keep_history_on_delete,
            self.view_updater,
            recent_history=self._recent.tally(tenant),
        )
        if self.change_observer is not None:
            self._queue_notifications(conn, tenant, results)
        return results

    def _run_changes_jointly(
        self, conn: sqlite3.Connection, tasks: Sequence[QueuedWrite]
    ) -> list[list[ChangeResult]]:
        """Several requests' entity changes as one list (a later change to an id sees the
        earlier ones), each request's results cut back out in order."""
        work = [task.joint for task in tasks if task.joint is not None]
        assert len(work) == len(tasks)
        prepared: dict[int, Prepared] = {}
        for item in work:
            prepared.update(item.prepared)
        changes = [change for item in work for change in item.changes]
        results = self._apply_changes(conn, tasks[0].tenant, changes, prepared)
        split: list[list[ChangeResult]] = []
        start = 0
        for item in work:
            split.append(results[start : start + len(item.changes)])
            start += len(item.changes)
        return split

    async def _prepare(
        self, tenant: str | None, changes: Sequence[EntityChange]
    ) -> dict[int, Prepared]:
        """Rows of the expected new entities, built here on the event loop while the writer
        (one thread for every write) works on earlier writes; a batch skips the ids that
        exist already and yields to other requests between slices."""
        expected = [c for c in changes if c.expected is not None]
        if len(expected) > 1 and tenant in self._known_tenants:
            with contextlib.suppress(sqlite3.OperationalError):  # busy: prepare them all
                found = existing_ids(self._inline_conn(tenant), [c.entity_id for c in expected])
                expected = [c for c in expected if c.entity_id not in found]
        prepared: dict[int, Prepared] = {}
        for start in range(0, len(expected), PREPARE_SLICE):
            if start:
                await asyncio.sleep(0)
            for change in expected[start : start + PREPARE_SLICE]:
                assert change.expected is not None
                prepared[id(change.expected)] = prepare_new(change.expected, self.view_renderer)
        return prepared

    def _queue_notifications(
        self, conn: sqlite3.Connection, tenant: str | None, results: list[ChangeResult]
    ) -> None:
        """Outbox rows of the accepted changes, in this transaction (writer thread)."""
        assert self.change_observer is not None
        items = []
        for result in results:
            if result.error is None and result.old is not result.new:
                items += self.change_observer(tenant, result.old, result.new)
        if items:
            write_outbox(conn, items, now_timestamp(), time.time())
            self._outbox_dirty.setdefault(tenant, set()).update(i.subscription_id for i in items)

    async def get_entity(self, tenant: str | None, entity_id: str) -> Entity | None:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> Entity | None:
            row = conn.execute("SELECT doc FROM entities WHERE id = ?", (entity_id,)).fetchone()
            return orjson.loads(row[0]) if row else None

        return await self._point_read(tenant, run)

    async def get_entity_view(self, tenant: str | None, entity_id: str) -> bytes | None:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(  # the document only for rows stored before views were
                "SELECT CASE WHEN view IS NULL THEN doc END, view FROM entities WHERE id = ?",
                (entity_id,),
            ).fetchone()
            return self._view(row[0], row[1]) if row else None

        return await self._point_read(tenant, run)

    # --- queries

    def _geo_match(self, slot: int, wkb: bytes) -> bool:
        return self._slots[slot].matches_wkb(wkb)

    def _geo_distance(self, slot: int, wkb: bytes) -> float:
        return self._slots[slot].distance_m(wkb)

    def _q_term(self, slot: int, doc: bytes) -> bool:
        try:
            return match_q(self._slots[slot], orjson.loads(doc))
        except NgsiLdError as err:  # a pattern too slow to match
            raise record_function_error(err) from None

    async def query_entities(
        self, tenant: str | None, query: EntityQuery, *, views: bool = False
    ) -> QueryResult:
        tenant = validate_tenant(tenant)
        page = self._page_reader(tenant, query, views=views)
        return await self._read(tenant, page)

    def _page_reader(
        self, tenant: str | None, query: EntityQuery, *, views: bool = False, ids: bool = False
    ) -> Callable[[sqlite3.Connection], QueryResult]:
        """A reader running one page of ``query``, its geo predicate (compiled here, on the
        event loop) registered for the SQL functions while it runs."""
        predicate = None
        if query.geo is not None:
            from urbanstack.ngsild.geo_match import compile_geo_query

            predicate = compile_geo_query(query.geo)

        def run(conn: sqlite3.Connection) -> QueryResult:
            held: list[list[Any]] = []  # one box per object: its id is this run's slot

            def register(item: Any) -> int:
                box = [item]
                held.append(box)
                self._slots[id(box)] = item
                return id(box)

            slot = register(predicate)
            try:
                return self._run_query(conn, tenant, query, predicate, slot, register, views, ids)
            finally:
                for box in held:
                    self._slots.pop(id(box), None)

        return run

    def _run_query(
        self,
        conn: sqlite3.Connection,
        tenant: str | None,
        query: EntityQuery,
        predicate: Any,
        slot: int,
        register: SlotRegistry,
        views: bool = False,
        ids: bool = False,
    ) -> QueryResult:
        """One page of ``query``: documents, views, or (``ids``) entity ids as ``views``."""
        lookup = self._pid_lookup(conn, tenant)
        bbox = predicate.bbox() if predicate is not None else None
        geo_slot = slot if predicate is not None else None
        compiled = compile_query(query, lookup, geo_slot, bbox, register)
        if compiled.impossible:
            return QueryResult([], 0 if query.count else None)
        source = " ".join([compiled.source, *compiled.joins])
        where = " AND ".join(compiled.where) or "1"
        params = compiled.join_params + compiled.params
        total = None
        if query.count:
            total = conn.execute(
                f"SELECT count(DISTINCT e.rid) FROM {source} WHERE {where}", params
            ).fetchone()[0]
        if query.limit == 0:
            return QueryResult([], total)
        # with views, the document is read only for rows written before a renderer was set
        columns = "CASE WHEN e.view IS NULL THEN e.doc END, e.view" if views else "e.doc, NULL"
        if ids:
            columns = "e.id, NULL"
        if compiled.near:
            sql = (
                f"SELECT {columns}, min(geo_distance(?, g.wkb)) AS d FROM {source} "
                f"WHERE {where} GROUP BY e.rid ORDER BY d, e.rid LIMIT ? OFFSET ?"
            )
            rows = conn.execute(sql, [slot, *params, query.limit, query.offset]).fetchall()
        elif compiled.joins or compiled.source != "entities e":
            sql = (
                f"SELECT {columns} FROM {source} WHERE {where} GROUP BY e.rid ORDER BY e.rid "
                "LIMIT ? OFFSET ?"
            )
            rows = conn.execute(sql, [*params, query.limit, query.offset]).fetchall()
        else:
            sql = f"SELECT {columns} FROM entities e WHERE {where} ORDER BY e.rid LIMIT ? OFFSET ?"
            rows = conn.execute(sql, [*params, query.limit, query.offset]).fetchall()
        if ids:
            return QueryResult([], total, views=[r[0] for r in rows])
        if views:
            return QueryResult([], total, views=[self._view(r[0], r[1]) for r in rows])
        return QueryResult([orjson.loads(r[0]) for r in rows], total)

    def _view(self, doc: bytes | None, view: bytes | None) -> bytes:
        if view is not None:
            return view
        assert doc is not None
        if self.view_renderer is None:
            raise StoreError("No view renderer is set on this store")
        return self.view_renderer(orjson.loads(doc))  # written before a renderer was set

    async def discovery(self, tenant: str | None) -> list[DiscoveryRow]:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> list[DiscoveryRow]:
            rows = conn.execute(
                "SELECT type, NULL, NULL, count(*) FROM entity_types GROUP BY type"
            ).fetchall()
            rows += conn.execute(
                "SELECT DISTINCT t.type, p.path, ap.kind, 0 FROM attr_presence ap "
                "JOIN paths p ON p.pid = ap.pid JOIN entity_types t ON t.rid = ap.rid "
                "WHERE instr(p.path, char(31)) = 0"
            ).fetchall()
            rows += conn.execute(
                "SELECT NULL, p.path, ap.kind, sum(ap.n) FROM attr_presence ap "
                "JOIN paths p ON p.pid = ap.pid "
                "WHERE instr(p.path, char(31)) = 0 GROUP BY p.path, ap.kind"
            ).fetchall()
            return [DiscoveryRow(*r) for r in rows]

        return await self._read(tenant, run)


def load_from_url(url: str, **options: Any) -> SQLiteStore:
    """Build a store from ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (or a path)."""
    # sqlite:///relative/path.db and sqlite:////absolute/path.db, as SQLAlchemy spells them
    path = url.removeprefix("sqlite://")
    if url.startswith("sqlite://"):
        path = path.removeprefix("/")
    if not path:
        raise ValueError(f"No database path in store URL {url!r}")
    return SQLiteStore(path, **options)
