"""Keeping every process's caches right when several share one store.

A process that changes a subscription or an IoT group or device announces it through
the store (PostgreSQL ``NOTIFY``); every other process reloads what it caches of it.
Announcements are best effort: caches that could miss one also expire (the IoT registry
after a few seconds), the subscription index is reloaded whole at start-up, and whenever
the store says announcements may have been missed (:data:`ANNOUNCEMENTS_MISSED`, after
its connection to the database came back) every cache is reloaded or dropped.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from urbanstack.broker.entities import Broker
from urbanstack.ngsild.subscription import subscription_from_document
from urbanstack.store.base import ANNOUNCEMENTS_MISSED

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
    """The store's announcement listener: reloads what another process changed.

    ``forget_record(kind, key)`` drops one cached record, ``forget_records()`` all of them.
    """

    def __init__(
        self,
        broker: Broker,
        forget_record: Callable[[str, str], None] | None = None,
        forget_records: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.forget_record = forget_record
        self.forget_records = forget_records
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, topic: str, message: dict[str, Any]) -> None:
        if topic == ANNOUNCEMENTS_MISSED:
            if self.forget_records is not None:
                self.forget_records()
            self._spawn(self._reload_subscriptions())
            return
        if message.get("origin") == PROCESS_ID:
            return
        if topic == SUBSCRIPTION:
            self._spawn(self._reload_subscription(message.get("tenant"), str(message.get("id"))))
        elif topic == RECORD and self.forget_record is not None:
            self.forget_record(str(message.get("kind")), str(message.get("key")))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload_subscriptions(self) -> None:
        try:
            await self.broker.subscriptions.load(self.broker.store)
        except Exception:
            LOGGER.exception("could not reload the subscriptions")
        else:
            LOGGER.info("subscriptions reloaded: announcements may have been missed")

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
