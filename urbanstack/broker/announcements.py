"""Keeping every process's caches right when several share one store.

A process that changes a subscription or an IoT group or device announces it through
the store (PostgreSQL ``NOTIFY``); every other process reloads what it caches of it.
Announcements are best effort: caches that could miss one also expire (the IoT registry
after a few seconds), and the subscription index is reloaded whole at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from urbanstack.broker.entities import Broker
from urbanstack.ngsild.subscription import subscription_from_document

LOGGER = logging.getLogger(__name__)
#: this process, so that it ignores its own announcements
PROCESS_ID = uuid.uuid4().hex
SUBSCRIPTION = "subscription"
RECORD = "record"


async def announce_subscription(broker: Broker, tenant: str | None, sub_id: str) -> None:
    """Tell the other processes that a subscription was created, changed or deleted."""
    await broker.store.announce(
        SUBSCRIPTION, {"origin": PROCESS_ID, "tenant": tenant, "id": sub_id}
    )


async def announce_record(broker: Broker, kind: str, key: str) -> None:
    """Tell the other processes that a record (an IoT group or device) changed."""
    await broker.store.announce(RECORD, {"origin": PROCESS_ID, "kind": kind, "key": key})


class AnnouncementHandler:
    """The store's announcement listener: reloads what another process changed."""

    def __init__(self, broker: Broker, forget_record: Any = None) -> None:
        self.broker = broker
        self.forget_record = forget_record
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, topic: str, message: dict[str, Any]) -> None:
        if message.get("origin") == PROCESS_ID:
            return
        if topic == SUBSCRIPTION:
            task = asyncio.get_running_loop().create_task(
                self._reload_subscription(message.get("tenant"), str(message.get("id")))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif topic == RECORD and self.forget_record is not None:
            self.forget_record(str(message.get("kind")), str(message.get("key")))

    async def _reload_subscription(self, tenant: str | None, sub_id: str) -> None:
        try:
            record = await self.broker.store.get_subscription(tenant, sub_id)
        except Exception:
            LOGGER.exception("could not reload subscription %s", sub_id)
            return
        if record is None:
            self.broker.subscriptions.remove(tenant, sub_id)
        else:
            self.broker.subscriptions.put(tenant, subscription_from_document(record.document))
