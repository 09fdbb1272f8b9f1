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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

V = TypeVar("V")

#: (tenant, keys, held) -> {key: value} for the keys that exist; ``held`` is what the
#: ``hold`` context gave for this run of queries (None without one)
FetchMany = Callable[[str | None, list[str], Any], Awaitable[dict[str, V]]]
#: tenant -> a context holding what consecutive queries share (a database connection)
Hold = Callable[[str | None], AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def _nothing_held(tenant: str | None) -> AsyncIterator[None]:
    yield None


class PointReads(Generic[V]):
    """Coalesces concurrent reads by key (per tenant) into one ``fetch_many`` call. While
    queries follow each other without a pause, they share what ``hold`` gives (a pooled
    connection taken once instead of once a query); a query that fails ends the run, so
    the next one starts with a fresh hold."""

    def __init__(self, fetch_many: FetchMany[V], hold: Hold | None = None) -> None:
        self._fetch_many = fetch_many
        self._hold: Hold = hold or _nothing_held
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
        again = True
        try:
            async with self._hold(tenant) as held:
                while batch := self._waiting.pop(tenant, {}):
                    try:
                        found = await self._fetch_many(tenant, list(batch), held)
                    except Exception as exc:  # every waiter of this query gets the error
                        _settle(batch, error=exc)
                        batch = {}
                        break  # what is held may be broken: the next query takes anew
                    _settle(batch, found=found)
                    batch = {}
        except asyncio.CancelledError:  # the store is closing: nobody may wait forever
            again = False
            _settle(batch, error=asyncio.CancelledError())
            _settle(self._waiting.pop(tenant, {}), error=asyncio.CancelledError())
            raise
        except Exception as exc:  # taking or giving back the hold failed: tell who waits
            _settle(batch, error=exc)
            _settle(self._waiting.pop(tenant, {}), error=exc)
        finally:
            del self._draining[tenant]
            if again and self._waiting.get(tenant):  # arrived after a failed query
                self._draining[tenant] = asyncio.create_task(self._drain(tenant))

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
