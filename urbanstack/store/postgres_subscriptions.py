"""Subscriptions and the notification outbox on PostgreSQL, mixed into the store.

Outbox rows are written by :func:`write_outbox` inside the transaction of the change that
caused them. Several API processes may share the outbox: :meth:`pending_notifications`
hands out a subscription's rows only to the store instance holding that subscription's
claim (``outbox_claims``), taken when free or lapsed and renewed at every call, so each
subscription is delivered by one process at a time, in change order; a process that dies
leaves its claims to lapse after :data:`CLAIM_SECONDS`. A single process always holds
its own claims, so the calls behave exactly as on SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from urbanstack.ngsild.errors import AlreadyExists, NonexistentTenant
from urbanstack.ngsild.model import now_timestamp
from urbanstack.store.base import (
    DeliveryReport,
    OutboxItem,
    PendingNotification,
    SubscriptionRecord,
    validate_tenant,
)

if TYPE_CHECKING:
    from urbanstack.store.postgres import PostgresStore

    _Base = PostgresStore
else:
    _Base = object

CLAIM_SECONDS = 30.0
_COLUMNS = (
    "id, doc, times_sent, times_failed, last_notification, last_success, last_failure, failing"
)
_PENDING_COLUMNS = "seq, subscription_id, entity_id, payload, created, attempts, next_attempt"


async def write_outbox(
    conn: asyncpg.Connection, schema: str, items: Sequence[OutboxItem], created: str, now: float
) -> None:
    """Queue notifications (due at once) in the current transaction, in order."""
    await conn.execute(
        f"INSERT INTO {schema}.outbox (subscription_id, entity_id, payload, created, "
        "next_attempt) SELECT u.s, u.e, u.p, $4, $5 FROM unnest($1::text[], $2::text[], "
        "$3::bytea[]) WITH ORDINALITY AS u(s, e, p, n) ORDER BY u.n",
        [i.subscription_id for i in items],
        [i.entity_id for i in items],
        [i.payload for i in items],
        created,
        now,
    )


def _record(row: asyncpg.Record) -> SubscriptionRecord:
    return SubscriptionRecord(
        id=row["id"],
        document=orjson.loads(row["doc"]),
        times_sent=row["times_sent"],
        times_failed=row["times_failed"],
        last_notification=row["last_notification"],
        last_success=row["last_success"],
        last_failure=row["last_failure"],
        failing=row["failing"],
    )


def _pending(row: asyncpg.Record) -> PendingNotification:
    return PendingNotification(
        row["seq"],
        row["subscription_id"],
        row["entity_id"],
        bytes(row["payload"]),
        row["created"],
        row["attempts"],
        row["next_attempt"],
    )


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


class PostgresSubscriptions(_Base):
    """Subscription methods of the storage contract on PostgreSQL."""

    async def create_subscription(self, tenant: str | None, record: SubscriptionRecord) -> None:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> bool:
            done = await conn.execute(
                f"INSERT INTO {schema}.subscriptions (id, doc) VALUES ($1, $2::jsonb) "
                "ON CONFLICT (id) DO NOTHING",
                record.id,
                orjson.dumps(record.document).decode(),
            )
            return _count(done) > 0

        if not await self._write(tenant, run):
            raise AlreadyExists(f"Subscription {record.id!r} already exists")

    async def get_subscription(self, tenant: str | None, sub_id: str) -> SubscriptionRecord | None:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> SubscriptionRecord | None:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM {schema}.subscriptions WHERE id = $1", sub_id
            )
            return _record(row) if row else None

        return await self._read(tenant, run)

    async def list_subscriptions(
        self, tenant: str | None, limit: int, offset: int
    ) -> tuple[list[SubscriptionRecord], int]:
        tenant = validate_tenant(tenant)

        async def run(
            conn: asyncpg.Connection, schema: str
        ) -> tuple[list[SubscriptionRecord], int]:
            total = await conn.fetchval(f"SELECT count(*) FROM {schema}.subscriptions")
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM {schema}.subscriptions ORDER BY seq LIMIT $1 OFFSET $2",
                limit,
                offset,
            )
            return [_record(r) for r in rows], total

        return await self._read(tenant, run)

    async def replace_subscription(
        self, tenant: str | None, sub_id: str, document: dict[str, Any]
    ) -> bool:
        tenant = validate_tenant(tenant)
        encoded = orjson.dumps(document).decode()

        async def run(conn: asyncpg.Connection, schema: str) -> bool:
            done = await conn.execute(
                f"UPDATE {schema}.subscriptions SET doc = $1::jsonb WHERE id = $2", encoded, sub_id
            )
            return _count(done) > 0

        return await self._write(tenant, run, create=False)

    async def delete_subscription(self, tenant: str | None, sub_id: str) -> bool:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> bool:
            await conn.execute(f"DELETE FROM {schema}.outbox WHERE subscription_id = $1", sub_id)
            await conn.execute(
                f"DELETE FROM {schema}.outbox_claims WHERE subscription_id = $1", sub_id
            )
            done = await conn.execute(f"DELETE FROM {schema}.subscriptions WHERE id = $1", sub_id)
            return _count(done) > 0

        return await self._write(tenant, run, create=False)

    async def queue_notifications(self, tenant: str | None, items: list[OutboxItem]) -> None:
        tenant = validate_tenant(tenant)
        if not items:
            return

        async def run(conn: asyncpg.Connection, schema: str) -> None:
            await write_outbox(conn, schema, items, now_timestamp(), time.time())

        await self._write(tenant, run)
        if self.outbox_listener is not None:
            self.outbox_listener(tenant)

    async def pending_notifications(
        self, tenant: str | None, limit: int, subscription_id: str | None = None, after: int = 0
    ) -> dict[str, list[PendingNotification]]:
        tenant = validate_tenant(tenant)

        async def run(
            conn: asyncpg.Connection, schema: str
        ) -> dict[str, list[PendingNotification]]:
            outbox = f"{schema}.outbox"
            if subscription_id is not None:
                wanted = [subscription_id]
            else:  # the distinct subscriptions, skipping through the (subscription, seq) index
                wanted = [
                    r["s"]
                    for r in await conn.fetch(
                        f"WITH RECURSIVE s(s) AS ((SELECT subscription_id FROM {outbox} "
                        "ORDER BY subscription_id LIMIT 1) UNION ALL SELECT (SELECT "
                        f"subscription_id FROM {outbox} WHERE subscription_id > s.s "
                        "ORDER BY subscription_id LIMIT 1) FROM s WHERE s.s IS NOT NULL) "
                        "SELECT s FROM s WHERE s IS NOT NULL"
                    )
                ]
            if not wanted:
                return {}
            now = time.time()
            claimed = await conn.fetch(
                f"INSERT INTO {schema}.outbox_claims AS c (subscription_id, owner, until) "
                "SELECT unnest($1::text[]), $2, $3 ON CONFLICT (subscription_id) DO UPDATE "
                "SET owner = EXCLUDED.owner, until = EXCLUDED.until "
                "WHERE c.owner = EXCLUDED.owner OR c.until < $4 RETURNING subscription_id",
                wanted,
                self.instance_id,
                now + CLAIM_SECONDS,
                now,
            )
            mine = sorted(r["subscription_id"] for r in claimed)
            rows = await conn.fetch(
                f"SELECT r.* FROM unnest($1::text[]) AS u(s) CROSS JOIN LATERAL "
                f"(SELECT {_PENDING_COLUMNS} FROM {outbox} WHERE subscription_id = u.s "
                "AND seq > $2 ORDER BY seq LIMIT $3) r",
                mine,
                after,
                limit,
            )
            pending: dict[str, list[PendingNotification]] = {}
            for row in rows:
                pending.setdefault(row["subscription_id"], []).append(_pending(row))
            return pending

        try:
            return await self._write(tenant, run, create=False)
        except NonexistentTenant:
            return {}

    async def record_deliveries(self, tenant: str | None, reports: list[DeliveryReport]) -> None:
        tenant = validate_tenant(tenant)

        async def run(conn: asyncpg.Connection, schema: str) -> None:
            subscriptions = f"{schema}.subscriptions"
            for report in reports:
                if report.delivered:
                    await conn.execute(
                        f"DELETE FROM {schema}.outbox WHERE seq = ANY($1::bigint[])",
                        report.delivered,
                    )
                    await conn.execute(
                        f"UPDATE {subscriptions} SET times_sent = times_sent + $1, "
                        "last_notification = $2, last_success = $2, failing = false "
                        "WHERE id = $3",
                        len(report.delivered),
                        report.when,
                        report.subscription_id,
                    )
                if report.failed is not None:
                    await conn.execute(
                        f"UPDATE {schema}.outbox SET attempts = attempts + 1, "
                        "next_attempt = $1, last_error = $2 WHERE seq = $3",
                        report.next_attempt,
                        report.error,
                        report.failed,
                    )
                    await conn.execute(
                        f"UPDATE {subscriptions} SET times_failed = times_failed + 1, "
                        "last_notification = $1, last_failure = $1, failing = true WHERE id = $2",
                        report.when,
                        report.subscription_id,
                    )

        await self._write(tenant, run)
