"""Point reads that arrive together answered by one query (request coalescing).

A networked store pays a round trip and the database's per-statement work for every
``WHERE id = $1``. Under load, many retrievals by id wait at the same moment: here they
share one ``WHERE id = ANY($1)`` query. With nothing else waiting, a read goes out at
once, alone, so an idle server answers as fast as before; reads that arrive while a
query runs go out together in the next one. One query runs at a time per tenant, in
its own task, so a client that goes away cancels only its own wait.

A read always starts after it arrived, so it sees every write committed before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")

#: (tenant, keys) -> {key: value} for the keys that exist
FetchMany = Callable[[str | None, list[str]], Awaitable[dict[str, V]]]


class PointReads(Generic[V]):
    """Coalesces concurrent reads by key (per tenant) into one ``fetch_many`` call."""

    def __init__(self, fetch_many: FetchMany[V]) -> None:
        self._fetch_many = fetch_many
        self._waiting: dict[str | None, dict[str, list[asyncio.Future[V | None]]]] = {}
        self._draining: dict[str | None, asyncio.Task[None]] = {}

    async def get(self, tenant: str | None, key: str) -> V | None:
        """The value stored under ``key`` (None when there is none)."""
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, {}).setdefault(key, []).append(future)
        if tenant not in self._draining:
            self._draining[tenant] = asyncio.create_task(self._drain(tenant))
        return await future

    async def _drain(self, tenant: str | None) -> None:
        batch: dict[str, list[asyncio.Future[V | None]]] = {}
        try:
            while batch := self._waiting.pop(tenant, {}):
                try:
                    found = await self._fetch_many(tenant, list(batch))
                except Exception as exc:  # every waiter of this query gets the error
                    _settle(batch, error=exc)
                else:
                    _settle(batch, found=found)
        except asyncio.CancelledError:  # the store is closing: nobody may wait forever
            _settle(batch, error=asyncio.CancelledError())
            _settle(self._waiting.pop(tenant, {}), error=asyncio.CancelledError())
            raise
        finally:
            self._draining.pop(tenant, None)

    async def close(self) -> None:
        """Cancel the running queries; their waiters see CancelledError."""
        tasks = list(self._draining.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _settle(
    batch: dict[str, list[asyncio.Future[V | None]]],
    found: dict[str, V] | None = None,
    error: BaseException | None = None,
) -> None:
    for key, futures in batch.items():
        for future in futures:
            if future.done():  # its client went away
                continue
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            elif error is not None:
                future.set_exception(error)
            else:
                assert found is not None
                future.set_result(found.get(key))
