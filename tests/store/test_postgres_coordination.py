"""The PostgreSQL store's coordination connection (advisory locks, LISTEN/NOTIFY) survives
its loss: a database restart or a dropped connection ends the process's locks, and the
store reconnects, takes locks again and tells every process to reload its caches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.postgres_cluster import PostgresCluster, drop_coordination_connection
from urbanstack.store.base import ANNOUNCEMENTS_MISSED, RecordChange
from urbanstack.store.postgres import PostgresStore, load_from_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def pg_url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.empty_store()


class Heard:
    """An announcement listener that keeps what it hears."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, topic: str, message: dict[str, Any]) -> None:
        self.messages.append((topic, message))

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.messages]


async def _open(url: str) -> PostgresStore:
    store = load_from_url(url, pool_size=1)
    store.announcement_listener = Heard()
    await store.open()
    return store


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    first, second = await _open(pg_url), await _open(pg_url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def _eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_lock_is_held_by_one_process(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = stores
    assert await first.try_lock("job")
    assert first.holds_lock("job")
    assert not await second.try_lock("job")
    assert not second.holds_lock("job")
    await first.unlock("job")
    assert not first.holds_lock("job")
    assert await second.try_lock("job")


async def _lose_lock(store: PostgresStore, name: str) -> None:
    """Take ``name``, then lose it with the store's coordination connection."""
    assert await store.try_lock(name)
    await drop_coordination_connection(store)
    await _eventually(lambda: not store.holds_lock(name))


async def test_a_lost_connection_ends_the_locks_it_held(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = stores

    await _lose_lock(first, "job")

    assert await second.try_lock("job")


async def test_locks_are_taken_again_after_the_store_reconnects(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, _ = stores
    await _lose_lock(first, "job")

    for _ in range(500):  # refused (False, no exception) while reconnecting, then granted
        if await first.try_lock("other"):
            break
        await asyncio.sleep(0.02)
    assert first.holds_lock("other")
    assert await first.try_lock("job")


async def test_unlocking_a_lock_lost_with_its_connection_is_harmless(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = stores
    await _lose_lock(first, "job")
    assert await second.try_lock("job")

    await first.unlock("job")

    assert second.holds_lock("job")
    assert not await first.try_lock("job")


async def test_every_process_is_told_to_reload_after_a_reconnection(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = stores
    heard_first: Heard = first.announcement_listener  # type: ignore[assignment]
    heard_second: Heard = second.announcement_listener  # type: ignore[assignment]

    await drop_coordination_connection(first)

    # announcements made while it was away may be lost both ways: everyone reloads
    await _eventually(lambda: ANNOUNCEMENTS_MISSED in heard_first.topics())
    await _eventually(lambda: ANNOUNCEMENTS_MISSED in heard_second.topics())


async def test_announcements_flow_again_after_a_reconnection(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = stores
    heard_first: Heard = first.announcement_listener  # type: ignore[assignment]
    await drop_coordination_connection(first)
    await _eventually(lambda: ANNOUNCEMENTS_MISSED in heard_first.topics())

    await second.announce("subscription", {"id": "after"})

    await _eventually(lambda: ("subscription", {"id": "after"}) in heard_first.messages)


async def test_an_announcement_while_disconnected_does_not_fail_the_caller(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, _ = stores
    conn = first._coordination
    await drop_coordination_connection(first)
    await _eventually(lambda: conn is not None and conn.is_closed())

    await first.announce("subscription", {"id": "during"})  # logged, covered by the reload


async def test_closing_the_store_stops_reconnecting(pg_url: str) -> None:
    store = await _open(pg_url)
    await drop_coordination_connection(store)
    await store.close()
    await asyncio.sleep(0.3)

    assert store._coordination is None


async def test_records_counted_up_by_two_processes_at_once_lose_no_update(
    pg_url: str,
) -> None:
    """Two stores (two API processes) count the same device records up concurrently,
    several keys a call: the rows are locked while a call runs, and a record created
    meanwhile by the other makes the call run again, so every increment counts."""
    first, second = load_from_url(pg_url, pool_size=4), load_from_url(pg_url, pool_size=4)
    await first.open()
    await second.open()
    keys = [f"device-{n}" for n in range(20)]

    def add_one(key: str) -> RecordChange:
        return RecordChange(key, lambda current: {"n": (current or {"n": 0})["n"] + 1})

    async def count_up(store: PostgresStore, rounds: int) -> None:
        for round_ in range(rounds):
            chosen = keys[round_ % 5 :: 3]  # overlapping sets of keys, new ones at first
            await store.change_records("counters", [add_one(k) for k in chosen])

    try:
        rounds = 25
        await asyncio.gather(*(count_up(s, rounds) for s in (first, second) for _ in range(3)))
        expected: dict[str, int] = {}
        for round_ in range(rounds):
            for key in keys[round_ % 5 :: 3]:
                expected[key] = expected.get(key, 0) + 6  # 2 stores x 3 concurrent callers
        records, _ = await first.list_records("counters", 100)
        assert {key: doc["n"] for key, doc in records} == expected
    finally:
        await first.close()
        await second.close()
