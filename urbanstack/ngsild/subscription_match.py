"""Matching entity changes against subscriptions and building notifications (clause 5.11).

A change is a pair of stored-form entities (:mod:`urbanstack.ngsild.model`): ``old`` is None
for a creation, ``new`` is None for a deletion. Rules (sources in parentheses):

* Only ``active`` subscriptions match (5.11); ``timeInterval`` subscriptions never match a
  change: they notify periodically (use :func:`matches_entity` for those).
* The entity must be selected by one of ``entities`` (any entity when there is none), and
  ``q``, ``scopeQ`` and ``geoQ`` must hold on ``new`` (on ``old`` for a deletion).
* Changes are compared per attribute *instance* (one per ``datasetId``): an instance only in
  ``new`` is created, only in ``old`` deleted, in both but different updated. Two instances
  differ when anything but ``createdAt``/``modifiedAt`` differs (sub-attributes included),
  so rewriting an identical value (no new ``observedAt``) notifies nobody, like Orion's
  ``entityChange``; ``count_unchanged=True`` also counts instances whose ``modifiedAt``
  moved (every write), for a stricter reading of "attribute updated".
* A creation counts as ``attributeCreated`` for each attribute and a deletion as
  ``attributeDeleted`` for each attribute (the ETSI test 046_22_12 expects an
  attributeDeleted notification when the entity goes); ``entityUpdated`` covers every
  attribute change plus type and scope changes (Stellio expands it the same way).
* ``watchedAttributes``: only changes of watched attributes count, for every trigger.

Notification content (the ETSI test suite's expectations for 046_21, 046_22, 046_31-046_38):
the entity after the change restricted to ``notification.attributes`` and ``datasetId``;
deleted instances appear with the NGSI-LD Null (``"value": "urn:ngsi-ld:null"``, ``object``
likewise, ``languageMap`` ``{"@none": "urn:ngsi-ld:null"}``, lists ``["urn:ngsi-ld:null"]``)
and ``deletedAt``. A deleted entity is notified as id, type and ``deletedAt``, plus its
deleted attributes for ``attributeDeleted`` or with ``showChanges``. ``showChanges`` adds
``previousValue`` (``previousObject``, ``previousLanguageMap`` ... per type) to every updated
or deleted instance, never to created ones.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from urbanstack.ngsild.geo import GeoQuery
from urbanstack.ngsild.geo_match import GeoPredicate, compile_geo_query
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import (
    NGSI_LD_NULL,
    VALUE_MEMBER,
    Entity,
    Instance,
    normalize_datetime,
)
from urbanstack.ngsild.patterns import pattern_search
from urbanstack.ngsild.q_match import match_q
from urbanstack.ngsild.representation import RenderOptions, compact_value, render_entity
from urbanstack.ngsild.scope import match_scope
from urbanstack.ngsild.subscription import Subscription
from urbanstack.ngsild.subscription_render import is_active, public_time
from urbanstack.ngsild.typeq import match_types, type_names

#: members of an instance holding the value it had before the change, per value member
PREVIOUS_MEMBER = {
    "value": "previousValue",
    "object": "previousObject",
    "languageMap": "previousLanguageMap",
    "vocab": "previousVocab",
    "json": "previousJson",
    "valueList": "previousValueList",
    "objectList": "previousObjectList",
}
_PREVIOUS_TYPE = {
    "previousValue": "Property",
    "previousObject": "Relationship",
    "previousLanguageMap": "LanguageProperty",
    "previousVocab": "VocabProperty",
    "previousJson": "JsonProperty",
    "previousValueList": "ListProperty",
    "previousObjectList": "ListRelationship",
}
#: the value member of a deleted instance, per attribute type (clause 5.2.1)
NULL_VALUE: dict[str, Any] = {
    "Property": NGSI_LD_NULL,
    "GeoProperty": NGSI_LD_NULL,
    "Relationship": NGSI_LD_NULL,
    "LanguageProperty": {"@none": NGSI_LD_NULL},
    "VocabProperty": NGSI_LD_NULL,
    "JsonProperty": NGSI_LD_NULL,
    "ListProperty": [NGSI_LD_NULL],
    "ListRelationship": [NGSI_LD_NULL],
}
_SYSTEM = ("createdAt", "modifiedAt")
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

Key = str | None  # an instance's datasetId (None: the default instance)


@dataclass(frozen=True)
class Match:
    """Why a subscription is notified: the trigger that fired, the attribute IRIs that changed
    (created, updated or deleted, among the watched ones) and when (``match_change``'s now)."""

    trigger: str
    changed: frozenset[str]
    at: str = ""


# --- selection and filters


@lru_cache(maxsize=256)
def _geo_predicate(query: GeoQuery) -> GeoPredicate:
    return compile_geo_query(query)


def entity_selected(sub: Subscription, entity: Entity) -> bool:
    """Whether ``entities`` selects the entity: id (then idPattern is ignored) or idPattern
    (full match), and the type expression; a subscription without entities selects all."""
    if not sub.entities:
        return True
    entity_id = entity["id"]
    for selector in sub.entities:
        if selector.ids:
            if entity_id not in selector.ids:
                continue
        elif selector.id_pattern is not None:
            if not pattern_search(selector.id_pattern, entity_id, full=True):
                continue
        if selector.types is None or match_types(selector.types, entity["type"]):
            return True
    return False


def _geo_holds(query: GeoQuery, entity: Entity) -> bool:
    predicate = _geo_predicate(query)
    for inst in entity.get("attrs", {}).get(query.geoproperty, []):
        if inst.get("type") == "GeoProperty" and isinstance(inst.get("value"), dict):
            if predicate.matches(inst["value"]):
                return True
    return False


def matches_entity(sub: Subscription, entity: Entity) -> bool:
    """Whether an entity is selected and satisfies ``q``, ``scopeQ`` and ``geoQ``
    (what a periodic ``timeInterval`` notification carries)."""
    if not entity_selected(sub, entity):
        return False
    if sub.q is not None and not match_q(sub.q, entity):
        return False
    if sub.scope_q is not None and not match_scope(sub.scope_q, entity.get("scope", [])):
        return False
    return sub.geo is None or _geo_holds(sub.geo, entity)


# --- comparing two versions of an entity


def _content(inst: Instance) -> dict[str, Any]:
    """An instance without its system timestamps (recursively), for comparison."""
    out = {k: v for k, v in inst.items() if k not in _SYSTEM and k != "subs"}
    if inst.get("subs"):
        out["subs"] = {iri: _content(sub) for iri, sub in inst["subs"].items()}
    return out


def _by_dataset(instances: list[Instance]) -> dict[Key, Instance]:
    return {inst.get("datasetId"): inst for inst in instances}


def attribute_changes(
    old: Entity | None, new: Entity | None, *, count_unchanged: bool = False
) -> dict[str, dict[Key, str]]:
    """attribute IRI -> datasetId -> "created" | "updated" | "deleted", for every instance
    that differs between ``old`` and ``new`` (see the module docstring)."""
    old_attrs = old.get("attrs", {}) if old is not None else {}
    new_attrs = new.get("attrs", {}) if new is not None else {}
    changes: dict[str, dict[Key, str]] = {}
    for iri in dict.fromkeys([*new_attrs, *old_attrs]):
        old_instances, new_instances = old_attrs.get(iri), new_attrs.get(iri)
        if old_instances == new_instances:  # untouched (one comparison in C)
            continue
        before = _by_dataset(old_instances or [])
        after = _by_dataset(new_instances or [])
        kinds: dict[Key, str] = {}
        for key, inst in after.items():
            previous = before.get(key)
            if previous is None:
                kinds[key] = "created"
            elif _content(previous) != _content(inst) or (
                count_unchanged and previous.get("modifiedAt") != inst.get("modifiedAt")
            ):
                kinds[key] = "updated"
        for key in before:
            if key not in after:
                kinds[key] = "deleted"
        if kinds:
            changes[iri] = kinds
    return changes


def match_change(
    sub: Subscription,
    old: Entity | None,
    new: Entity | None,
    now: str,
    *,
    count_unchanged: bool = False,
    changes_of: Callable[[], dict[str, dict[Key, str]]] | None = None,
) -> Match | None:
    """The reason to notify ``sub`` of the change ``old`` -> ``new``, or None;
    ``changes_of`` gives :func:`attribute_changes` of the pair (one computation shared by
    every subscription a change is matched against)."""
    if (old is None and new is None) or sub.time_interval is not None:
        return None
    if not is_active(sub, now):
        return None
    subject = new if new is not None else old
    assert subject is not None
    if not matches_entity(sub, subject):
        return None
    if changes_of is not None:
        changes = changes_of()
    else:
        changes = attribute_changes(old, new, count_unchanged=count_unchanged)
    if sub.watched_attributes is not None:
        changes = {iri: k for iri, k in changes.items() if iri in sub.watched_attributes}
    by_kind: dict[str, set[str]] = {"created": set(), "updated": set(), "deleted": set()}
    for iri, kinds in changes.items():
        for kind in kinds.values():
            by_kind[kind].add(iri)
    every = frozenset(changes)
    if old is None or new is None:
        entity_trigger = "entityCreated" if old is None else "entityDeleted"
        kind = "created" if old is None else "deleted"
        if entity_trigger in sub.triggers and (every or sub.watched_attributes is None):
            return Match(entity_trigger, every, now)
        attribute_trigger = "attributeCreated" if old is None else "attributeDeleted"
        if attribute_trigger in sub.triggers and by_kind[kind]:
            return Match(attribute_trigger, frozenset(by_kind[kind]), now)
        return None
    if "entityUpdated" in sub.triggers:
        entity_level = old.get("type") != new.get("type") or old.get("scope") != new.get("scope")
        if every or (entity_level and sub.watched_attributes is None):
            return Match("entityUpdated", every, now)
    fired = [
        (trigger, by_kind[kind])
        for trigger, kind in (
            ("attributeCreated", "created"),
            ("attributeUpdated", "updated"),
            ("attributeDeleted", "deleted"),
        )
        if trigger in sub.triggers and by_kind[kind]
    ]
    if not fired:
        return None
    return Match(fired[0][0], frozenset().union(*(iris for _, iris in fired)), now)


# --- the notified entity


def _deleted_instance(old: Instance, at: str, show_changes: bool) -> Instance:
    attr_type = old.get("type", "Property")
    member = VALUE_MEMBER.get(attr_type, "value")
    inst: Instance = {"type": attr_type, member: copy.deepcopy(NULL_VALUE[attr_type])}
    for key in ("datasetId", *_SYSTEM):
        if key in old:
            inst[key] = old[key]
    inst["deletedAt"] = at
    if show_changes and member in old:
        inst[PREVIOUS_MEMBER[member]] = copy.deepcopy(old[member])
    return inst


def _add_previous(inst: Instance, old: Instance) -> None:
    member = VALUE_MEMBER.get(old.get("type", "Property"), "value")
    if member in old:
        inst[PREVIOUS_MEMBER[member]] = copy.deepcopy(old[member])


def notification_entity(
    sub: Subscription,
    old: Entity | None,
    new: Entity | None,
    match: Match,
    changes_of: Callable[[], dict[str, dict[Key, str]]] | None = None,
) -> Entity:
    """The stored-form entity a notification carries for ``match`` (see the module
    docstring); deleted instances and the entity carry ``deletedAt``, changed instances
    ``previousValue``-style members. Render it with :func:`render_notification_entity`;
    ``changes_of`` as for :func:`match_change`."""
    at = match.at
    show = sub.show_changes
    if new is None:
        assert old is not None
        out: Entity = {"id": old["id"], "type": list(old["type"])}
        for key in _SYSTEM:
            if key in old:
                out[key] = old[key]
        out["deletedAt"] = at
        out["attrs"] = {}
        if match.trigger == "attributeDeleted" or show:
            for iri, instances in old.get("attrs", {}).items():
                if iri in match.changed:
                    out["attrs"][iri] = [_deleted_instance(i, at, show) for i in instances]
    else:
        # the attribute lists are shared with ``new``; those that get previousValue-style
        # members or deleted instances below are copied first (list and instance dicts)
        attrs = new.get("attrs", {})
        if sub.attributes is not None:
            attrs = {iri: v for iri, v in attrs.items() if iri in sub.attributes}
        out = {k: v for k, v in new.items() if k != "attrs"}
        out["attrs"] = dict(attrs)
        if old is not None:
            show_deleted = bool({"attributeDeleted", "entityUpdated"} & sub.triggers)
            if show or show_deleted:
                for iri in match.changed:
                    if iri in out["attrs"]:
                        out["attrs"][iri] = [dict(inst) for inst in out["attrs"][iri]]
            changes = changes_of() if changes_of is not None else attribute_changes(old, new)
            for iri in match.changed:
                before = _by_dataset(old.get("attrs", {}).get(iri, []))
                for key, kind in changes.get(iri, {}).items():
                    if kind == "deleted" and show_deleted:
                        deleted = _deleted_instance(before[key], at, show)
                        out["attrs"].setdefault(iri, []).append(deleted)
                    elif kind == "updated" and show:
                        for inst in out["attrs"][iri]:
                            if inst.get("datasetId") == key:
                                _add_previous(inst, before[key])
    if sub.attributes is not None:
        out["attrs"] = {iri: v for iri, v in out["attrs"].items() if iri in sub.attributes}
    if sub.dataset_ids is not None:
        kept: dict[str, list[Instance]] = {}
        for iri, instances in out["attrs"].items():
            chosen = [i for i in instances if i.get("datasetId", "@none") in sub.dataset_ids]
            if chosen:
                kept[iri] = chosen
        out["attrs"] = kept
    return out


def _decorate(rendered: Any, inst: Instance, terms: TermMap, sys_attrs: bool) -> Any:
    """Add an instance's previous-value member and deletedAt to its rendering."""
    extra: dict[str, Any] = {}
    for member, attr_type in _PREVIOUS_TYPE.items():
        if member in inst:
            value_member = VALUE_MEMBER[attr_type]
            extra[member] = compact_value({"type": attr_type, value_member: inst[member]}, terms)
    if sys_attrs and "deletedAt" in inst:
        extra["deletedAt"] = public_time(inst["deletedAt"])
    if not extra:
        return rendered
    if not isinstance(rendered, dict):  # a concise bare value
        rendered = {"value": rendered}
    return {**rendered, **extra}


def render_notification_entity(sub: Subscription, entity: Entity, terms: TermMap) -> dict[str, Any]:
    """Render a :func:`notification_entity` result in the subscription's format (normalized,
    concise or keyValues), with its sysAttrs, lang, pick and omit, compacted with ``terms``.
    keyValues shows no previous values (it has no place for them)."""
    opts = RenderOptions(
        format=sub.format,  # type: ignore[arg-type]
        sys_attrs=sub.sys_attrs,
        pick=sub.pick,
        omit=sub.omit,
        lang=sub.lang,
    )
    out = render_entity(entity, terms, opts)
    if "deletedAt" in entity:
        head = {k: out.pop(k) for k in ("id", "type", "scope") if k in out}
        out = {**head, "deletedAt": public_time(entity["deletedAt"]), **out}
    if sub.format == "keyValues":
        return out
    for iri, instances in entity.get("attrs", {}).items():
        name = terms.compact(iri)
        if name not in out:
            continue
        if len(instances) == 1:
            out[name] = _decorate(out[name], instances[0], terms, sub.sys_attrs)
        else:
            out[name] = [
                _decorate(rendered, inst, terms, sub.sys_attrs)
                for rendered, inst in zip(out[name], instances, strict=True)
            ]
    return out


def notification_body(
    sub: Subscription, data: list[dict[str, Any]], notification_id: str, notified_at: str
) -> dict[str, Any]:
    """The Notification document (clause 5.3.1) carrying the rendered entities ``data``."""
    return {
        "id": notification_id,
        "type": "Notification",
        "subscriptionId": sub.id,
        "notifiedAt": public_time(notified_at),
        "data": data,
    }


# --- indexing and pacing


def selector_keys(sub: Subscription) -> tuple[set[str], set[str], bool]:
    """(entity ids, type IRIs, needs_scan) to index subscriptions by.

    A changed entity can only match when its id is in the ids or one of its types is in the
    type IRIs (every type expression is indexed by the names it mentions: an entity matching
    it has at least one of them), so callers look both up and run :func:`match_change` on
    the candidates. ``needs_scan`` is True when there are no entities (watchedAttributes
    only): such a subscription must be tried on every change.
    """
    ids: set[str] = set()
    types: set[str] = set()
    if not sub.entities:
        return ids, types, True
    for selector in sub.entities:
        if selector.ids:
            ids.update(selector.ids)
        elif selector.types is not None:
            types |= type_names(selector.types)
        else:  # not produced by parse_subscription: a selector needs a type
            return set(), set(), True
    return ids, types, False


def _parse_time(stamp: str) -> datetime:
    return datetime.strptime(normalize_datetime(stamp, "timestamp"), _TS_FORMAT)


def is_throttled(sub: Subscription, last_notification: str | None, now: str) -> bool:
    """Whether ``throttling`` forbids notifying at ``now`` (stored timestamps)."""
    if sub.throttling is None or last_notification is None:
        return False
    elapsed = _parse_time(now) - _parse_time(last_notification)
    return elapsed < timedelta(seconds=sub.throttling)
