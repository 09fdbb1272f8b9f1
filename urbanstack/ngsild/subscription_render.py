"""A subscription's state (active, paused, expired) and its NGSI-LD rendering.

Parsing and validation live in :mod:`urbanstack.ngsild.subscription`; this module reads the
parsed :class:`~urbanstack.ngsild.subscription.Subscription` back out for clients.
"""

from __future__ import annotations

import copy
from typing import Any

from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import normalize_datetime, now_timestamp
from urbanstack.ngsild.subscription import (
    CORE_MEMBERS,
    NotificationStatus,
    Subscription,
    type_text,
)


def subscription_status(sub: Subscription, now: str) -> str:
    """``expired`` once expiresAt has passed, else ``paused`` if inactive, else ``active``."""
    if sub.expires_at is not None and sub.expires_at <= normalize_datetime(now, "now"):
        return "expired"
    return "active" if sub.is_active else "paused"


def is_active(sub: Subscription, now: str) -> bool:
    """Whether the subscription notifies at ``now`` (clause 5.11: only when active)."""
    return subscription_status(sub, now) == "active"


def public_time(stamp: str) -> str:
    """A stored timestamp (microseconds) as NGSI-LD clients see it (milliseconds)."""
    if len(stamp) == 27 and stamp.endswith("Z"):
        return stamp[:23] + "Z"
    return stamp


def _render_notification(
    note: dict[str, Any], terms: TermMap, status: NotificationStatus | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "attributes" in note:
        out["attributes"] = [terms.compact(iri) for iri in note["attributes"]]
    for key in ("pick", "omit"):
        if key in note:
            out[key] = [m if m in CORE_MEMBERS else terms.compact(m) for m in note[key]]
    out["format"] = note["format"]
    for key in ("sysAttrs", "showChanges"):
        if note[key]:
            out[key] = True
    out["endpoint"] = copy.deepcopy(note["endpoint"])
    if status is not None:
        out["timesSent"] = status.times_sent
        out["timesFailed"] = status.times_failed
        if status.last_notification is not None:
            out["status"] = "failed" if status.failing else "ok"
        for key, stamp in (
            ("lastNotification", status.last_notification),
            ("lastSuccess", status.last_success),
            ("lastFailure", status.last_failure),
        ):
            if stamp is not None:
                out[key] = public_time(stamp)
    return out


def render_subscription(
    sub: Subscription,
    terms: TermMap,
    status: NotificationStatus | None = None,
    *,
    now: str | None = None,
    sys_attrs: bool = False,
) -> dict[str, Any]:
    """The JSON answer of GET /subscriptions/{id} (5.8.3), names compacted with ``terms``.

    ``now`` (default: the clock) decides ``status``; ``sys_attrs`` adds createdAt/modifiedAt.
    """
    doc = sub.document
    out: dict[str, Any] = {"id": sub.id, "type": "Subscription"}
    out.update({k: doc[k] for k in ("subscriptionName", "description") if k in doc})
    if sub.entities:
        out["entities"] = []
        for selector in sub.entities:
            item: dict[str, Any] = {}
            if selector.ids:
                item["id"] = selector.ids[0]
            if selector.id_pattern is not None:
                item["idPattern"] = selector.id_pattern
            if selector.types is not None:
                item["type"] = type_text(selector.types, terms.compact)
            out["entities"].append(item)
    if "watchedAttributes" in doc:
        out["watchedAttributes"] = [terms.compact(iri) for iri in doc["watchedAttributes"]]
    out["notificationTrigger"] = list(doc["notificationTrigger"])
    out.update({k: doc[k] for k in ("q", "scopeQ") if k in doc})
    if "geoQ" in doc:
        out["geoQ"] = {**doc["geoQ"], "geoproperty": terms.compact(doc["geoQ"]["geoproperty"])}
    out.update({k: doc[k] for k in ("timeInterval", "throttling") if k in doc})
    if sub.expires_at is not None:
        out["expiresAt"] = public_time(sub.expires_at)
    if not sub.is_active:
        out["isActive"] = False
    for key in ("lang", "jsonldContext", "datasetId"):
        if key in doc:
            out[key] = copy.deepcopy(doc[key])
    out["notification"] = _render_notification(doc["notification"], terms, status)
    out["status"] = subscription_status(sub, now or now_timestamp())
    if sys_attrs:
        out["createdAt"] = public_time(sub.created_at)
        out["modifiedAt"] = public_time(sub.modified_at)
    return out
