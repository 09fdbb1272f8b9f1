"""Subscriptions and the outbox in the storage contract, run against every backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from urbanstack.ngsild.errors import AlreadyExists, BadRequestData
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import Entity, parse_entity
from urbanstack.store import store_from_url
from urbanstack.store.base import (
    DeliveryReport,
    EntityChange,
    EntityStore,
    OutboxItem,
    SubscriptionRecord,
    Write,
)

pytestmark = pytest.mark.anyio
NOW = "2026-11-24T10:00:00.000000Z"


def station(n: int, value: float) -> Entity:
    body = {
        "id": f"urn:ngsi-ld:AirQualityObserved:{n}",
        "type": "AirQualityObserved",
        "pm25": value,
    }
    return parse_entity(body, core_term_map(), NOW)


def upsert(entity: Entity) -> EntityChange:
    return EntityChange(entity["id"], lambda current: Write(entity))


def refuse(entity_id: str) -> EntityChange:
    def apply(current: Entity | None) -> Write:
        raise BadRequestData("refused")

    return EntityChange(entity_id, apply)


def notify_all(tenant: str | None, old: Entity | None, new: Entity | None) -> list[OutboxItem]:
    """An observer with one subscription interested in everything."""
    entity = new or old
    assert entity is not None
    value = entity["attrs"][next(iter(entity["attrs"]))][0]["value"] if new else None
    return [OutboxItem("urn:sub:1", entity["id"], repr(value).encode())]


def record(sub_id: str, **doc: Any) -> SubscriptionRecord:
    return SubscriptionRecord(sub_id, {"id": sub_id, "type": "Subscription", **doc})


async def test_subscriptions_are_created_read_listed_and_deleted(store: EntityStore) -> None:
    for n in range(3):
        await store.create_subscription(None, record(f"urn:sub:{n}", q=f"pm25>{n}"))
    found = await store.get_subscription(None, "urn:sub:1")
    assert found is not None and found.document["q"] == "pm25>1" and found.times_sent == 0
    page, total = await store.list_subscriptions(None, limit=2, offset=1)
    assert total == 3 and [r.id for r in page] == ["urn:sub:1", "urn:sub:2"]
    assert await store.delete_subscription(None, "urn:sub:1")
    assert not await store.delete_subscription(None, "urn:sub:1")
    assert await store.get_subscription(None, "urn:sub:1") is None


async def test_a_taken_subscription_id_is_already_exists(store: EntityStore) -> None:
    await store.create_subscription(None, record("urn:sub:1"))
    with pytest.raises(AlreadyExists):
        await store.create_subscription(None, record("urn:sub:1"))


async def test_replacing_keeps_the_delivery_status(store: EntityStore) -> None:
    await store.create_subscription(None, record("urn:sub:1"))
    await store.queue_notifications(None, [OutboxItem("urn:sub:1", "urn:e:1", b"{}")])
    [sent] = (await store.pending_notifications(None, 10))["urn:sub:1"]
    await store.record_deliveries(None, [DeliveryReport("urn:sub:1", [sent.seq], when=NOW)])
    assert await store.replace_subscription(None, "urn:sub:1", {"id": "urn:sub:1", "q": "a>1"})
    found = await store.get_subscription(None, "urn:sub:1")
    assert found is not None and found.document["q"] == "a>1"
    assert found.times_sent == 1 and found.last_success == NOW
    assert not await store.replace_subscription(None, "urn:sub:9", {})


async def test_changes_queue_notifications_in_order(store: EntityStore) -> None:
    store.change_observer = notify_all
    await store.change_entities(None, [upsert(station(1, 1.0))])
    await store.change_entities(None, [upsert(station(1, 2.0)), upsert(station(2, 3.0))])
    pending = await store.pending_notifications(None, limit=10)
    assert [(p.entity_id, p.payload) for p in pending["urn:sub:1"]] == [
        ("urn:ngsi-ld:AirQualityObserved:1", b"1.0"),
        ("urn:ngsi-ld:AirQualityObserved:1", b"2.0"),
        ("urn:ngsi-ld:AirQualityObserved:2", b"3.0"),
    ]


async def test_a_refused_change_queues_nothing(store: EntityStore) -> None:
    store.change_observer = notify_all
    await store.change_entities(None, [refuse("urn:ngsi-ld:AirQualityObserved:1")])
    assert await store.pending_notifications(None, limit=10) == {}


async def test_the_listener_hears_of_committed_notifications(store: EntityStore) -> None:
    """...with the subscriptions that got them, so that the worker looks at those alone."""
    heard: list[tuple[Any, ...]] = []
    store.change_observer = notify_all
    store.outbox_listener = lambda *args: heard.append(args)
    await store.change_entities(None, [upsert(station(1, 1.0))])
    await asyncio.sleep(0.01)
    assert heard == [(None, frozenset({"urn:sub:1"}))]


async def test_pending_notifications_survive_a_restart(store_url: str) -> None:
    first = store_from_url(store_url)
    first.change_observer = notify_all
    await first.open()
    await first.change_entities(None, [upsert(station(1, 1.0))])
    await first.close()
    again = store_from_url(store_url)
    await again.open()
    try:
        pending = await again.pending_notifications(None, limit=10)
        assert [p.payload for p in pending["urn:sub:1"]] == [b"1.0"]
    finally:
        await again.close()


async def test_deliveries_delete_rows_and_failures_reschedule(store: EntityStore) -> None:
    await store.create_subscription(None, record("urn:sub:1"))
    store.change_observer = notify_all
    await store.change_entities(None, [upsert(station(n, n)) for n in range(3)])
    first, second, third = (await store.pending_notifications(None, 10))["urn:sub:1"]
    report = DeliveryReport(
        "urn:sub:1", [first.seq], failed=second.seq, next_attempt=1e12, error="503", when=NOW
    )
    await store.record_deliveries(None, [report])
    left = (await store.pending_notifications(None, 10))["urn:sub:1"]
    assert [p.seq for p in left] == [second.seq, third.seq]
    assert left[0].attempts == 1 and left[0].next_attempt == 1e12
    status = await store.get_subscription(None, "urn:sub:1")
    assert status is not None
    assert (status.times_sent, status.times_failed, status.failing) == (1, 1, True)
    assert status.last_success == NOW and status.last_failure == NOW


async def test_deleting_a_subscription_drops_its_pending_notifications(store: EntityStore) -> None:
    await store.create_subscription(None, record("urn:sub:1"))
    store.change_observer = notify_all
    await store.change_entities(None, [upsert(station(1, 1.0))])
    await store.delete_subscription(None, "urn:sub:1")
    assert await store.pending_notifications(None, 10) == {}


async def test_queued_notifications_are_pending_and_heard(store: EntityStore) -> None:
    heard: list[str | None] = []
    store.outbox_listener = heard.append
    await store.queue_notifications(None, [OutboxItem("urn:sub:1", "urn:e:1", b"{}")])
    pending = await store.pending_notifications(None, 10, subscription_id="urn:sub:1")
    assert [p.entity_id for p in pending["urn:sub:1"]] == ["urn:e:1"]
    assert heard == [None]


async def test_outbox_numbers_grow_even_after_the_queue_empties(store: EntityStore) -> None:
    await store.create_subscription(None, record("urn:sub:1"))
    item = OutboxItem("urn:sub:1", "urn:e:1", b"{}")
    await store.queue_notifications(None, [item, item])
    first = (await store.pending_notifications(None, 10))["urn:sub:1"]
    await store.record_deliveries(
        None, [DeliveryReport("urn:sub:1", [p.seq for p in first], when=NOW)]
    )
    await store.queue_notifications(None, [item])
    [again] = (await store.pending_notifications(None, 10))["urn:sub:1"]
    assert again.seq > max(p.seq for p in first)


async def test_pending_notifications_skip_rows_up_to_a_number(store: EntityStore) -> None:
    item = OutboxItem("urn:sub:1", "urn:e:1", b"{}")
    await store.queue_notifications(None, [item, item, item])
    first, *_ = (await store.pending_notifications(None, 10))["urn:sub:1"]
    later = await store.pending_notifications(None, 10, "urn:sub:1", after=first.seq)
    assert [p.seq for p in later["urn:sub:1"]] == [first.seq + 1, first.seq + 2]
