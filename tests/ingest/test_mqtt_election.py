"""With several API processes on one PostgreSQL store, one of them receives the device
messages (the MQTT lock); one that loses the lock with its database connection stops
receiving, and another takes over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.postgres_cluster import PostgresCluster, drop_coordination_connection
from urbanstack.ingest.mqtt import MQTT_LOCK, run_when_elected
from urbanstack.store.postgres import PostgresStore, load_from_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Receiver:
    """Stands in for the MQTT receiver: what matters here is when it runs."""

    def __init__(self) -> None:
        self.running = False
        self.starts = 0
        self.stops = 0

    async def start(self) -> None:
        self.running = True
        self.starts += 1

    async def stop(self) -> None:
        self.running = False
        self.stops += 1


@pytest.fixture
def pg_url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.empty_store()


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    opened = [load_from_url(pg_url, pool_size=1) for _ in range(2)]
    for store in opened:
        await store.open()
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def _eventually(check: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_one_process_receives_and_another_takes_over_when_it_loses_the_lock(
    stores: list[PostgresStore],
) -> None:
    first_store, second_store = stores
    first, second = Receiver(), Receiver()
    tasks = [
        asyncio.create_task(run_when_elected(first, first_store, retry=0.05, watch=0.02)),
    ]
    await _eventually(lambda: first.running)
    tasks.append(
        asyncio.create_task(run_when_elected(second, second_store, retry=0.05, watch=0.02))
    )
    try:
        await asyncio.sleep(0.3)
        assert not second.running

        await drop_coordination_connection(first_store)

        await _eventually(lambda: first.stops == 1)
        # then one of them (whichever takes the free lock first) receives, alone (for a
        # moment both may: the server frees the lock before the first one hears of the
        # loss, and the shared MQTT client id leaves the broker one connection anyway)
        await _eventually(lambda: first.running != second.running)
        await asyncio.sleep(0.3)
        holder = (first, first_store) if first.running else (second, second_store)
        assert holder[0].running and holder[1].holds_lock(MQTT_LOCK)
        assert first.running != second.running
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
