"""Fixtures of the storage contract suites: an open store per backend, async tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from urbanstack.store import store_from_url
from urbanstack.store.base import EntityStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EntityStore]:
    """A fresh, open store on every backend, closed after the test."""
    backend = store_from_url(store_url)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def forbid_reader_threads(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], None]:
    """Make a SQLite store's reads on its reader threads fail, to show which reads do not
    use them (those that run on the event loop)."""

    def forbid(store: Any) -> None:
        async def no_reader_threads(*args: Any) -> Any:
            raise AssertionError("went to a reader thread")

        monkeypatch.setattr(store, "_read", no_reader_threads)

    return forbid
