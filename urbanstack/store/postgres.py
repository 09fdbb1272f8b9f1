"""The PostgreSQL (+ PostGIS) store: several API processes can share one database.

One schema per tenant (the default tenant in ``urbanstack``), each migrated by the
versioned ``sql/postgres_NNN.sql`` files at :meth:`PostgresStore.open` (under an advisory
lock, so processes starting together do not race). Entities are JSONB documents with a
derived, GIN-indexed index document (:mod:`urbanstack.store.postgres_index`); shapes are
PostGIS geometries; history is range-partitioned by month. Every call runs on a pooled
asyncpg connection: the event loop never blocks on the database.

Each :meth:`change_entities` call is one transaction that locks the rows it reads
(``SELECT ... FOR UPDATE``), so concurrent read-modify-writes of an entity, from this
process or another, never lose an update.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import orjson

from urbanstack.ngsild.errors import BadRequestData, NgsiLdError, NonexistentTenant
from urbanstack.ngsild.model import Entity, now_timestamp
from urbanstack.ngsild.query import EntityQuery, QueryResult
from urbanstack.store.base import (
    ChangeResult,
    DiscoveryRow,
    EntityChange,
    EntityStore,
    StoreError,
    StoreInfo,
    validate_tenant,
)
from urbanstack.store.point_reads import PointReads
from urbanstack.store.postgres_contexts import PostgresContexts
from urbanstack.store.postgres_coordination import PostgresCoordination
from urbanstack.store.postgres_history import NeedPartitions, Partitions, month_of, next_month
from urbanstack.store.postgres_query import compile_query
from urbanstack.store.postgres_records import PostgresRecords
from urbanstack.store.postgres_subscriptions import PostgresSubscriptions, write_outbox
from urbanstack.store.postgres_temporal import PostgresHistory
from urbanstack.store.postgres_write import Retry, apply_changes

LOGGER = logging.getLogger(__name__)
SCHEMA_VERSION = 4
DEFAULT_SCHEMA = "urbanstack"
TENANT_PREFIX = "urbanstack_"
MIGRATION_LOCK = 0x7572_6261_6E00  # pg_advisory_xact_lock key of schema changes
PARTITION_LOCK = 0x7572_6261  # first key of (lock, hashtext(schema)) partition creation
MAX_ATTEMPTS = 20
T = TypeVar("T")


def schema_name(tenant: str | None) -> str:
    """The schema of a (validated) tenant; long names are shortened with a hash."""
    if tenant is None:
        return DEFAULT_SCHEMA
    name = TENANT_PREFIX + tenant
    if len(name) > 63:  # PostgreSQL truncates identifiers to 63 bytes
        digest = hashlib.sha1(tenant.encode()).hexdigest()[:16]
        name = f"{TENANT_PREFIX}{tenant[:35]}_{digest}"
    return name


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def translate(exc: BaseException) -> NgsiLdError:
    """The NGSI-LD error for a driver error: bad input is BadRequestData, the rest StoreError."""
    if isinstance(exc, asyncpg.InvalidRegularExpressionError):
        return BadRequestData(f"Invalid regular expression: {exc}")
    if isinstance(
        exc, asyncpg.UntranslatableCharacterError | asyncpg.CharacterNotInRepertoireError
    ):
        return BadRequestData(f"The data cannot be stored: {exc}")
    if isinstance(exc, asyncpg.ProgramLimitExceededError):
        return BadRequestData(f"The data is too large to be stored or indexed: {exc}")
    return StoreError(f"PostgreSQL store error: {exc}", exc)


_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
_RETRIED = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a pooled connection needs on release, once asyncpg rolled back any open
    transaction: nothing. The store keeps no session state on pooled connections (no LISTEN,
    no session advisory lock, no SET but the search path set once by ``_init_connection``),
    so asyncpg's default reset query (UNLISTEN, RESET ALL, ...) would cost a round trip per
    request and undo that search path."""


