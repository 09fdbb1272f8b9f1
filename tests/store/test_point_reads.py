"""Coalesced point reads: one query for the reads that wait together, none lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from urbanstack.store.point_reads import PointReads

pytestmark = pytest.mark.anyio


class Table:
    """A key-value table whose queries take a while and are recorded."""

    def __init__(self, rows: dict[str, str], delay: float = 0.02) -> None:
        self.rows = rows
        self.delay = delay
        self.queries: list[tuple[str | None, list[str]]] = []
        self.fail_next = False
        self.held: list[object] = []
        self.holds = 0  # contexts taken
        self.fail_hold = False

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str | None) -> AsyncIterator[int]:
        if self.fail_hold:
            raise RuntimeError("no connection left")
        self.holds += 1
        yield self.holds

    async def fetch_many(self, tenant: str | None, keys: list[str], held: object) -> dict[str, str]:
        self.queries.append((tenant, keys))
        self.held.append(held)
        await asyncio.sleep(self.delay)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("database went away")
        return {k: f"{tenant}:{self.rows[k]}" for k in keys if k in self.rows}


async def test_a_lone_read_is_queried_at_once_and_alone() -> None:
    table = Table({"a": "1"})
    reads = PointReads(table.fetch_many)
    assert await reads.get(None, "a") == "None:1"
    assert table.queries == [(None, ["a"])]


async def test_reads_arriving_during_a_query_share_the_next_one() -> None:
    table = Table({"a": "1", "b": "2", "c": "3"})
    reads = PointReads(table.fetch_many)
    first = asyncio.ensure_future(reads.get(None, "a"))
    await asyncio.sleep(0.005)  # the query for "a" is running
    later = [asyncio.ensure_future(reads.get(None, k)) for k in ("b", "c", "b")]
    assert await first == "None:1"
    assert await asyncio.gather(*later) == ["None:2", "None:3", "None:2"]
    assert table.queries == [(None, ["a"]), (None, ["b", "c"])]


async def test_a_missing_key_reads_as_none() -> None:
    reads = PointReads(Table({"a": "1"}).fetch_many)
    assert await asyncio.gather(reads.get(None, "a"), reads.get(None, "zz")) == ["None:1", None]


async def test_tenants_are_queried_apart() -> None:
    table = Table({"a": "1"})
    reads = PointReads(table.fetch_many)
    got = await asyncio.gather(reads.get("hue", "a"), reads.get("hcmc", "a"), reads.get(None, "a"))
    assert got == ["hue:1", "hcmc:1", "None:1"]
    assert sorted(str(tenant) for tenant, _ in table.queries) == ["None", "hcmc", "hue"]


async def test_a_failed_query_fails_its_reads_only() -> None:
    table = Table({"a": "1", "b": "2"})
    reads = PointReads(table.fetch_many)
    table.fail_next = True
    results = await asyncio.gather(
        reads.get(None, "a"), reads.get(None, "b"), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await reads.get(None, "b") == "None:2"


async def test_a_reader_that_goes_away_does_not_cancel_the_others() -> None:
    table = Table({"a": "1"})
    reads = PointReads(table.fetch_many)
    leaving = asyncio.ensure_future(reads.get(None, "a"))
    staying = asyncio.ensure_future(reads.get(None, "a"))
    await asyncio.sleep(0.005)
    leaving.cancel()
    assert await staying == "None:1"
    assert leaving.cancelled()


async def test_closing_ends_every_wait() -> None:
    table = Table({"a": "1"}, delay=5.0)
    reads = PointReads(table.fetch_many)
    running = asyncio.ensure_future(reads.get(None, "a"))
    await asyncio.sleep(0.005)
    queued = asyncio.ensure_future(reads.get(None, "a"))
    await asyncio.wait_for(reads.close(), 1.0)
    for waiter in (running, queued):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiter, 1.0)


async def test_queries_that_follow_each_other_share_one_hold() -> None:
    table = Table({"a": "1", "b": "2", "c": "3"})
    reads = PointReads(table.fetch_many, table.hold)
    first = asyncio.ensure_future(reads.get(None, "a"))
    await asyncio.sleep(0.005)
    second = asyncio.ensure_future(reads.get(None, "b"))
    assert [await first, await second] == ["None:1", "None:2"]
    assert table.held == [1, 1] and table.holds == 1
    assert await reads.get(None, "c") == "None:3"  # after a pause: a new hold
    assert table.held == [1, 1, 2]


async def test_without_a_hold_queries_get_none() -> None:
    table = Table({"a": "1"})
    assert await PointReads(table.fetch_many).get(None, "a") == "None:1"
    assert table.held == [None]


async def test_a_failed_query_ends_the_hold_and_the_next_reads_take_a_new_one() -> None:
    table = Table({"a": "1", "b": "2"})
    reads = PointReads(table.fetch_many, table.hold)
    table.fail_next = True
    failing = asyncio.ensure_future(reads.get(None, "a"))
    await asyncio.sleep(0.005)
    queued = asyncio.ensure_future(reads.get(None, "b"))
    with pytest.raises(RuntimeError):
        await failing
    assert await queued == "None:2"
    assert table.held == [1, 2]


async def test_a_hold_that_cannot_be_taken_fails_every_waiting_read() -> None:
    table = Table({"a": "1", "b": "2"})
    reads = PointReads(table.fetch_many, table.hold)
    table.fail_hold = True
    results = await asyncio.gather(
        reads.get(None, "a"), reads.get(None, "b"), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    table.fail_hold = False
    assert await reads.get(None, "a") == "None:1"
