"""Fixtures of the storage contract suites: an open store per backend, async tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