class PostgresStore(
    PostgresCoordination,
    PostgresHistory,
    PostgresSubscriptions,
    PostgresRecords,
    PostgresContexts,
    EntityStore,
):
    """Entities in a PostgreSQL database with PostGIS, one schema per tenant."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        keep_history_on_delete: bool = True,
    ) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.keep_history_on_delete = keep_history_on_delete
        self._pool: asyncpg.Pool | None = None
        self._schemas: dict[str | None, str] = {None: quoted(DEFAULT_SCHEMA)}
        self._partitions = Partitions()
        self._server_version = ""
        self._postgis_version = ""
        self._postgis_schema = "public"
        # retrievals by id that arrive together share one query (see point_reads)
        self._docs: PointReads[Entity] = PointReads(self._fetch_docs, self._point_session)
        self._views: PointReads[bytes] = PointReads(self._fetch_views, self._point_session)
        #: names this store instance in outbox claims (see postgres_subscriptions)
        self.instance_id = f"{time.time_ns():x}-{random.getrandbits(32):08x}"

    # --- lifecycle

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                init=self._init_connection,
                reset=_keep_session,
                # JIT compiles for hundreds of milliseconds: never worth it for short queries
                server_settings={"jit": "off"},
            )
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                    await self._ensure_postgis(conn)
                    await self._migrate(conn, DEFAULT_SCHEMA)
                    default = quoted(DEFAULT_SCHEMA)
                    for row in await conn.fetch(f"SELECT name, schema_name FROM {default}.tenants"):
                        await self._migrate(conn, row["schema_name"])
                        self._schemas[row["name"]] = quoted(row["schema_name"])
                self._server_version = await conn.fetchval("SHOW server_version")
                self._postgis_version = await conn.fetchval("SELECT postgis_lib_version()")
                for schema in self._schemas.values():
                    await self._prepare_partitions(conn, schema)
            await self._open_coordination()
        except BaseException as exc:
            await self._discard_pool()
            if isinstance(exc, _DRIVER_ERRORS):
                raise StoreError(f"Cannot open the PostgreSQL store: {exc}", exc) from exc
            raise

    async def _discard_pool(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    async def close(self) -> None:
        if self._pool is None:
            return
        await self._close_coordination()
        await self._docs.close()
        await self._views.close()
        with contextlib.suppress(*_DRIVER_ERRORS):  # another process may take over at once
            async with self._pool.acquire() as conn:
                for schema in self._schemas.values():
                    await conn.execute(
                        f"DELETE FROM {schema}.outbox_claims WHERE owner = $1", self.instance_id
                    )
        pool, self._pool = self._pool, None
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except (TimeoutError, *_DRIVER_ERRORS):
            pool.terminate()

    async def _init_connection(self, conn: asyncpg.Connection) -> None:
        schema = await conn.fetchval(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'postgis'"
        )
        if schema and schema != "public":  # PostGIS functions are called unqualified
            await conn.execute(f'SET search_path TO "$user", public, {quoted(schema)}')

    async def _ensure_postgis(self, conn: asyncpg.Connection) -> None:
        schema = await conn.fetchval(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'postgis'"
        )
        if schema is None:
            try:
                async with conn.transaction():
                    await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            except asyncpg.PostgresError as exc:
                raise StoreError(
                    "The database lacks the PostGIS extension and this role may not create it "
                    f"({exc}); run CREATE EXTENSION postgis as its owner",
                    exc,
                ) from exc
            await self._init_connection(conn)
            schema = "public"
        self._postgis_schema = schema

    async def _migrate(self, conn: asyncpg.Connection, name: str) -> None:
        """Bring one tenant schema to SCHEMA_VERSION (the caller holds MIGRATION_LOCK)."""
        schema = quoted(name)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_version "
            "(version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())"
        )
        version = await conn.fetchval(f"SELECT max(version) FROM {schema}.schema_version") or 0
        if version > SCHEMA_VERSION:
            raise StoreError(f"Schema {name} is at version {version}, newer than this urbanstack")
        if version == SCHEMA_VERSION:
            return
        path = await conn.fetchval("SELECT current_setting('search_path')")
        await conn.execute(f"SET LOCAL search_path TO {schema}, {quoted(self._postgis_schema)}")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            sql = (
                resources.files("urbanstack.store")
                .joinpath("sql", f"postgres_{step:03d}.sql")
                .read_text("utf-8")
            )
            await conn.execute(sql)
            await conn.execute(f"INSERT INTO {schema}.schema_version (version) VALUES ($1)", step)
            LOGGER.info("migrated schema %s to version %d", name, step)
        await conn.execute("SELECT set_config('search_path', $1, true)", path)

    async def _prepare_partitions(self, conn: asyncpg.Connection, schema: str) -> None:
        """Know a schema's history partitions and create this month's and the next ahead."""
        await self._partitions.load(conn, schema)
        this_month = month_of(int(time.time() * 1_000_000))
        wanted = {this_month, next_month(this_month)} - self._partitions.known[schema]
        if wanted:
            await self._create_partitions(NeedPartitions(schema, wanted), conn)

    async def _create_partitions(
        self, need: NeedPartitions, conn: asyncpg.Connection | None = None
    ) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if conn is None:
                conn = await stack.enter_async_context(self._acquire())
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))", PARTITION_LOCK, need.schema
                )
                await self._partitions.create(conn, need.schema, need.months)

    def info_details(self) -> dict[str, Any]:
        parts = urlsplit(self.dsn)
        return {
            "host": parts.hostname or "",
            "database": parts.path.lstrip("/"),
            "postgis": self._postgis_version,
        }

    async def ping(self) -> bool:
        try:
            async with self._acquire() as conn:
                return await conn.fetchval("SELECT 1") == 1
        except Exception:
            return False

    async def info(self) -> StoreInfo:
        return StoreInfo(
            backend="postgresql",
            backend_version=self._server_version,
            schema_version=SCHEMA_VERSION,
            details=self.info_details(),
        )

    # --- connections and transactions

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StoreError("The store is not open")
        async with self._pool.acquire() as conn:
            yield conn

    async def _tenant_schema(self, tenant: str | None) -> str:
        """The quoted schema of an existing tenant; NonexistentTenant otherwise."""
        schema = self._schemas.get(tenant)
        if schema is None:
            async with self._acquire() as conn:
                name = await conn.fetchval(
                    f"SELECT schema_name FROM {quoted(DEFAULT_SCHEMA)}.tenants WHERE name = $1",
                    tenant,
                )
            if name is None:
                raise NonexistentTenant(f"Tenant {tenant!r} does not exist")
            schema = self._schemas[tenant] = quoted(name)
        return schema

    async def _ensure_tenant(self, tenant: str | None) -> str:
        """The quoted schema of ``tenant``, created (and migrated) when new."""
        schema = self._schemas.get(tenant)
        if schema is not None:
            return schema
        async with self._acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                default = quoted(DEFAULT_SCHEMA)
                name = await conn.fetchval(
                    f"SELECT schema_name FROM {default}.tenants WHERE name = $1", tenant
                )
                if name is None:
                    name = schema_name(tenant)
                    await self._migrate(conn, name)
                    await conn.execute(
                        f"INSERT INTO {default}.tenants (name, schema_name) VALUES ($1, $2)",
                        tenant,
                        name,
                    )
            schema = quoted(name)
            await self._prepare_partitions(conn, schema)
        self._schemas[tenant] = schema
        return schema

    async def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except NgsiLdError:
            raise
        except _DRIVER_ERRORS as exc:
            raise translate(exc) from exc

    async def _read(
        self, tenant: str | None, fn: Callable[[asyncpg.Connection, str], Awaitable[T]]
    ) -> T:
        """``fn(conn, schema)`` on a pooled connection (NonexistentTenant if unknown); run
        again when the database chose it as a deadlock's victim (against retention pruning
        a partition, say): a read changes nothing, so trying again is safe."""

        async def run() -> T:
            schema = await self._tenant_schema(tenant)
            for attempt in range(MAX_ATTEMPTS - 1):
                try:
                    async with self._acquire() as conn:
                        return await fn(conn, schema)
                except _RETRIED:
                    await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
            async with self._acquire() as conn:
                return await fn(conn, schema)

        return await self._run(run)

    async def _write(
        self,
        tenant: str | None,
        fn: Callable[[asyncpg.Connection, str], Awaitable[T]],
        *,
        create: bool = True,
    ) -> T:
        """``fn(conn, schema)`` in a transaction, run again when it must (a concurrent
        create, a missing history partition, a deadlock between writers)."""

        async def run() -> T:
            if create:
                schema = await self._ensure_tenant(tenant)
            else:
                schema = await self._tenant_schema(tenant)
            for attempt in range(MAX_ATTEMPTS):
                try:
                    async with self._acquire() as conn, conn.transaction():
                        return await fn(conn, schema)
                except Retry:
                    continue
                except NeedPartitions as need:
                    await self._create_partitions(need)
                except _RETRIED:
                    await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
            raise StoreError("The write kept conflicting with concurrent writes; try again")

        try:
            return await self._run(run)
        except NgsiLdError:
            raise
        except Exception as exc:
            LOGGER.exception("write failed")
            raise StoreError(f"Write failed: {exc}", exc) from exc

    # --- entities

    async def tenant_exists(self, tenant: str | None) -> bool:
        tenant = validate_tenant(tenant)
        try:
            await self._run(lambda: self._tenant_schema(tenant))
        except NonexistentTenant:
            return False
        return True

    async def tenants(self) -> list[str | None]:
        async def run(conn: asyncpg.Connection, schema: str) -> list[str | None]:
            rows = await conn.fetch(f"SELECT name FROM {schema}.tenants ORDER BY name")
            return [None, *[r["name"] for r in rows]]

        return await self._read(None, run)

    async def change_entities(
        self, tenant: str | None, changes: Sequence[EntityChange]
    ) -> list[ChangeResult]:
        tenant = validate_tenant(tenant)
        if not changes:
            await self._run(lambda: self._ensure_tenant(tenant))
            return []

        async def run(
            conn: asyncpg.Connection, schema: str
        ) -> tuple[list[ChangeResult], frozenset[str]]:
            results = await apply_changes(
                conn,
                schema,
                changes,
                (self.view_renderer, self.view_updater),
                self.keep_history_on_delete,
                self._partitions,
            )
            observer = self.change_observer
            items = []
            if observer is not None:
                for result in results:
                    if result.error is None and result.old is not result.new:
                        items += observer(tenant, result.old, result.new)
                if items:
                    await write_outbox(conn, schema, items, now_timestamp(), time.time())
            return results, frozenset(i.subscription_id for i in items)

        results, queued = await self._write(tenant, run)
        if queued and self.outbox_listener is not None:
            self.outbox_listener(tenant, queued)
        if self.commit_listener is not None:
            self.commit_listener(tenant, results)
        return results

    async def get_entity(self, tenant: str | None, entity_id: str) -> Entity | None:
        return await self._docs.get(validate_tenant(tenant), entity_id)

    async def get_entity_view(self, tenant: str | None, entity_id: str) -> bytes | None:
        return await self._views.get(validate_tenant(tenant), entity_id)

    @contextlib.asynccontextmanager
    async def _point_session(
        self, tenant: str | None
    ) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
        """A pooled connection and the tenant's schema, held while point reads follow each
        other (taking and giving back a pooled connection costs as much as the query)."""
        try:
            schema = await self._tenant_schema(tenant)
            async with self._acquire() as conn:
                yield conn, schema
        except _DRIVER_ERRORS as exc:
            raise translate(exc) from exc

    async def _by_ids(
        self, held: tuple[asyncpg.Connection, str], columns: str, ids: list[str]
    ) -> list[asyncpg.Record]:
        """``columns`` of the entities with these ids, on the held connection."""
        conn, schema = held
        sql = f"SELECT id, {columns} FROM {schema}.entities WHERE id = ANY($1::text[])"
        return await self._run(lambda: conn.fetch(sql, ids))

    async def _fetch_docs(
        self, tenant: str | None, ids: list[str], held: tuple[asyncpg.Connection, str]
    ) -> dict[str, Entity]:
        rows = await self._by_ids(held, "doc", ids)
        return {row["id"]: orjson.loads(row["doc"]) for row in rows}

    async def _fetch_views(
        self, tenant: str | None, ids: list[str], held: tuple[asyncpg.Connection, str]
    ) -> dict[str, bytes]:
        rows = await self._by_ids(held, "CASE WHEN view IS NULL THEN doc END AS doc, view", ids)
        return {row["id"]: self._view(row["doc"], row["view"]) for row in rows}

    def _view(self, doc: str | None, view: bytes | None) -> bytes:
        if view is not None:
            return view
        assert doc is not None
        if self.view_renderer is None:
            raise StoreError("No view renderer is set on this store")
        return self.view_renderer(orjson.loads(doc))  # written before a renderer was set

    # --- queries

    async def query_entities(
        self, tenant: str | None, query: EntityQuery, *, views: bool = False
    ) -> QueryResult:
        tenant = validate_tenant(tenant)
        return await self._read(
            tenant, lambda conn, schema: self._run_query(conn, schema, query, views=views)
        )

    async def _run_query(
        self,
        conn: asyncpg.Connection,
        schema: str,
        query: EntityQuery,
        *,
        views: bool = False,
        ids: bool = False,
    ) -> QueryResult:
        """One page of ``query``: documents, views, or (``ids``) entity ids as ``views``."""
        compiled = compile_query(query, schema)
        params = compiled.params
        if compiled.near is not None:
            source = f"({compiled.near}) h JOIN {schema}.entities e ON e.rid = h.rid"
            order = "h.d, e.rid"
        else:
            source = f"{schema}.entities e"
            order = "e.rid"
        where = compiled.where
        total = None
        if query.count:
            sql, values = params.bind(f"SELECT count(*) FROM {source} WHERE {where}")
            total = await conn.fetchval(sql, *values)
        if query.limit == 0:
            return QueryResult([], total)
        if ids:
            columns = "e.id AS doc, NULL::bytea AS view"
        elif views:
            columns = "CASE WHEN e.view IS NULL THEN e.doc END AS doc, e.view"
        else:
            columns = "e.doc, NULL::bytea AS view"
        limit, offset = params.add(query.limit, "bigint"), params.add(query.offset, "bigint")
        sql, values = params.bind(
            f"SELECT {columns} FROM {source} WHERE {where} ORDER BY {order} "
            f"LIMIT {limit} OFFSET {offset}"
        )
        rows = await conn.fetch(sql, *values)
        if ids:
            return QueryResult([], total, views=[r["doc"] for r in rows])
        if views:
            return QueryResult([], total, views=[self._view(r["doc"], r["view"]) for r in rows])
        return QueryResult([orjson.loads(r["doc"]) for r in rows], total)

    async def discovery(self, tenant: str | None) -> list[DiscoveryRow]:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> list[DiscoveryRow]:
            table = f"{schema}.entities"
            rows = await conn.fetch(
                f"SELECT t, NULL AS a, NULL AS k, count(*) AS n FROM {table}, unnest(types) t "
                "GROUP BY t"
            )
            rows += await conn.fetch(
                f"SELECT DISTINCT t, a.key AS a, k.key AS k, 0 AS n FROM {table}, "
                "unnest(types) t, jsonb_each(ix -> '@k') a, jsonb_each(a.value) k"
            )
            rows += await conn.fetch(
                f"SELECT NULL AS t, a.key AS a, k.key AS k, sum((k.value)::bigint) AS n "
                f"FROM {table}, jsonb_each(ix -> '@k') a, jsonb_each(a.value) k GROUP BY 2, 3"
            )
            return [DiscoveryRow(r["t"], r["a"], r["k"], int(r["n"])) for r in rows]

        return await self._read(tenant, run)


def load_from_url(url: str, **options: Any) -> PostgresStore:
    """Build a store from ``postgresql://user:password@host:port/database``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"Not a PostgreSQL store URL: {url!r}")
    if not parts.path.strip("/"):
        raise ValueError(f"No database name in store URL {url!r}")
    known = {"pool_size", "keep_history_on_delete"}
    return PostgresStore(url, **{k: v for k, v in options.items() if k in known})
