"""Subscription use cases (GS CIM 009 clause 5.8): one function per operation.

Each keeps the store and the broker's in-memory :class:`SubscriptionIndex` (what the
change observer matches changes against) in step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import orjson

from urbanstack.broker.announcements import announce_subscription
from urbanstack.broker.caller import Caller
from urbanstack.broker.entities import Broker
from urbanstack.ngsild.errors import BadRequestData, ResourceNotFound, TooManyResults
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import now_timestamp, validate_entity_id
from urbanstack.ngsild.query import EntityQuery
from urbanstack.ngsild.subscription import (
    NotificationStatus,
    Subscription,
    parse_subscription,
    patch_subscription,
    subscription_from_document,
)
from urbanstack.ngsild.subscription_match import Match, matches_entity, notification_entity
from urbanstack.ngsild.subscription_render import is_active
from urbanstack.store.base import OutboxItem, SubscriptionRecord


def _new_subscription_id() -> str:
    return f"urn:ngsi-ld:Subscription:{uuid.uuid4()}"


def _status(record: SubscriptionRecord) -> NotificationStatus:
    return NotificationStatus(
        times_sent=record.times_sent,
        times_failed=record.times_failed,
        last_notification=record.last_notification,
        last_success=record.last_success,
        last_failure=record.last_failure,
        failing=record.failing,
    )


@dataclass
class SubscriptionView:
    """A subscription as the API shows it: the subscription and its delivery status."""

    subscription: Subscription
    status: NotificationStatus


async def create_subscription(broker: Broker, caller: Caller, body: Any, terms: TermMap) -> str:
    """POST /subscriptions: validate and store; returns the subscription id."""
    sub = parse_subscription(body, terms, now_timestamp(), _new_subscription_id)
    await broker.store.create_subscription(caller.tenant, SubscriptionRecord(sub.id, sub.document))
    broker.subscriptions.put(caller.tenant, sub)
    await announce_subscription(broker, caller.tenant, sub.id)
    return sub.id


async def retrieve_subscription(broker: Broker, caller: Caller, sub_id: str) -> SubscriptionView:
    """GET /subscriptions/{id}."""
    validate_entity_id(sub_id, "subscription id")
    record = await broker.store.get_subscription(caller.tenant, sub_id)
    if record is None:
        raise ResourceNotFound(f"Subscription {sub_id!r} does not exist")
    return SubscriptionView(subscription_from_document(record.document), _status(record))


async def list_subscriptions(
    broker: Broker, caller: Caller, limit: int, offset: int
) -> tuple[list[SubscriptionView], int]:
    """GET /subscriptions: one page, and how many there are."""
    if limit > broker.settings.max_limit:
        raise TooManyResults(f"limit {limit} is above the maximum of {broker.settings.max_limit}")
    if not await broker.store.tenant_exists(caller.tenant):
        return [], 0
    records, total = await broker.store.list_subscriptions(caller.tenant, limit, offset)
    views = [SubscriptionView(subscription_from_document(r.document), _status(r)) for r in records]
    return views, total


async def update_subscription(
    broker: Broker,
    caller: Caller,
    sub_id: str,
    fragment: Any,
    terms: TermMap,
) -> None:
    """PATCH /subscriptions/{id}: merge the fragment into the subscription."""
    view = await retrieve_subscription(broker, caller, sub_id)
    if isinstance(fragment, dict) and fragment.get("id", sub_id) != sub_id:
        raise BadRequestData("The id in the body differs from the id in the URL")
    sub = patch_subscription(view.subscription, fragment, terms, now_timestamp())
    if not await broker.store.replace_subscription(caller.tenant, sub_id, sub.document):
        raise ResourceNotFound(f"Subscription {sub_id!r} does not exist")
    broker.subscriptions.put(caller.tenant, sub)
    await announce_subscription(broker, caller.tenant, sub_id)


async def delete_subscription(broker: Broker, caller: Caller, sub_id: str) -> None:
    """DELETE /subscriptions/{id} (its pending notifications go with it)."""
    validate_entity_id(sub_id, "subscription id")
    if not await broker.store.tenant_exists(caller.tenant) or not (
        await broker.store.delete_subscription(caller.tenant, sub_id)
    ):
        raise ResourceNotFound(f"Subscription {sub_id!r} does not exist")
    broker.subscriptions.remove(caller.tenant, sub_id)
    await announce_subscription(broker, caller.tenant, sub_id)


PERIODIC_PAGE = 1000


async def periodic_notifications(
    broker: Broker, tenant: str | None, sub: Subscription, now: str
) -> int:
    """Queue a ``timeInterval`` subscription's notification: every entity it selects, as
    it is now (clause 5.11: periodic notifications); returns how many were queued."""
    if not is_active(sub, now):
        return 0
    query = EntityQuery(
        selectors=sub.entities,
        q=sub.q,
        scope_q=sub.scope_q,
        geo=sub.geo,
        limit=PERIODIC_PAGE,
    )
    items: list[OutboxItem] = []
    offset = 0
    while True:
        page = await broker.store.query_entities(tenant, replace(query, offset=offset))
        for entity in page.entities:
            if not matches_entity(sub, entity):
                continue
            match = Match("timeInterval", frozenset(entity["attrs"]), now)
            payload = {
                "trigger": "timeInterval",
                "entity": notification_entity(sub, None, entity, match),
            }
            items.append(OutboxItem(sub.id, entity["id"], orjson.dumps(payload)))
        if len(page.entities) < PERIODIC_PAGE:
            break
        offset += PERIODIC_PAGE
    await broker.store.queue_notifications(tenant, items)
    return len(items)
