"""SQLite-only routing of outbox reads: one subscription's next batch is read on the event
loop; the heads of every subscription (unbounded) on the reader threads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from urbanstack.store.base import OutboxItem
from urbanstack.store.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio


async def test_one_subscriptions_batch_is_read_without_the_reader_threads(
    tmp_path: Path, forbid_reader_threads: Callable[[Any], None]
) -> None:
    store = SQLiteStore(tmp_path / "o.db", synchronous="OFF")
    await store.open()
    try:
        items = [OutboxItem("urn:sub:1", f"urn:e:{n}", b"{}") for n in range(5)]
        await store.queue_notifications(None, [*items, OutboxItem("urn:sub:2", "urn:e:9", b"{}")])

        forbid_reader_threads(store)
        batch = await store.pending_notifications(None, 3, subscription_id="urn:sub:1", after=0)
        assert [row.entity_id for row in batch["urn:sub:1"]] == ["urn:e:0", "urn:e:1", "urn:e:2"]
        with pytest.raises(AssertionError, match="reader thread"):
            await store.pending_notifications(None, 1)
    finally:
        await store.close()
