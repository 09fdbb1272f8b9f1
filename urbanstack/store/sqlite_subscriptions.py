"""Subscriptions and the notification outbox on SQLite, mixed into :class:`SQLiteStore`.

Outbox rows are written by :func:`write_outbox` inside the write transaction of the
change that caused them; the delivery worker reads them back in change order and
reports what it delivered, one short write per round.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from urbanstack.ngsild.errors import AlreadyExists
from urbanstack.ngsild.model import now_timestamp
from urbanstack.store.base import (
    DeliveryReport,
    OutboxItem,
    PendingNotification,
    SubscriptionRecord,
    validate_tenant,
)

if TYPE_CHECKING:
    from urbanstack.store.sqlite import SQLiteStore

    _Base = SQLiteStore
else:
    _Base = object

#: largest batch of one subscription's pending notifications read on the event loop
INLINE_PENDING_LIMIT = 1000
_COLUMNS = (
    "id, doc, times_sent, times_failed, last_notification, last_success, last_failure, failing"
)


def write_outbox(
    conn: sqlite3.Connection, items: Sequence[OutboxItem], created: str, now: float
) -> None:
    """Queue notifications (due at once) in the current transaction."""
    conn.executemany(
        "INSERT INTO outbox (subscription_id, entity_id, payload, created, next_attempt) "
        "VALUES (?, ?, ?, ?, ?)",
        [(i.subscription_id, i.entity_id, i.payload, created, now) for i in items],
    )


def _record(row: tuple[Any, ...]) -> SubscriptionRecord:
    return SubscriptionRecord(
        id=row[0],
        document=orjson.loads(row[1]),
        times_sent=row[2],
        times_failed=row[3],
        last_notification=row[4],
        last_success=row[5],
        last_failure=row[6],
        failing=bool(row[7]),
    )


class SQLiteSubscriptions(_Base):
    """Subscription methods of the storage contract on the SQLite files."""

    async def create_subscription(self, tenant: str | None, record: SubscriptionRecord) -> None:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> None:
            found = conn.execute("SELECT 1 FROM subscriptions WHERE id = ?", (record.id,))
            if found.fetchone() is not None:
                raise AlreadyExists(f"Subscription {record.id!r} already exists")
            conn.execute(
                "INSERT INTO subscriptions (id, doc) VALUES (?, ?)",
                (record.id, orjson.dumps(record.document)),
            )

        await self._write(tenant, run)

    async def get_subscription(self, tenant: str | None, sub_id: str) -> SubscriptionRecord | None:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> SubscriptionRecord | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM subscriptions WHERE id = ?", (sub_id,)
            ).fetchone()
            return _record(row) if row else None

        return await self._read(tenant, run)

    async def list_subscriptions(
        self, tenant: str | None, limit: int, offset: int
    ) -> tuple[list[SubscriptionRecord], int]:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> tuple[list[SubscriptionRecord], int]:
            total = conn.execute("SELECT count(*) FROM subscriptions").fetchone()[0]
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM subscriptions ORDER BY seq LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            return [_record(r) for r in rows], total

        return await self._read(tenant, run)

    async def replace_subscription(
        self, tenant: str | None, sub_id: str, document: dict[str, Any]
    ) -> bool:
        tenant = validate_tenant(tenant)
        self._check_tenant(tenant)
        encoded = orjson.dumps(document)
        return await self._write(
            tenant,
            lambda conn: (
                conn.execute(
                    "UPDATE subscriptions SET doc = ? WHERE id = ?", (encoded, sub_id)
                ).rowcount
                > 0
            ),
        )

    async def delete_subscription(self, tenant: str | None, sub_id: str) -> bool:
        tenant = validate_tenant(tenant)
        self._check_tenant(tenant)

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM outbox WHERE subscription_id = ?", (sub_id,))
            return conn.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,)).rowcount > 0

        return await self._write(tenant, run)

    async def queue_notifications(self, tenant: str | None, items: list[OutboxItem]) -> None:
        tenant = validate_tenant(tenant)
        if not items:
            return
        await self._write(
            tenant, lambda conn: write_outbox(conn, items, now_timestamp(), time.time())
        )
        if self.outbox_listener is not None:
            self.outbox_listener(tenant)

    async def pending_notifications(
        self, tenant: str | None, limit: int, subscription_id: str | None = None, after: int = 0
    ) -> dict[str, list[PendingNotification]]:
        tenant = validate_tenant(tenant)
        if tenant not in self._known_tenants:
            return {}

        def run(conn: sqlite3.Connection) -> dict[str, list[PendingNotification]]:
            pending: dict[str, list[PendingNotification]] = {}
            if subscription_id is None and limit == 1 and not after:
                # each subscription's head row in one pass over the (subscription, seq) index
                # (SQLite takes the bare columns from the row that has min(seq))
                for row in conn.execute(
                    "SELECT min(seq), subscription_id, entity_id, payload, created, attempts, "
                    "next_attempt FROM outbox GROUP BY subscription_id"
                ):
                    pending[row[1]] = [PendingNotification(*row)]
                return pending
            if subscription_id is not None:
                subscriptions = [subscription_id]
            else:
                subscriptions = [
                    r[0] for r in conn.execute("SELECT DISTINCT subscription_id FROM outbox")
                ]
            for sub_id in subscriptions:
                rows = conn.execute(
                    "SELECT seq, subscription_id, entity_id, payload, created, attempts, "
                    "next_attempt FROM outbox WHERE subscription_id = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (sub_id, after, limit),
                ).fetchall()
                if rows:
                    pending[sub_id] = [PendingNotification(*r) for r in rows]
            return pending

        if subscription_id is not None and limit <= INLINE_PENDING_LIMIT:
            # one subscription's next batch: an index range of at most ``limit`` rows, read
            # on the event loop like an entity by id (no thread hop, no lock hand-over per row)
            return await self._point_read(tenant, run)
        return await self._read(tenant, run)

    async def record_deliveries(self, tenant: str | None, reports: list[DeliveryReport]) -> None:
        tenant = validate_tenant(tenant)

        def run(conn: sqlite3.Connection) -> None:
            for report in reports:
                if report.delivered:
                    conn.executemany(
                        "DELETE FROM outbox WHERE seq = ?", [(s,) for s in report.delivered]
                    )
                    conn.execute(
                        "UPDATE subscriptions SET times_sent = times_sent + ?, "
                        "last_notification = ?, last_success = ?, failing = 0 WHERE id = ?",
                        (len(report.delivered), report.when, report.when, report.subscription_id),
                    )
                if report.failed is not None:
                    conn.execute(
                        "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, "
                        "last_error = ? WHERE seq = ?",
                        (report.next_attempt, report.error, report.failed),
                    )
                    conn.execute(
                        "UPDATE subscriptions SET times_failed = times_failed + 1, "
                        "last_notification = ?, last_failure = ?, failing = 1 WHERE id = ?",
                        (report.when, report.when, report.subscription_id),
                    )

        await self._write(tenant, run)
