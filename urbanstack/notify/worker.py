"""The delivery worker: sends the outbox's notifications, in order, with retries.

Changes and their outbox rows are committed together (see ``EntityStore``); this worker,
running beside the API on the event loop, reads the rows back and sends them. Each
subscription is drained by its own task, so a slow or failing receiver delays only its
own notifications. Within a subscription, rows go out in change order, several pending
changes in one notification (``data`` in order); a failure stops that subscription's
queue until the head row's next attempt (exponential back-off, capped), so the order per
(subscription, entity) holds and nothing is dropped: delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import orjson

from urbanstack.broker.entities import Broker
from urbanstack.broker.subscriptions import periodic_notifications
from urbanstack.ngsild.jsonld import context_link, context_value
from urbanstack.ngsild.model import now_timestamp
from urbanstack.ngsild.subscription import Subscription
from urbanstack.ngsild.subscription_match import notification_body, render_notification_entity
from urbanstack.notify.senders import DeliveryError, HttpSender, MqttSender, Sender
from urbanstack.store.base import DeliveryReport, PendingNotification

LOGGER = logging.getLogger(__name__)
#: notification ids: unique per process start (a random prefix) and cheap (a counter);
#: uuid4 per notification read the OS's random source each time
_NOTIFICATION_ID_PREFIX = f"urn:ngsi-ld:Notification:{uuid.uuid4().hex[:16]}-"
_NOTIFICATION_IDS = (f"{_NOTIFICATION_ID_PREFIX}{n}" for n in itertools.count(1))
JSON_LD = "application/ld+json"
FLUSH_DELAY_S = 0.02


class DeliveryWorker:
    """Drains every tenant's outbox; :meth:`wake` after commits, a tick for retries."""

    def __init__(
        self,
        broker: Broker,
        senders: dict[str, Sender] | None = None,
        *,
        batch: int = 100,
        retry_base: float = 1.0,
        retry_max: float = 300.0,
        tick: float = 0.5,
        ca_file: str | None = None,
    ) -> None:
        self.broker = broker
        if senders is None:
            http, mqtt = HttpSender(ca_file=ca_file), MqttSender(ca_file=ca_file)
            senders = {"http": http, "https": http, "mqtt": mqtt, "mqtts": mqtt}
        self.senders = senders
        self.batch = batch
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.tick = tick
        self._wake = asyncio.Event()
        # subscriptions the store said got new rows, and whether a wake-up named none
        self._fresh: set[tuple[str | None, str]] = set()
        self._look_at_all = True
        self._running: dict[tuple[str | None, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str | None, str]] = set()
        self._last_sent: dict[str, float] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._periodic_task: asyncio.Task[None] | None = None
        self._next_periodic: dict[tuple[str | None, str], float] = {}
        # deliveries are recorded in batches: rows sent but not yet deleted are skipped
        self._sent_upto: dict[tuple[str | None, str], int] = {}
        self._unrecorded: dict[str | None, list[DeliveryReport]] = {}
        self._flush_task: asyncio.Task[None] | None = None

    def wake(self, tenant: str | None = None, subscriptions: frozenset[str] | None = None) -> None:
        """New outbox rows were committed (the store's outbox listener), for the given
        subscriptions or, when None, for any."""
        if subscriptions is None:
            self._look_at_all = True
        else:
            self._fresh.update((tenant, sub_id) for sub_id in subscriptions)
        self._wake.set()

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="notification-worker")
        self._periodic_task = asyncio.create_task(self._periodic(), name="periodic-notifications")

    async def stop(self) -> None:
        """Stop dispatching and wait for in-flight deliveries; pending rows stay queued."""
        for task in (self._loop_task, self._periodic_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._flush_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
        await self._flush()
        for sender in {id(s): s for s in self.senders.values()}.values():
            await sender.close()

    async def _run(self) -> None:
        last_full = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)
            self._wake.clear()
            fresh, self._fresh = self._fresh, set()
            try:
                # every subscription's head row at each tick (retries falling due) and when
                # a wake-up named none; otherwise only the subscriptions named: reading the
                # heads scans the outbox, which holds thousands of rows under load
                if self._look_at_all or time.monotonic() - last_full >= self.tick:
                    self._look_at_all = False
                    last_full = time.monotonic()
                    await self.dispatch()
                else:
                    self.dispatch_fresh(fresh)
            except Exception:
                LOGGER.exception("notification dispatch failed; retrying")

    async def _periodic(self) -> None:
        """Queue the notifications of ``timeInterval`` subscriptions when they are due
        (the first one an interval after the subscription is seen)."""
        while True:
            await asyncio.sleep(min(self.tick, 1.0))
            try:
                await self.queue_periodic(time.monotonic())
            except Exception:
                LOGGER.exception("periodic notifications failed; retrying")

    async def queue_periodic(self, now: float) -> None:
        """Queue every periodic subscription whose interval has passed."""
        seen = set()
        for tenant, sub in self.broker.subscriptions.periodic():
            key = (tenant, sub.id)
            seen.add(key)
            interval = float(sub.time_interval or 0)
            due = self._next_periodic.setdefault(key, now + interval)
            if now >= due:
                self._next_periodic[key] = now + interval
                await periodic_notifications(self.broker, tenant, sub, now_timestamp())
        for key in set(self._next_periodic) - seen:
            del self._next_periodic[key]

    def dispatch_fresh(self, fresh: set[tuple[str | None, str]]) -> None:
        """Start a drain task for each subscription named by a wake-up (a task finding
        its next notification not yet due ends at once)."""
        for key in fresh:
            if key in self._running:
                self._again.add(key)  # the task looks again before it ends
            else:
                self._running[key] = asyncio.create_task(self._drain(*key))

    async def dispatch(self) -> None:
        """Start a drain task for each subscription whose next notification is due."""
        now = time.time()
        for tenant in await self.broker.store.tenants():
            heads = await self.broker.store.pending_notifications(tenant, limit=1)
            for sub_id, rows in heads.items():
                key = (tenant, sub_id)
                if key in self._running:
                    self._again.add(key)  # the task looks again before it ends
                elif rows and rows[0].next_attempt <= now:
                    self._running[key] = asyncio.create_task(self._drain(tenant, sub_id))

    async def _drain(self, tenant: str | None, sub_id: str) -> None:
        key = (tenant, sub_id)
        # one process at a time drains a subscription (several may share the store), so
        # each notification leaves once and in order; its deliveries are recorded before
        # the lock is released
        lock = f"subscription:{tenant or ''}:{sub_id}"
        try:
            locked = await self.broker.store.try_lock(lock)
        except Exception:
            LOGGER.exception("could not lock %s", sub_id)
            locked = False
        if not locked:
            self._running.pop(key, None)
            return
        try:
            while True:
                if not self.broker.store.holds_lock(lock):
                    LOGGER.warning("lost the delivery lock of %s: another process goes on", sub_id)
                    return
                self._again.discard(key)
                sent = self._sent_upto.get(key, 0)  # rows sent, their deletion not yet written
                rows = await self.broker.store.pending_notifications(
                    tenant, limit=self.batch, subscription_id=sub_id, after=sent
                )
                queue = rows.get(sub_id, [])
                if not queue or queue[0].next_attempt > time.time():
                    if key in self._again:
                        continue
                    return
                if not await self._deliver(tenant, sub_id, queue):
                    return  # back-off: the dispatcher restarts it when due
                if len(rows.get(sub_id, [])) < self.batch and key not in self._again:
                    return  # everything read was sent, and nothing was committed since
        except Exception:
            LOGGER.exception("delivery for %s failed", sub_id)
        finally:
            try:
                if self.broker.store.shared_by_processes:
                    await self._flush()
                await self.broker.store.unlock(lock)
            except Exception:
                LOGGER.exception("could not release %s", sub_id)
            finally:
                self._running.pop(key, None)

    async def _deliver(
        self, tenant: str | None, sub_id: str, queue: list[PendingNotification]
    ) -> bool:
        """Send ``queue`` as one notification; record the outcome. True when delivered."""
        sub = self.broker.subscriptions.get(tenant, sub_id)
        when = now_timestamp()
        if sub is None:  # deleted meanwhile: its rows go with it
            return False
        await self._throttle(sub)
        try:
            body, headers = await self._render(tenant, sub, queue, when)
            scheme = urlsplit(sub.endpoint.uri).scheme
            sender = self.senders.get(scheme)
            if sender is None:
                raise DeliveryError(f"No sender for {scheme}:// endpoints")
            await sender.send(sub.endpoint.uri, body, headers, dict(sub.endpoint.notifier_info))
        except DeliveryError as exc:
            delay = min(self.retry_base * 2 ** queue[0].attempts, self.retry_max)
            LOGGER.info("notification to %s failed (%s); retry in %.1f s", sub.id, exc, delay)
            report = DeliveryReport(
                sub_id, [], queue[0].seq, time.time() + delay, str(exc)[:500], when
            )
            await self.broker.store.record_deliveries(tenant, [report])
            return False
        self._last_sent[sub_id] = time.monotonic()
        self._sent_upto[(tenant, sub_id)] = queue[-1].seq
        report = DeliveryReport(sub_id, [row.seq for row in queue], when=when)
        self._unrecorded.setdefault(tenant, []).append(report)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_later())
        return True

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_DELAY_S)  # deliveries of the next few ms join this write
        await self._flush()

    async def _flush(self) -> None:
        """Record the deliveries made since the last flush, one write per tenant. A crash
        before this write sends them again on restart (at-least-once)."""
        pending, self._unrecorded = self._unrecorded, {}
        for tenant, reports in pending.items():
            merged: dict[str, DeliveryReport] = {}
            for report in reports:
                into = merged.setdefault(
                    report.subscription_id, DeliveryReport(report.subscription_id, [])
                )
                into.delivered += report.delivered
                into.when = report.when
            try:
                await self.broker.store.record_deliveries(tenant, list(merged.values()))
            except Exception:
                LOGGER.exception("recording deliveries failed; they may be sent again")

    async def _throttle(self, sub: Subscription) -> None:
        if sub.throttling:
            wait = self._last_sent.get(sub.id, -1e9) + sub.throttling - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

    async def _render(
        self,
        tenant: str | None,
        sub: Subscription,
        queue: list[PendingNotification],
        when: str,
    ) -> tuple[bytes, dict[str, str]]:
        terms = await self.broker.contexts.term_map(sub.jsonld_context)
        data = []
        for row in queue:
            payload: dict[str, Any] = orjson.loads(row.payload)
            data.append(render_notification_entity(sub, payload["entity"], terms))
        notification = notification_body(sub, data, next(_NOTIFICATION_IDS), when)
        headers = {key: value for key, value in sub.endpoint.receiver_info}
        if sub.endpoint.accept == JSON_LD:
            notification = {"@context": context_value(terms), **notification}
            headers["Content-Type"] = JSON_LD
        else:
            headers["Content-Type"] = "application/json"
            headers["Link"] = context_link(terms)
        if tenant is not None:
            headers["NGSILD-Tenant"] = tenant
        return orjson.dumps(notification), headers
