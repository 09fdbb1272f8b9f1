"""NGSI-LD subscriptions (clauses 5.2.12, 5.2.14, 5.2.15 and 5.8): parse, patch, store, render.

A body is validated into a *document*, the stored form: a JSON dict shaped like the body with
entity types, attribute names and ``geoproperty`` expanded, defaults filled in and read-only
members dropped; :func:`subscription_from_document` rebuilds the :class:`Subscription` from it
without any ``@context``. ``entities[].type`` is stored as a JSON type expression (an IRI,
``{"and": [...]}`` or ``{"or": [...]}``) so any IRI survives; ``q`` and ``scopeQ`` are kept
as given (and rendered as given, like Stellio and Orion-LD), with ``qTerms`` recording the
term -> IRI expansions of the ``q`` names; ``geoQ`` holds the normalised georel, coordinates
and expanded geoproperty.

Decisions (sources in parentheses):

* ``notificationTrigger`` defaults to attributeCreated + attributeUpdated (Stellio), also
  beside ``timeInterval`` (the ETSI test suite renders it so); ``timeInterval`` with
  ``watchedAttributes`` or ``throttling`` is BadRequestData (Stellio); ``entities`` or
  ``watchedAttributes`` is required (5.8.1).
* ``expiresAt`` must be in the future on creation (Stellio); a PATCH may move it into the
  past, which expires the subscription (ETSI test 047_07_02 relies on that).
* Unknown members are BadRequestData (Stellio); ``csf``, ``temporalQ`` and a
  ``notification.join`` other than ``@none`` are OperationNotSupported; read-only members
  (5.2.2, 5.2.14: ``status``, ``createdAt``, ``timesSent`` ...) are ignored.
* PATCH (5.8.2): top-level members replace the current ones, ``notification`` members merge
  one by one (``endpoint`` is replaced whole); null or ``urn:ngsi-ld:null`` removes an
  optional member (its default comes back), and is BadRequestData for mandatory ones.
* Rendering (5.8.3): ``status`` is ``expired`` once ``expiresAt`` passed, else ``paused``
  when ``isActive`` is false, else ``active``; ``isActive``, ``sysAttrs`` and
  ``showChanges`` are only shown when not at their default (Stellio).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from urbanstack.ngsild.errors import BadRequestData, InternalError, OperationNotSupported
from urbanstack.ngsild.geo import GeoQuery, parse_geo_query
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.model import (
    NGSI_LD_NULL,
    is_uri,
    normalize_datetime,
    validate_entity_id,
    validate_name,
)
from urbanstack.ngsild.patterns import check_pattern
from urbanstack.ngsild.q import QExpr, parse_query_q
from urbanstack.ngsild.query import EntitySelector
from urbanstack.ngsild.scope import ScopeExpr, parse_scope_q
from urbanstack.ngsild.typeq import TypeAnd, TypeExpr, TypeName, TypeOr, parse_type_query

TRIGGERS = (
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
)
DEFAULT_TRIGGERS = ("attributeCreated", "attributeUpdated")
FORMATS = ("normalized", "concise", "keyValues")
ACCEPTS = ("application/json", "application/ld+json")
URI_SCHEMES = ("http", "https", "mqtt", "mqtts")
#: pick/omit members that are not attribute names
CORE_MEMBERS = frozenset({"id", "type", "scope"})
MQTT_VERSIONS = ("mqtt3.1.1", "mqtt5.0")
MQTT_QOS = ("0", "1", "2")

_MEMBER_NAMES = (
    "subscriptionName description entities watchedAttributes notificationTrigger q geoQ scopeQ "
    "timeInterval throttling expiresAt isActive lang jsonldContext datasetId notification"
)
_MEMBERS = frozenset(_MEMBER_NAMES.split())
_READ_ONLY = frozenset({"@context", "status", "createdAt", "modifiedAt", "deletedAt"})
_UNSUPPORTED = frozenset({"csf", "temporalQ"})
_NOTIFICATION_MEMBERS = frozenset(
    {"attributes", "format", "sysAttrs", "showChanges", "endpoint", "pick", "omit"}
)
_NOTIFICATION_READ_ONLY = frozenset(
    {"status", "timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure"}
)
_ENDPOINT_MEMBERS = frozenset(
    {"uri", "accept", "receiverInfo", "notifierInfo", "timeout", "cooldown"}
)
_GEO_MEMBERS = ("georel", "geometry", "coordinates", "geoproperty")
_PAIRS = ("receiverInfo", "notifierInfo")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_LANG_RE = re.compile(r"^[A-Za-z0-9*@\-,;=.\s]+$")


@dataclass(frozen=True)
class Endpoint:
    """Where and how notifications are delivered (clause 5.2.15)."""

    uri: str
    accept: str = "application/json"
    receiver_info: tuple[tuple[str, str], ...] = ()
    notifier_info: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None  # milliseconds
    cooldown: float | None = None  # milliseconds


@dataclass(frozen=True)
class Subscription:
    """A validated subscription, names expanded; ``document`` is its stored JSON form."""

    id: str
    entities: tuple[EntitySelector, ...]
    watched_attributes: frozenset[str] | None
    triggers: frozenset[str]
    q: QExpr | None
    scope_q: ScopeExpr | None
    geo: GeoQuery | None
    time_interval: int | None
    throttling: int | None
    expires_at: str | None
    is_active: bool
    lang: str | None
    jsonld_context: str | None
    attributes: frozenset[str] | None
    format: str
    sys_attrs: bool
    show_changes: bool
    endpoint: Endpoint
    description: str | None = None
    name: str | None = None
    created_at: str = ""
    modified_at: str = ""
    dataset_ids: frozenset[str] | None = None  # datasetId: instances to notify ("@none": default)
    pick: frozenset[str] | None = None  # notification.pick: "id", "type", "scope" or IRIs
    omit: frozenset[str] = frozenset()  # notification.omit
    document: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class NotificationStatus:
    """The notifier's record of one subscription's deliveries (read-only members of 5.2.14)."""

    times_sent: int = 0
    times_failed: int = 0
    last_notification: str | None = None
    last_success: str | None = None
    last_failure: str | None = None
    failing: bool = False  # the last attempt failed: notification.status "failed"


# --- small validators


def _is_null(value: object) -> bool:
    return value is None or value == NGSI_LD_NULL


def _string(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequestData(f"{what} must be a non-empty string")
    return value


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequestData(f"{what} must be true or false, not {value!r}")
    return value


def _seconds(value: object, what: str) -> int:
    """A positive whole number of seconds (an integral float such as 5.0 is accepted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestData(f"{what} must be a number of seconds, not {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise BadRequestData(f"{what} must be a whole number of seconds, not {value!r}")
    if value < 1:
        raise BadRequestData(f"{what} must be greater than zero")
    return int(value)


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise BadRequestData(f"{what} must be a non-empty array")
    return value


def _names(value: object, terms: TermMap, what: str, core: frozenset[str] = frozenset()) -> list:
    """Expanded IRIs of attribute names (``core`` members kept literal), duplicates dropped."""
    names = [v if v in core else terms.expand(validate_name(v)) for v in _list(value, what)]
    return list(dict.fromkeys(names))


def _check_keys(body: dict[str, Any], known: frozenset[str], what: str) -> None:
    for key in set(body) - known:
        raise BadRequestData(f"Unknown member {key!r} in {what}")


# --- type expressions as JSON


def type_to_json(expr: TypeExpr) -> Any:
    """A type expression as JSON: an IRI string, ``{"and": [...]}`` or ``{"or": [...]}``."""
    if isinstance(expr, TypeName):
        return expr.iri
    key = "and" if isinstance(expr, TypeAnd) else "or"
    return {key: [type_to_json(term) for term in expr.terms]}


def type_from_json(value: Any) -> TypeExpr:
    """The inverse of :func:`type_to_json`."""
    if isinstance(value, str):
        return TypeName(value)
    if "and" in value:
        return TypeAnd(tuple(type_from_json(v) for v in value["and"]))
    return TypeOr(tuple(type_from_json(v) for v in value["or"]))


def type_text(expr: TypeExpr, name: Callable[[str], str], *, nested: bool = False) -> str:
    """A type expression in clause 4.17 syntax, each IRI written with ``name``."""
    if isinstance(expr, TypeName):
        return name(expr.iri)
    if isinstance(expr, TypeAnd):
        return "(" + ";".join(type_text(t, name, nested=True) for t in expr.terms) + ")"
    text = "|".join(type_text(t, name, nested=True) for t in expr.terms)
    return f"({text})" if nested else text


# --- members


def _parse_selector(raw: object, terms: TermMap) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadRequestData("Each element of entities must be an EntitySelector object")
    _check_keys(raw, frozenset({"id", "idPattern", "type"}), "an EntitySelector")
    if "type" not in raw:
        raise BadRequestData("Each EntitySelector of a subscription needs a type")
    out: dict[str, Any] = {}
    if "id" in raw:
        out["id"] = validate_entity_id(raw["id"], "entity id in entities")
    if "idPattern" in raw:
        pattern = _string(raw["idPattern"], "idPattern")
        check_pattern(pattern, "idPattern")
        out["idPattern"] = pattern
    out["type"] = type_to_json(parse_type_query(_string(raw["type"], "type"), terms.expand))
    return out


def _parse_triggers(value: object) -> list[str]:
    triggers = _list(value, "notificationTrigger")
    for trigger in triggers:
        if trigger not in TRIGGERS:
            raise BadRequestData(
                f"Unknown notificationTrigger {trigger!r}; expected some of {', '.join(TRIGGERS)}"
            )
    return list(dict.fromkeys(triggers))


def _parse_q(text: object, terms: TermMap) -> tuple[str, dict[str, str]]:
    used: dict[str, str] = {}

    def expand(term: str) -> str:
        used[term] = terms.expand(term)
        return used[term]

    text = _string(text, "q")
    parse_query_q(text, expand)
    return text, used


def _parse_geo(value: object, terms: TermMap) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestData("geoQ must be an object")
    _check_keys(value, frozenset(_GEO_MEMBERS), "geoQ")
    geo = parse_geo_query(*(value.get(k) for k in _GEO_MEMBERS), terms.expand)
    if geo is None:
        raise BadRequestData("geoQ needs georel, geometry and coordinates")
    return {
        "georel": geo.georel_text,
        "geometry": geo.geometry["type"],
        "coordinates": geo.geometry["coordinates"],
        "geoproperty": geo.geoproperty,
    }


def _parse_key_values(value: object, what: str, http: bool) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for item in _list(value, what):
        if not isinstance(item, dict) or set(item) != {"key", "value"}:
            raise BadRequestData(f"Each element of {what} must be an object with key and value")
        key, val = item["key"], item["value"]
        if not isinstance(key, str) or not key or not isinstance(val, str):
            raise BadRequestData(f"key and value in {what} must be strings (key non-empty)")
        if any(c in key + val for c in "\r\n\0"):
            raise BadRequestData(f"{what} must not hold line breaks or NUL characters")
        if http and what == "receiverInfo" and not _HEADER_NAME_RE.match(key):
            raise BadRequestData(f"receiverInfo key {key!r} is not a valid HTTP header name")
        out.append({"key": key, "value": val})
    return out


def _parse_endpoint(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestData("notification.endpoint must be an object")
    _check_keys(value, _ENDPOINT_MEMBERS, "notification.endpoint")
    uri = value.get("uri")
    parts = urlsplit(uri) if is_uri(uri) else None
    if parts is None or parts.scheme.lower() not in URI_SCHEMES or not parts.netloc:
        raise BadRequestData(
            f"Invalid endpoint uri {uri!r}: an absolute http, https, mqtt or mqtts URI is needed"
        )
    out: dict[str, Any] = {"uri": uri, "accept": value.get("accept", "application/json")}
    if out["accept"] not in ACCEPTS:
        raise BadRequestData(f"endpoint accept must be one of {', '.join(ACCEPTS)}")
    http = parts.scheme.lower().startswith("http")
    for key in _PAIRS:
        if key in value:
            out[key] = _parse_key_values(value[key], key, http)
    for pair in out.get("notifierInfo", []):
        if pair["key"] == "MQTT-Version" and pair["value"] not in MQTT_VERSIONS:
            raise BadRequestData(f"MQTT-Version must be one of {', '.join(MQTT_VERSIONS)}")
        if pair["key"] == "MQTT-QoS" and pair["value"] not in MQTT_QOS:
            raise BadRequestData("MQTT-QoS must be 0, 1 or 2")
    for key in ("timeout", "cooldown"):
        if key in value:
            number = value[key]
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise BadRequestData(f"endpoint {key} must be a non-negative number (ms)")
            out[key] = number
    return out


def _parse_notification(
    value: object, terms: TermMap, current: dict[str, Any] | None
) -> dict[str, Any]:
    """NotificationParams into the stored form; with ``current`` (PATCH) members merge in."""
    if not isinstance(value, dict):
        raise BadRequestData("notification must be an object")
    patch = current is not None
    out = copy.deepcopy(current) if current is not None else {}
    for key, raw in value.items():
        if key in _NOTIFICATION_READ_ONLY or key == "joinLevel":
            continue
        if key == "join" and raw in ("@none", None):
            continue
        if key == "join":
            raise OperationNotSupported("notification.join (linked entities) is not supported")
        if key not in _NOTIFICATION_MEMBERS:
            raise BadRequestData(f"Unknown member {key!r} in notification")
        if _is_null(raw):
            if not patch or key == "endpoint":
                raise BadRequestData(f"notification.{key} must not be null")
            out.pop(key, None)
        elif key == "attributes":
            if raw == []:  # JSON-LD drops an empty array: it means all attributes
                out.pop(key, None)
            else:
                out[key] = _names(raw, terms, "notification.attributes")
        elif key in ("pick", "omit"):
            out[key] = _names(raw, terms, f"notification.{key}", CORE_MEMBERS)
        elif key == "format":
            fmt = "keyValues" if raw == "simplified" else raw
            if fmt not in FORMATS:
                raise BadRequestData(f"notification.format must be one of {', '.join(FORMATS)}")
            out[key] = fmt
        elif key in ("sysAttrs", "showChanges"):
            out[key] = _bool(raw, f"notification.{key}")
        else:
            out[key] = _parse_endpoint(raw)
    out.setdefault("format", "normalized")
    out.setdefault("sysAttrs", False)
    out.setdefault("showChanges", False)
    if "endpoint" not in out:
        raise BadRequestData("notification needs an endpoint")
    return out


def _parse_member(key: str, value: Any, terms: TermMap, doc: dict[str, Any]) -> None:
    """Validate one top-level member into ``doc`` (the stored form)."""
    if key in ("subscriptionName", "description"):
        doc[key] = _string(value, key)
    elif key == "entities":
        doc[key] = [_parse_selector(s, terms) for s in _list(value, "entities")]
    elif key == "watchedAttributes":
        doc[key] = _names(value, terms, key)
    elif key == "notificationTrigger":
        doc[key] = _parse_triggers(value)
    elif key == "q":
        doc["q"], doc["qTerms"] = _parse_q(value, terms)
    elif key == "scopeQ":
        parse_scope_q(_string(value, key))
        doc[key] = value
    elif key == "geoQ":
        doc[key] = _parse_geo(value, terms)
    elif key in ("timeInterval", "throttling"):
        doc[key] = _seconds(value, key)
    elif key == "expiresAt":
        doc[key] = normalize_datetime(value, "expiresAt")
    elif key == "isActive":
        doc[key] = _bool(value, key)
    elif key == "lang":
        if not _LANG_RE.match(_string(value, key)):
            raise BadRequestData(f"Invalid lang {value!r}")
        doc[key] = value.strip()
    elif key == "jsonldContext":
        doc[key] = validate_entity_id(value, "jsonldContext")
    elif key == "datasetId":
        items = value if isinstance(value, list) else [value]
        doc[key] = [
            v if v == "@none" else validate_entity_id(v, "datasetId") for v in _list(items, key)
        ]
    else:  # notification
        doc[key] = _parse_notification(value, terms, doc.get(key))


def _check_document(doc: dict[str, Any]) -> None:
    """Rules across members (5.8.1, 5.2.12, 5.2.14)."""
    if "entities" not in doc and "watchedAttributes" not in doc:
        raise BadRequestData("A subscription needs entities or watchedAttributes (or both)")
    if "timeInterval" in doc and "watchedAttributes" in doc:
        raise BadRequestData("timeInterval cannot be used together with watchedAttributes")
    if "timeInterval" in doc and "throttling" in doc:
        raise BadRequestData("timeInterval cannot be used together with throttling")
    note = doc["notification"]
    for key in ("pick", "omit"):
        if key in note and "attributes" in note:
            raise BadRequestData(f"notification.{key} cannot be used with notification.attributes")
    both = set(note.get("pick", ())) & set(note.get("omit", ()))
    if both:
        raise BadRequestData(f"notification.pick and omit both name {sorted(both)[0]!r}")


def _check_type(body: dict[str, Any]) -> None:
    if body.get("type", body.get("@type")) != "Subscription":
        raise BadRequestData("The type of a subscription must be 'Subscription'")


def _read_members(
    body: dict[str, Any], terms: TermMap, doc: dict[str, Any], *, patch: bool
) -> None:
    for key, value in body.items():
        if key in ("id", "@id", "type", "@type") or key in _READ_ONLY:
            continue
        if key in _UNSUPPORTED:
            raise OperationNotSupported(f"{key} is not supported in subscriptions")
        if key not in _MEMBERS:
            raise BadRequestData(f"Unknown member {key!r} in a Subscription")
        if _is_null(value):
            if not patch or key == "notification":
                raise BadRequestData(f"{key} must not be null")
            doc.pop(key, None)
            if key == "q":
                doc.pop("qTerms", None)
            continue
        _parse_member(key, value, terms, doc)
    doc.setdefault("notificationTrigger", list(DEFAULT_TRIGGERS))
    doc.setdefault("isActive", True)


def parse_subscription(
    body: object, terms: TermMap, now: str, new_id: Callable[[], str]
) -> Subscription:
    """Validate a POST /subscriptions body into a :class:`Subscription` (names expanded with
    ``terms``); ``new_id`` gives the id when the body has none. Raises BadRequestData."""
    if not isinstance(body, dict):
        raise BadRequestData("A subscription must be a JSON object")
    _check_type(body)
    raw_id = body.get("id", body.get("@id"))
    sub_id = validate_entity_id(new_id() if raw_id is None else raw_id, "subscription id")
    doc: dict[str, Any] = {"id": sub_id, "type": "Subscription"}
    if "notification" not in body:
        raise BadRequestData("A subscription needs a notification member")
    _read_members(body, terms, doc, patch=False)
    stamp = normalize_datetime(now, "now")
    if "expiresAt" in doc and doc["expiresAt"] <= stamp:
        raise BadRequestData("expiresAt must be in the future")
    doc["createdAt"] = doc["modifiedAt"] = stamp
    _check_document(doc)
    return subscription_from_document(doc)


def patch_subscription(
    current: Subscription, fragment: object, terms: TermMap, now: str
) -> Subscription:
    """Apply a PATCH /subscriptions/{id} fragment (5.8.2): given members replace the current
    ones, ``notification`` members merge, null removes optional members. Raises
    BadRequestData (also for an id or type change)."""
    if not isinstance(fragment, dict):
        raise BadRequestData("A subscription fragment must be a JSON object")
    if "type" in fragment or "@type" in fragment:
        _check_type(fragment)
    raw_id = fragment.get("id", fragment.get("@id"))
    if raw_id is not None and raw_id != current.id:
        raise BadRequestData("The id of a subscription cannot be changed")
    doc = copy.deepcopy(current.document)
    _read_members(fragment, terms, doc, patch=True)
    doc["modifiedAt"] = normalize_datetime(now, "now")
    _check_document(doc)
    return subscription_from_document(doc)


def subscription_from_document(document: dict[str, Any]) -> Subscription:
    """Rebuild a subscription from its stored form (no @context needed)."""
    doc = copy.deepcopy(document)
    try:
        note = doc["notification"]
        raw = note["endpoint"]
        pairs = {k: tuple((p["key"], p["value"]) for p in raw.get(k, [])) for k in _PAIRS}
        endpoint = Endpoint(
            raw["uri"], raw["accept"], *pairs.values(), raw.get("timeout"), raw.get("cooldown")
        )
        geo = doc.get("geoQ")
        if geo is not None:
            geo = parse_geo_query(*(geo[k] for k in _GEO_MEMBERS), lambda iri: iri)
        return Subscription(
            id=doc["id"],
            entities=tuple(
                EntitySelector(
                    ids=(s["id"],) if "id" in s else (),
                    id_pattern=s.get("idPattern"),
                    types=type_from_json(s["type"]),
                )
                for s in doc.get("entities", [])
            ),
            watched_attributes=_frozen(doc.get("watchedAttributes")),
            triggers=frozenset(doc["notificationTrigger"]),
            q=parse_query_q(doc["q"], doc["qTerms"].__getitem__) if "q" in doc else None,
            scope_q=parse_scope_q(doc["scopeQ"]) if "scopeQ" in doc else None,
            geo=geo,
            time_interval=doc.get("timeInterval"),
            throttling=doc.get("throttling"),
            expires_at=doc.get("expiresAt"),
            is_active=doc["isActive"],
            lang=doc.get("lang"),
            jsonld_context=doc.get("jsonldContext"),
            attributes=_frozen(note.get("attributes")),
            format=note["format"],
            sys_attrs=note["sysAttrs"],
            show_changes=note["showChanges"],
            endpoint=endpoint,
            description=doc.get("description"),
            name=doc.get("subscriptionName"),
            created_at=doc.get("createdAt", ""),
            modified_at=doc.get("modifiedAt", ""),
            dataset_ids=_frozen(doc.get("datasetId")),
            pick=_frozen(note.get("pick")),
            omit=frozenset(note.get("omit", ())),
            document=doc,
        )
    except (KeyError, TypeError, AttributeError, BadRequestData) as exc:
        raise InternalError(f"Stored subscription {doc.get('id')!r} is corrupt: {exc}") from None


def _frozen(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)
