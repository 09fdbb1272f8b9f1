"""The in-memory subscription index, and the store's change observer built on it.

Subscriptions are kept per tenant, indexed by entity id and by entity type, with a short
list of those that must be tested against every change (idPattern only, type
expressions, watchedAttributes only), so matching a change costs the subscriptions that
can match it, not all of them. A tenant's index is replaced as a whole (copy on write)
when a subscription changes, so the writer thread always reads a consistent snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from urbanstack.ngsild.model import Entity, now_timestamp
from urbanstack.ngsild.patterns import PatternTooSlow
from urbanstack.ngsild.subscription import Subscription, subscription_from_document
from urbanstack.ngsild.subscription_match import (
    attribute_changes,
    match_change,
    notification_entity,
    selector_keys,
)
from urbanstack.store.base import EntityStore, OutboxItem

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class _TenantIndex:
    by_id: dict[str, tuple[Subscription, ...]] = field(default_factory=dict)
    by_type: dict[str, tuple[Subscription, ...]] = field(default_factory=dict)
    scan: tuple[Subscription, ...] = ()
    all: dict[str, Subscription] = field(default_factory=dict)

    @classmethod
    def build(cls, subscriptions: Iterable[Subscription]) -> _TenantIndex:
        by_id: dict[str, list[Subscription]] = {}
        by_type: dict[str, list[Subscription]] = {}
        scan: list[Subscription] = []
        every: dict[str, Subscription] = {}
        for sub in subscriptions:
            every[sub.id] = sub
            ids, types, needs_scan = selector_keys(sub)
            if needs_scan:
                scan.append(sub)
                continue
            for entity_id in ids:
                by_id.setdefault(entity_id, []).append(sub)
            for entity_type in types:
                by_type.setdefault(entity_type, []).append(sub)
        return cls(
            {k: tuple(v) for k, v in by_id.items()},
            {k: tuple(v) for k, v in by_type.items()},
            tuple(scan),
            every,
        )

    def candidates(self, entity: Entity) -> list[Subscription]:
        """Subscriptions that may match a change of ``entity`` (each once)."""
        found: dict[str, Subscription] = {}
        for sub in self.by_id.get(entity["id"], ()):
            found[sub.id] = sub
        for entity_type in entity.get("type", ()):
            for sub in self.by_type.get(entity_type, ()):
                found[sub.id] = sub
        for sub in self.scan:
            found[sub.id] = sub
        return list(found.values())


class SubscriptionIndex:
    """Every tenant's active subscriptions, and the store's change observer."""

    def __init__(self) -> None:
        self._tenants: dict[str | None, _TenantIndex] = {}

    async def load(self, store: EntityStore) -> None:
        """Read every tenant's subscriptions (at start-up)."""
        for tenant in await store.tenants():
            records, _ = await store.list_subscriptions(tenant, limit=1_000_000, offset=0)
            self._tenants[tenant] = _TenantIndex.build(
                subscription_from_document(r.document) for r in records
            )

    def get(self, tenant: str | None, sub_id: str) -> Subscription | None:
        """A subscription by id, as the index holds it."""
        index = self._tenants.get(tenant)
        return index.all.get(sub_id) if index else None

    def periodic(self) -> list[tuple[str | None, Subscription]]:
        """Every subscription with a ``timeInterval`` (notified on a clock, not on changes)."""
        return [
            (tenant, sub)
            for tenant, index in self._tenants.items()
            for sub in index.all.values()
            if sub.time_interval
        ]

    def put(self, tenant: str | None, sub: Subscription) -> None:
        """Add or replace a subscription."""
        current = self._tenants.get(tenant, _TenantIndex())
        self._tenants[tenant] = _TenantIndex.build({**current.all, sub.id: sub}.values())

    def remove(self, tenant: str | None, sub_id: str) -> None:
        """Forget a subscription."""
        current = self._tenants.get(tenant)
        if current is not None:
            self._tenants[tenant] = _TenantIndex.build(
                s for s in current.all.values() if s.id != sub_id
            )

    def observe(
        self, tenant: str | None, old: Entity | None, new: Entity | None
    ) -> list[OutboxItem]:
        """The store's change observer: outbox items of every subscription the change
        matches (runs inside the write transaction, on the writer thread)."""
        index = self._tenants.get(tenant)
        entity = new if new is not None else old
        if index is None or entity is None:
            return []
        items = []
        now = now_timestamp()
        # once per change, whichever candidate subscription asks first
        computed: list[dict[str, Any]] = []

        def changes_of() -> dict[str, Any]:
            if not computed:
                computed.append(attribute_changes(old, new))
            return computed[0]

        for sub in index.candidates(entity):
            try:
                match = match_change(sub, old, new, now, changes_of=changes_of)
            except PatternTooSlow:  # its pattern, not the write, is at fault
                LOGGER.warning(
                    "subscription %s: a pattern took too long on %s; not notified",
                    sub.id,
                    entity["id"],
                )
                continue
            if match is None:
                continue
            payload = {
                "trigger": match.trigger,
                "entity": notification_entity(sub, old, new, match, changes_of),
            }
            items.append(OutboxItem(sub.id, entity["id"], orjson.dumps(payload)))
        return items
