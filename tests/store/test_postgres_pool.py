"""The PostgreSQL store's pooled connections: released without asyncpg's reset query, yet
never handed out inside a transaction."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.postgres_cluster import PostgresCluster
from urbanstack.store.postgres import PostgresStore, load_from_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def pg_url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.empty_store()


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = load_from_url(pg_url, pool_size=1)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_release_sends_no_reset_query(pg_store: PostgresStore) -> None:
    sent: list[str] = []

    def log(record: Any) -> None:
        sent.append(record.query)

    async with pg_store._acquire() as conn:
        conn.add_query_logger(log)
        await conn.fetchval("SELECT 1")
    async with pg_store._acquire() as conn:
        await conn.fetchval("SELECT 2")
        conn.remove_query_logger(log)

    assert sent == ["SELECT 1", "SELECT 2"]


async def test_a_transaction_left_open_is_rolled_back_on_release(pg_store: PostgresStore) -> None:
    table = f"scratch_{uuid.uuid4().hex[:8]}"
    async with pg_store._acquire() as conn:
        await conn.execute(f"CREATE TABLE {table} (n integer)")
    try:
        async with pg_store._acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
        async with pg_store._acquire() as conn:  # the pool's only connection
            assert not conn.is_in_transaction()
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
    finally:
        async with pg_store._acquire() as conn:
            await conn.execute(f"DROP TABLE {table}")


async def test_session_settings_are_kept_across_releases(pg_store: PostgresStore) -> None:
    async with pg_store._acquire() as conn:
        first = await conn.fetchval("SHOW search_path")
        await conn.execute("SET search_path TO pg_catalog")  # as if a session setting leaked
    async with pg_store._acquire() as conn:
        assert await conn.fetchval("SHOW search_path") == "pg_catalog"
        await conn.execute(f"SET search_path TO {first}")
