"""Tests of the subscription domain: parsing, storing, patching, rendering (clauses 5.2.12,
5.2.14, 5.2.15, 5.8) and matching changes / building notifications (clause 5.11)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urbanstack.ngsild.errors import BadRequestData, InternalError, OperationNotSupported
from urbanstack.ngsild.jsonld import DEFAULT_VOCAB, build_term_map, core_term_map
from urbanstack.ngsild.model import NGSI_LD_NULL, parse_entity
from urbanstack.ngsild.subscription import (
    DEFAULT_TRIGGERS,
    TRIGGERS,
    Endpoint,
    NotificationStatus,
    Subscription,
    parse_subscription,
    patch_subscription,
    subscription_from_document,
    type_text,
)
from urbanstack.ngsild.subscription_match import (
    Match,
    attribute_changes,
    is_throttled,
    match_change,
    notification_body,
    notification_entity,
    render_notification_entity,
    selector_keys,
)
from urbanstack.ngsild.subscription_render import render_subscription, subscription_status
from urbanstack.ngsild.typeq import TypeAnd, TypeName, TypeOr, parse_type_query

NOW = "2025-01-01T00:00:00.000000Z"
LATER = "2025-01-01T00:00:10.000000Z"
LATER_SHOWN = "2025-01-01T00:00:10.000Z"  # deletedAt as notifications show it (clause 4.8)
TERMS = core_term_map()
EX = "https://ex.org/"
CTX = build_term_map(
    {"ex": EX, "Building": EX + "Building", "temperature": EX + "temperature", "name": EX + "name"},
    {},
)
DV = DEFAULT_VOCAB
BUILDING = DV + "Building"
DROP = object()


def body(**members: Any) -> dict[str, Any]:
    """A valid subscription body; ``member=DROP`` removes a default member."""
    out: dict[str, Any] = {
        "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": "http://example.org/notify"}},
    }
    out.update(members)
    return {k: v for k, v in out.items() if v is not DROP}


def sub(terms: Any = TERMS, **members: Any) -> Subscription:
    return parse_subscription(body(**members), terms, NOW, lambda: "urn:ngsi-ld:Subscription:1")


def note(**members: Any) -> dict[str, Any]:
    return {"endpoint": {"uri": "http://example.org/notify"}, **members}


def entity(now: str = NOW, eid: str = "urn:ngsi-ld:Building:1", **attrs: Any) -> dict[str, Any]:
    return parse_entity({"id": eid, "type": "Building", **attrs}, TERMS, now)


def rejected(exc: type[Exception] = BadRequestData, **members: Any) -> None:
    with pytest.raises(exc):
        sub(**members)


# --- parsing ---------------------------------------------------------------------------------


def test_minimal_subscription_gets_the_spec_defaults() -> None:
    s = sub()
    assert s.id == "urn:ngsi-ld:Subscription:1"
    assert s.triggers == frozenset(DEFAULT_TRIGGERS)
    assert s.is_active and s.format == "normalized" and not s.sys_attrs and not s.show_changes
    assert s.endpoint == Endpoint("http://example.org/notify")
    assert s.created_at == s.modified_at == NOW


def test_given_id_is_kept() -> None:
    assert sub(id="urn:ngsi-ld:Subscription:mine").id == "urn:ngsi-ld:Subscription:mine"


def test_invalid_id_is_bad_request_data() -> None:
    rejected(id="not a uri")


@pytest.mark.parametrize("value", [None, "Entity", DROP])
def test_type_must_be_subscription(value: Any) -> None:
    rejected(type=value)


def test_body_that_is_not_an_object_is_bad_request_data() -> None:
    with pytest.raises(BadRequestData):
        parse_subscription([], TERMS, NOW, lambda: "urn:x:1")


def test_entity_types_are_expanded_with_the_context() -> None:
    assert sub(CTX).entities[0].types == TypeName(EX + "Building")


def test_entity_type_expression_is_parsed() -> None:
    s = sub(entities=[{"type": "(Building;Shop)|Car"}])
    assert s.entities[0].types == TypeOr(
        (TypeAnd((TypeName(BUILDING), TypeName(DV + "Shop"))), TypeName(DV + "Car"))
    )


def test_selector_without_type_is_bad_request_data() -> None:
    rejected(entities=[{"id": "urn:ngsi-ld:Building:1"}])


def test_selector_with_unknown_member_is_bad_request_data() -> None:
    rejected(entities=[{"type": "Building", "idpattern": ".*"}])


def test_invalid_id_pattern_is_bad_request_data() -> None:
    rejected(entities=[{"type": "Building", "idPattern": "urn:(unclosed"}])


def test_empty_entities_is_bad_request_data() -> None:
    rejected(entities=[])


def test_entities_or_watched_attributes_are_required() -> None:
    rejected(entities=DROP)


def test_watched_attributes_alone_are_enough() -> None:
    s = sub(CTX, entities=DROP, watchedAttributes=["temperature", "ex:speed"])
    assert s.entities == ()
    assert s.watched_attributes == {EX + "temperature", EX + "speed"}


def test_empty_watched_attributes_is_bad_request_data() -> None:
    rejected(watchedAttributes=[])


@pytest.mark.parametrize("value", [[], ["entityChanged"], "entityCreated"])
def test_invalid_notification_trigger_is_bad_request_data(value: Any) -> None:
    rejected(notificationTrigger=value)


def test_notification_triggers_are_kept() -> None:
    assert sub(notificationTrigger=["entityDeleted"]).triggers == {"entityDeleted"}


def test_q_names_are_expanded() -> None:
    s = sub(CTX, q="temperature>20")
    assert s.q is not None and s.q.path.attr == EX + "temperature"  # type: ignore[union-attr]


@pytest.mark.parametrize("member", ["q", "scopeQ"])
def test_invalid_query_is_bad_request_data(member: str) -> None:
    rejected(**{member: "a>>(("})


def test_geo_query_is_parsed() -> None:
    s = sub(geoQ={"georel": "near;maxDistance==500", "geometry": "Point", "coordinates": [1, 2]})
    assert s.geo is not None and s.geo.max_distance == 500
    assert s.geo.geoproperty == "https://uri.etsi.org/ngsi-ld/location"


@pytest.mark.parametrize(
    "geo", ["near", {"georel": "within", "geometry": "Point"}, {"georel": "x", "other": 1}]
)
def test_invalid_geo_query_is_bad_request_data(geo: Any) -> None:
    rejected(geoQ=geo)


def test_time_interval_with_watched_attributes_is_bad_request_data() -> None:
    rejected(timeInterval=10, watchedAttributes=["temperature"])


def test_time_interval_with_throttling_is_bad_request_data() -> None:
    rejected(timeInterval=10, throttling=5)


def test_time_interval_keeps_default_triggers() -> None:
    s = sub(timeInterval=5)
    assert s.time_interval == 5 and s.triggers == frozenset(DEFAULT_TRIGGERS)


@pytest.mark.parametrize("value", [0, -3, 1.5, "10", True, None, float("inf")])
def test_invalid_throttling_is_bad_request_data(value: Any) -> None:
    rejected(throttling=value)


def test_integral_float_seconds_are_accepted() -> None:
    assert sub(throttling=5.0).throttling == 5


def test_expires_at_in_the_past_is_bad_request_data() -> None:
    rejected(expiresAt="2020-01-01T00:00:00Z")


def test_invalid_expires_at_is_bad_request_data() -> None:
    rejected(expiresAt="tomorrow")


def test_expires_at_is_normalised() -> None:
    assert sub(expiresAt="2030-01-01T01:00:00+01:00").expires_at == "2030-01-01T00:00:00.000000Z"


def test_non_boolean_is_active_is_bad_request_data() -> None:
    rejected(isActive="false")


def test_missing_notification_is_bad_request_data() -> None:
    rejected(notification=DROP)


def test_missing_endpoint_is_bad_request_data() -> None:
    rejected(notification={"format": "keyValues"})


@pytest.mark.parametrize(
    "uri", ["ftp://example.org/x", "/notify", "http://", "example.org", 42, "http://a b"]
)
def test_invalid_endpoint_uri_is_bad_request_data(uri: Any) -> None:
    rejected(notification={"endpoint": {"uri": uri}})


@pytest.mark.parametrize("uri", ["https://example.org/n", "mqtt://broker:1883/t", "mqtts://b/t"])
def test_http_and_mqtt_endpoints_are_accepted(uri: str) -> None:
    assert sub(notification={"endpoint": {"uri": uri}}).endpoint.uri == uri


def test_unknown_accept_is_bad_request_data() -> None:
    rejected(notification={"endpoint": {"uri": "http://e.org/n", "accept": "text/plain"}})


def test_ld_json_accept_is_kept() -> None:
    endpoint = {"uri": "http://e.org/n", "accept": "application/ld+json"}
    assert sub(notification={"endpoint": endpoint}).endpoint.accept == "application/ld+json"


def test_receiver_and_notifier_info_become_pairs() -> None:
    endpoint = {
        "uri": "mqtt://broker/topic",
        "receiverInfo": [{"key": "X-Auth", "value": "abc"}],
        "notifierInfo": [
            {"key": "MQTT-QoS", "value": "1"},
            {"key": "MQTT-Version", "value": "mqtt5.0"},
        ],
    }
    s = sub(notification={"endpoint": endpoint})
    assert s.endpoint.receiver_info == (("X-Auth", "abc"),)
    assert s.endpoint.notifier_info == (("MQTT-QoS", "1"), ("MQTT-Version", "mqtt5.0"))


@pytest.mark.parametrize(
    "info",
    [
        {"receiverInfo": [{"key": "X-A"}]},
        {"receiverInfo": [{"key": "X-A", "value": 1}]},
        {"receiverInfo": [{"key": "X-A", "value": "a\r\nInjected: 1"}]},
        {"receiverInfo": [{"key": "Bad Header", "value": "v"}]},
        {"notifierInfo": [{"key": "MQTT-QoS", "value": "3"}]},
        {"notifierInfo": [{"key": "MQTT-Version", "value": "mqtt4"}]},
        {"receiverInfo": []},
        {"timeout": -1},
        {"other": 1},
    ],
)
def test_invalid_endpoint_members_are_bad_request_data(info: dict[str, Any]) -> None:
    rejected(notification={"endpoint": {"uri": "http://e.org/n", **info}})


def test_unknown_format_is_bad_request_data() -> None:
    rejected(notification=note(format="pretty"))


def test_simplified_format_means_key_values() -> None:
    assert sub(notification=note(format="simplified")).format == "keyValues"


def test_notification_attributes_are_expanded() -> None:
    s = sub(CTX, notification=note(attributes=["name", "ex:speed"]))
    assert s.attributes == {EX + "name", EX + "speed"}


def test_empty_notification_attributes_mean_all_attributes() -> None:
    assert sub(notification=note(attributes=[])).attributes is None


def test_read_only_members_are_ignored() -> None:
    s = sub(
        status="paused",
        createdAt="2000-01-01T00:00:00Z",
        notification=note(timesSent=4, status="failed", lastFailure="x"),
    )
    assert s.created_at == NOW
    assert "status" not in s.document and "timesSent" not in s.document["notification"]


def test_unknown_member_is_bad_request_data() -> None:
    rejected(watchedAttribute=["temperature"])


@pytest.mark.parametrize("member", ["csf", "temporalQ"])
def test_unsupported_spec_member_is_operation_not_supported(member: str) -> None:
    rejected(OperationNotSupported, **{member: "x"})


def test_join_other_than_none_is_operation_not_supported() -> None:
    rejected(OperationNotSupported, notification=note(join="inline"))


@pytest.mark.parametrize("member", ["q", "description", "watchedAttributes"])
def test_null_member_on_creation_is_bad_request_data(member: str) -> None:
    rejected(**{member: None})


def test_pick_with_attributes_is_bad_request_data() -> None:
    rejected(notification=note(pick=["id"], attributes=["name"]))


def test_same_member_in_pick_and_omit_is_bad_request_data() -> None:
    rejected(notification=note(pick=["id", "name"], omit=["name"]))


def test_pick_keeps_core_members_and_expands_attributes() -> None:
    assert sub(notification=note(pick=["id", "name"])).pick == {"id", DV + "name"}


def test_invalid_jsonld_context_is_bad_request_data() -> None:
    rejected(jsonldContext="not a url")


def test_dataset_ids_are_kept() -> None:
    s = sub(datasetId=["urn:ngsi-ld:Dataset:a", "@none"])
    assert s.dataset_ids == {"urn:ngsi-ld:Dataset:a", "@none"}


def test_invalid_lang_is_bad_request_data() -> None:
    rejected(lang="<script>")


# --- stored form -----------------------------------------------------------------------------


def test_document_is_plain_json_with_expanded_names() -> None:
    s = sub(CTX, watchedAttributes=["temperature"], q="temperature>1", scopeQ="/a/#")
    doc = json.loads(json.dumps(s.document))
    assert doc["entities"] == [{"type": EX + "Building"}]
    assert doc["watchedAttributes"] == [EX + "temperature"]
    assert doc["q"] == "temperature>1" and doc["qTerms"] == {"temperature": EX + "temperature"}


def test_document_round_trips_without_a_context() -> None:
    s = sub(
        CTX,
        id="urn:ngsi-ld:Subscription:rt",
        subscriptionName="n",
        description="d",
        entities=[
            {"id": "urn:ngsi-ld:Building:1", "type": "Building"},
            {"idPattern": "urn:.*", "type": "(Building;ex:Shop)|ex:Car"},
        ],
        watchedAttributes=["temperature"],
        notificationTrigger=["entityCreated", "attributeDeleted"],
        q='temperature>=20;name=="x"',
        scopeQ="/a/+/c|/d/#",
        geoQ={
            "georel": "within",
            "geometry": "Polygon",
            "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]],
        },
        throttling=3,
        expiresAt="2031-01-01T00:00:00Z",
        isActive=False,
        lang="fr,en",
        jsonldContext="https://example.org/context.jsonld",
        datasetId=["urn:ngsi-ld:Dataset:a"],
        notification={
            "attributes": ["name"],
            "format": "concise",
            "sysAttrs": True,
            "showChanges": True,
            "endpoint": {
                "uri": "mqtt://broker/t",
                "accept": "application/ld+json",
                "receiverInfo": [{"key": "k", "value": "v"}],
                "notifierInfo": [{"key": "MQTT-QoS", "value": "2"}],
                "timeout": 1000,
            },
        },
    )
    assert subscription_from_document(json.loads(json.dumps(s.document))) == s


TYPE_NAMES = st.sampled_from(["Building", "Shop", "ex:Car", "https://other.org/T"])
type_exprs = st.recursive(
    TYPE_NAMES,
    lambda inner: st.tuples(inner, st.sampled_from([";", "|"]), inner).map(
        lambda t: f"({t[0]}{t[1]}{t[2]})"
    ),
    max_leaves=6,
)
ATTRS = st.sampled_from(["temperature", "name", "ex:speed", "location"])


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Valid subscription bodies with a random selection of members."""
    out: dict[str, Any] = {"type": "Subscription"}
    entities = draw(
        st.lists(
            st.fixed_dictionaries(
                {"type": type_exprs},
                optional={
                    "id": st.sampled_from(["urn:ngsi-ld:Building:1", "urn:x:2"]),
                    "idPattern": st.sampled_from(["urn:.*", "^urn:ngsi-ld:B[0-9]+$"]),
                },
            ),
            max_size=3,
        )
    )
    if entities:
        out["entities"] = entities
    timed = draw(st.booleans())
    if not entities or (draw(st.booleans()) and not timed):
        out["watchedAttributes"] = draw(st.lists(ATTRS, min_size=1, max_size=3))
        timed = False
    if timed:
        out["timeInterval"] = draw(st.integers(1, 3600))
    elif draw(st.booleans()):
        out["throttling"] = draw(st.integers(1, 3600))
    if draw(st.booleans()):
        out["notificationTrigger"] = draw(st.lists(st.sampled_from(TRIGGERS), min_size=1))
    if draw(st.booleans()):
        out["q"] = draw(st.sampled_from(["temperature>1", "name~=ab|ex:speed", "a.b[c]==1..3"]))
    if draw(st.booleans()):
        out["scopeQ"] = draw(st.sampled_from(["/a", "/a/#;/b/+"]))
    if draw(st.booleans()):
        out["geoQ"] = {
            "georel": draw(st.sampled_from(["near;maxDistance==10", "intersects"])),
            "geometry": "Point",
            "coordinates": [draw(st.floats(-180, 180)), draw(st.floats(-90, 90))],
        }
    for key, strategy in (
        ("isActive", st.booleans()),
        ("subscriptionName", st.text(min_size=1).filter(str.strip)),
        ("lang", st.sampled_from(["fr", "en,*"])),
        ("expiresAt", st.sampled_from(["2030-01-01T00:00:00Z", "2040-02-02T02:02:02.123Z"])),
    ):
        if draw(st.booleans()):
            out[key] = draw(strategy)
    notification: dict[str, Any] = {"endpoint": {"uri": "http://example.org/n"}}
    if draw(st.booleans()):
        notification["attributes"] = draw(st.lists(ATTRS, min_size=1, max_size=3))
    for key, strategy in (
        ("format", st.sampled_from(["normalized", "concise", "keyValues"])),
        ("sysAttrs", st.booleans()),
        ("showChanges", st.booleans()),
    ):
        if draw(st.booleans()):
            notification[key] = draw(strategy)
    out["notification"] = notification
    return out


@settings(max_examples=150, deadline=None)
@given(bodies())
def test_every_valid_subscription_round_trips_through_its_json_document(raw: Any) -> None:
    s = parse_subscription(raw, CTX, NOW, lambda: "urn:ngsi-ld:Subscription:h")
    stored = json.loads(json.dumps(s.document))
    assert subscription_from_document(stored) == s


@settings(max_examples=100, deadline=None)
@given(type_exprs)
def test_rendered_type_expression_parses_back_to_the_same_expression(text: str) -> None:
    expr = parse_type_query(text, CTX.expand)
    assert parse_type_query(type_text(expr, CTX.compact), CTX.expand) == expr


def test_equal_subscriptions_hash_alike() -> None:
    s = sub(
        q="a~=x;b==1,2", geoQ={"georel": "intersects", "geometry": "Point", "coordinates": [1, 2]}
    )
    assert hash(s) == hash(subscription_from_document(s.document))


def test_corrupt_document_is_an_internal_error() -> None:
    doc = copy.deepcopy(sub().document)
    del doc["notification"]
    with pytest.raises(InternalError):
        subscription_from_document(doc)


# --- patch -----------------------------------------------------------------------------------


def test_patch_replaces_given_members_and_stamps_modified_at() -> None:
    s = patch_subscription(sub(), {"throttling": 7, "description": "x"}, TERMS, LATER)
    assert s.throttling == 7 and s.description == "x"
    assert s.created_at == NOW and s.modified_at == LATER


def test_patch_with_null_removes_optional_member() -> None:
    s = patch_subscription(sub(q="temperature>1"), {"q": None}, TERMS, LATER)
    assert s.q is None and "qTerms" not in s.document


def test_patch_with_ngsi_ld_null_removes_optional_member() -> None:
    s = patch_subscription(sub(throttling=3), {"throttling": NGSI_LD_NULL}, TERMS, LATER)
    assert s.throttling is None


def test_patch_null_trigger_restores_the_default() -> None:
    s = sub(notificationTrigger=["entityDeleted"])
    assert patch_subscription(s, {"notificationTrigger": None}, TERMS, LATER).triggers == set(
        DEFAULT_TRIGGERS
    )


def test_patch_null_notification_is_bad_request_data() -> None:
    with pytest.raises(BadRequestData):
        patch_subscription(sub(), {"notification": None}, TERMS, LATER)


def test_patch_null_endpoint_is_bad_request_data() -> None:
    fragment = {"type": "Subscription", "notification": {"format": "keyValues", "endpoint": None}}
    with pytest.raises(BadRequestData):
        patch_subscription(sub(), fragment, TERMS, LATER)


def test_patch_merges_notification_members() -> None:
    s = patch_subscription(sub(), {"notification": {"format": "keyValues"}}, TERMS, LATER)
    assert s.format == "keyValues" and s.endpoint.uri == "http://example.org/notify"


def test_patch_cannot_change_the_id() -> None:
    with pytest.raises(BadRequestData):
        patch_subscription(sub(), {"id": "urn:ngsi-ld:Subscription:other"}, TERMS, LATER)


def test_patch_repeating_id_and_type_is_accepted() -> None:
    fragment = {"id": "urn:ngsi-ld:Subscription:1", "type": "Subscription", "isActive": False}
    assert not patch_subscription(sub(), fragment, TERMS, LATER).is_active


def test_patch_with_another_type_is_bad_request_data() -> None:
    with pytest.raises(BadRequestData):
        patch_subscription(sub(), {"type": "Entity"}, TERMS, LATER)


def test_patch_is_validated_as_a_whole() -> None:
    s = sub(watchedAttributes=["temperature"])
    with pytest.raises(BadRequestData):
        patch_subscription(s, {"timeInterval": 10}, TERMS, LATER)


def test_patch_removing_the_only_selection_is_bad_request_data() -> None:
    with pytest.raises(BadRequestData):
        patch_subscription(sub(), {"entities": None}, TERMS, LATER)


def test_patch_may_set_expires_at_in_the_past_which_expires_it() -> None:
    s = patch_subscription(sub(), {"expiresAt": "2020-08-01T22:07:00Z"}, TERMS, LATER)
    assert subscription_status(s, LATER) == "expired"


def test_patch_expands_names_with_its_own_context() -> None:
    s = patch_subscription(sub(), {"q": "temperature>3"}, CTX, LATER)
    assert s.q.path.attr == EX + "temperature"  # type: ignore[union-attr]
    assert s.entities[0].types == TypeName(BUILDING)


def test_patch_leaves_the_current_subscription_untouched() -> None:
    current = sub()
    before = copy.deepcopy(current.document)
    patch_subscription(current, {"notification": {"format": "concise"}}, TERMS, LATER)
    assert current.document == before


def test_patch_result_round_trips() -> None:
    s = patch_subscription(sub(), {"q": "name==1", "notification": {"sysAttrs": True}}, CTX, LATER)
    assert subscription_from_document(s.document) == s


# --- render ----------------------------------------------------------------------------------


def test_render_compacts_names_with_the_request_context() -> None:
    s = sub(CTX, watchedAttributes=["temperature"], notification=note(attributes=["name"]))
    out = render_subscription(s, CTX, now=NOW)
    assert out["entities"] == [{"type": "Building"}]
    assert out["watchedAttributes"] == ["temperature"]
    assert out["notification"]["attributes"] == ["name"]
    assert render_subscription(s, TERMS, now=NOW)["entities"] == [{"type": EX + "Building"}]


def test_render_shows_triggers_and_active_status() -> None:
    out = render_subscription(sub(), TERMS, now=NOW)
    assert out["notificationTrigger"] == list(DEFAULT_TRIGGERS)
    assert out["status"] == "active" and "isActive" not in out


def test_render_shows_paused_when_inactive() -> None:
    out = render_subscription(sub(isActive=False), TERMS, now=NOW)
    assert out["status"] == "paused" and out["isActive"] is False


def test_expired_status_wins_over_paused() -> None:
    s = sub(isActive=False, expiresAt="2025-01-01T00:00:05Z")
    assert render_subscription(s, TERMS, now=LATER)["status"] == "expired"


def test_render_keeps_query_texts_as_given() -> None:
    out = render_subscription(sub(q="temperature>1", scopeQ="/a/#"), TERMS, now=NOW)
    assert out["q"] == "temperature>1" and out["scopeQ"] == "/a/#"


def test_render_omits_notification_status_before_any_attempt() -> None:
    out = render_subscription(sub(), TERMS, NotificationStatus(), now=NOW)["notification"]
    assert out["timesSent"] == 0 and "status" not in out and "lastNotification" not in out


def test_render_reports_a_failing_endpoint() -> None:
    status = NotificationStatus(2, 1, LATER, NOW, LATER, failing=True)
    out = render_subscription(sub(), TERMS, status, now=NOW)["notification"]
    assert out["status"] == "failed" and out["timesFailed"] == 1
    assert out["lastNotification"] == "2025-01-01T00:00:10.000Z"


def test_render_with_sys_attrs_shows_timestamps() -> None:
    out = render_subscription(sub(), TERMS, now=NOW, sys_attrs=True)
    assert out["createdAt"] == out["modifiedAt"] == "2025-01-01T00:00:00.000Z"


def test_render_shows_only_non_default_notification_flags() -> None:
    out = render_subscription(sub(notification=note(showChanges=True)), TERMS, now=NOW)
    assert out["notification"]["showChanges"] is True and "sysAttrs" not in out["notification"]


# --- matching --------------------------------------------------------------------------------


def test_creation_matches_default_triggers_as_attribute_created() -> None:
    m = match_change(sub(), None, entity(name="a", speed=1), NOW)
    assert m == Match("attributeCreated", frozenset({DV + "name", DV + "speed"}), NOW)


def test_creation_matches_entity_created() -> None:
    m = match_change(sub(notificationTrigger=["entityCreated"]), None, entity(), NOW)
    assert m is not None and m.trigger == "entityCreated"


def test_creation_does_not_match_only_attribute_updated() -> None:
    s = sub(notificationTrigger=["attributeUpdated"])
    assert match_change(s, None, entity(name="a"), NOW) is None


def test_value_update_matches_attribute_updated() -> None:
    m = match_change(sub(), entity(name="a"), entity(LATER, name="b"), LATER)
    assert m is not None and m.trigger == "attributeUpdated" and m.changed == {DV + "name"}


def test_rewriting_an_identical_value_matches_nothing() -> None:
    assert match_change(sub(), entity(name="a"), entity(LATER, name="a"), LATER) is None


def test_rewriting_an_identical_value_counts_when_asked() -> None:
    m = match_change(sub(), entity(name="a"), entity(LATER, name="a"), LATER, count_unchanged=True)
    assert m is not None and m.trigger == "attributeUpdated"


def test_new_observed_at_is_an_update() -> None:
    old = entity(t={"value": 1, "observedAt": "2025-01-01T00:00:00Z"})
    new = entity(LATER, t={"value": 1, "observedAt": "2025-01-01T00:00:05Z"})
    assert match_change(sub(), old, new, LATER) is not None


def test_added_attribute_matches_attribute_created() -> None:
    m = match_change(sub(), entity(name="a"), entity(LATER, name="a", speed=3), LATER)
    assert m == Match("attributeCreated", frozenset({DV + "speed"}), LATER)


def test_removed_attribute_matches_attribute_deleted() -> None:
    s = sub(notificationTrigger=["attributeDeleted"])
    m = match_change(s, entity(name="a", speed=3), entity(LATER, name="a"), LATER)
    assert m == Match("attributeDeleted", frozenset({DV + "speed"}), LATER)


def test_removed_attribute_does_not_match_default_triggers() -> None:
    assert match_change(sub(), entity(name="a", speed=3), entity(LATER, name="a"), LATER) is None


def test_removed_dataset_instance_matches_attribute_deleted() -> None:
    s = sub(notificationTrigger=["attributeDeleted"])
    fr = {"value": "Tour", "datasetId": "urn:ngsi-ld:Dataset:fr"}
    m = match_change(s, entity(name=[{"value": "Tower"}, fr]), entity(LATER, name="Tower"), LATER)
    assert m is not None and m.changed == {DV + "name"}


def test_entity_deletion_matches_entity_deleted() -> None:
    m = match_change(sub(notificationTrigger=["entityDeleted"]), entity(name="a"), None, LATER)
    assert m is not None and m.trigger == "entityDeleted"


def test_entity_deletion_matches_attribute_deleted_of_a_watched_attribute() -> None:
    s = sub(notificationTrigger=["attributeDeleted"], watchedAttributes=["name"])
    m = match_change(s, entity(name="a", speed=1), None, LATER)
    assert m == Match("attributeDeleted", frozenset({DV + "name"}), LATER)


def test_entity_deletion_does_not_match_default_triggers() -> None:
    assert match_change(sub(), entity(name="a"), None, LATER) is None


def test_scope_change_matches_entity_updated() -> None:
    old, new = entity(name="a"), entity(LATER, name="a", scope="/x")
    m = match_change(sub(notificationTrigger=["entityUpdated"]), old, new, LATER)
    assert m == Match("entityUpdated", frozenset(), LATER)


def test_entity_updated_covers_attribute_deletions() -> None:
    s = sub(notificationTrigger=["entityUpdated"])
    m = match_change(s, entity(name="a", speed=3), entity(LATER, name="a"), LATER)
    assert m is not None and m.changed == {DV + "speed"}


def test_unwatched_change_matches_nothing() -> None:
    s = sub(watchedAttributes=["name"])
    assert (
        match_change(s, entity(name="a", speed=1), entity(LATER, name="a", speed=2), LATER) is None
    )


def test_watched_change_reports_only_watched_attributes() -> None:
    s = sub(watchedAttributes=["name"])
    m = match_change(s, entity(name="a", speed=1), entity(LATER, name="b", speed=2), LATER)
    assert m is not None and m.changed == {DV + "name"}


def test_several_fired_triggers_report_every_changed_attribute() -> None:
    s = sub(notificationTrigger=["attributeCreated", "attributeUpdated"])
    m = match_change(s, entity(name="a"), entity(LATER, name="b", speed=2), LATER)
    assert m is not None and m.trigger == "attributeCreated"
    assert m.changed == {DV + "name", DV + "speed"}


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({"type": "Building"}, True),
        ({"type": "Shop"}, False),
        ({"type": "Building|Shop"}, True),
        ({"type": "(Building;Shop)"}, False),
        ({"type": "Building", "id": "urn:ngsi-ld:Building:1"}, True),
        ({"type": "Building", "id": "urn:ngsi-ld:Building:2"}, False),
        ({"type": "Building", "idPattern": "urn:ngsi-ld:Building:[0-9]+"}, True),
        ({"type": "Building", "idPattern": "Building"}, False),
        ({"type": "Building", "idPattern": "nomatch", "id": "urn:ngsi-ld:Building:1"}, True),
    ],
)
def test_entity_selectors_decide_what_is_watched(selector: dict[str, str], selected: bool) -> None:
    m = match_change(sub(entities=[selector]), None, entity(name="a"), NOW)
    assert (m is not None) is selected


def test_q_must_hold_on_the_new_entity() -> None:
    s = sub(q="speed>10")
    assert match_change(s, entity(speed=20), entity(LATER, speed=5), LATER) is None
    assert match_change(s, entity(speed=5), entity(LATER, speed=20), LATER) is not None


def test_q_holds_on_the_old_entity_for_a_deletion() -> None:
    s = sub(q="speed>10", notificationTrigger=["entityDeleted"])
    assert match_change(s, entity(speed=20), None, LATER) is not None
    assert match_change(s, entity(speed=5), None, LATER) is None


def test_scope_query_filters_changes() -> None:
    s = sub(scopeQ="/city/#")
    assert match_change(s, None, entity(name="a", scope="/city/north"), NOW) is not None
    assert match_change(s, None, entity(name="a", scope="/town"), NOW) is None


def test_geo_query_filters_changes() -> None:
    s = sub(geoQ={"georel": "near;maxDistance==1000", "geometry": "Point", "coordinates": [0, 0]})
    near = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [0.001, 0]}}
    far = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 1]}}
    assert match_change(s, None, entity(location=near), NOW) is not None
    assert match_change(s, None, entity(location=far), NOW) is None


def test_inactive_subscription_matches_nothing() -> None:
    assert match_change(sub(isActive=False), None, entity(name="a"), NOW) is None


def test_expired_subscription_matches_nothing() -> None:
    s = sub(expiresAt="2025-01-01T00:00:05Z")
    assert match_change(s, None, entity(name="a"), NOW) is not None
    assert match_change(s, None, entity(name="a"), LATER) is None


def test_periodic_subscription_ignores_changes() -> None:
    assert match_change(sub(timeInterval=60), None, entity(name="a"), NOW) is None


values = st.one_of(st.integers(), st.text(max_size=5), st.booleans())
entities = st.dictionaries(st.sampled_from(["a", "b", "c"]), values, max_size=3).map(
    lambda attrs: entity(**attrs)
)


@settings(max_examples=100, deadline=None)
@given(entities, st.lists(st.sampled_from(TRIGGERS), min_size=1, unique=True))
def test_an_entity_compared_with_itself_matches_nothing(e: dict[str, Any], triggers: list) -> None:
    assert match_change(sub(notificationTrigger=triggers), e, copy.deepcopy(e), NOW) is None


@settings(max_examples=100, deadline=None)
@given(entities, entities)
def test_attribute_changes_are_symmetric(old: dict[str, Any], new: dict[str, Any]) -> None:
    forward = attribute_changes(old, new)
    backward = attribute_changes(new, old)
    swap = {"created": "deleted", "deleted": "created", "updated": "updated"}
    assert backward == {
        iri: {k: swap[v] for k, v in kinds.items()} for iri, kinds in forward.items()
    }


# --- notification data -----------------------------------------------------------------------


def notify(s: Subscription, old: Any, new: Any, terms: Any = TERMS) -> dict[str, Any]:
    m = match_change(s, old, new, LATER)
    assert m is not None
    return render_notification_entity(s, notification_entity(s, old, new, m), terms)


def test_notification_carries_the_new_entity() -> None:
    out = notify(sub(), entity(name="a"), entity(LATER, name="b", speed=1))
    assert out == {
        "id": "urn:ngsi-ld:Building:1",
        "type": "Building",
        "name": {"type": "Property", "value": "b"},
        "speed": {"type": "Property", "value": 1},
    }


def test_notification_is_restricted_to_notification_attributes() -> None:
    out = notify(sub(notification=note(attributes=["speed"])), None, entity(name="a", speed=1))
    assert set(out) == {"id", "type", "speed"}


def test_show_changes_adds_the_previous_value() -> None:
    s = sub(notification=note(showChanges=True))
    out = notify(s, entity(name="Eiffel Tower", h=3), entity(LATER, name="Tour Eiffel", h=3))
    assert out["name"] == {
        "type": "Property",
        "value": "Tour Eiffel",
        "previousValue": "Eiffel Tower",
    }
    assert out["h"] == {"type": "Property", "value": 3}


def test_show_changes_adds_the_previous_object_of_a_relationship() -> None:
    s = sub(notification=note(showChanges=True))
    old = entity(at={"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"})
    new = entity(LATER, at={"type": "Relationship", "object": "urn:ngsi-ld:City:Lyon"})
    assert notify(s, old, new)["at"]["previousObject"] == "urn:ngsi-ld:City:Paris"


def test_show_changes_adds_the_previous_language_map() -> None:
    s = sub(notification=note(showChanges=True))
    old = entity(street={"type": "LanguageProperty", "languageMap": {"fr": "Grand Place"}})
    new = entity(LATER, street={"type": "LanguageProperty", "languageMap": {"es": "Gran Lugar"}})
    assert notify(s, old, new)["street"]["previousLanguageMap"] == {"fr": "Grand Place"}


def test_show_changes_compacts_a_previous_vocab() -> None:
    s = sub(notification=note(showChanges=True))
    old = entity(category={"type": "VocabProperty", "vocab": "monument"})
    new = entity(LATER, category={"type": "VocabProperty", "vocab": "park"})
    assert old["attrs"][DV + "category"][0]["vocab"] == DV + "monument"
    assert notify(s, old, new)["category"]["previousVocab"] == "monument"


def test_created_attribute_has_no_previous_value() -> None:
    s = sub(notification=note(showChanges=True))
    out = notify(s, entity(name="a"), entity(LATER, name="a", speed=1))
    assert out["speed"] == {"type": "Property", "value": 1}


def test_deleted_attribute_is_notified_as_ngsi_ld_null() -> None:
    s = sub(notificationTrigger=["attributeDeleted"])
    out = notify(s, entity(name="a", speed=1), entity(LATER, name="a"))
    assert out["speed"] == {"type": "Property", "value": NGSI_LD_NULL, "deletedAt": LATER_SHOWN}
    assert out["name"] == {"type": "Property", "value": "a"}


@pytest.mark.parametrize(
    ("raw", "member", "null"),
    [
        ({"type": "Relationship", "object": "urn:x:1"}, "object", NGSI_LD_NULL),
        (
            {"type": "LanguageProperty", "languageMap": {"fr": "x"}},
            "languageMap",
            {"@none": NGSI_LD_NULL},
        ),
        ({"type": "ListProperty", "valueList": [1, 2]}, "valueList", [NGSI_LD_NULL]),
        ({"type": "JsonProperty", "json": {"a": 1}}, "json", NGSI_LD_NULL),
    ],
)
def test_deleted_attribute_null_follows_its_type(raw: Any, member: str, null: Any) -> None:
    s = sub(notificationTrigger=["attributeDeleted"], notification=note(showChanges=True))
    out = notify(s, entity(x=raw, keep=1), entity(LATER, keep=1))
    assert out["x"][member] == null
    assert out["x"]["previous" + member[0].upper() + member[1:]] == raw[member]


def test_deleted_dataset_instance_is_notified_beside_the_remaining_ones() -> None:
    s = sub(notificationTrigger=["attributeDeleted"])
    fr = {"value": "Tour", "datasetId": "urn:ngsi-ld:Dataset:fr"}
    out = notify(s, entity(name=[{"value": "Tower"}, fr]), entity(LATER, name="Tower"))
    assert out["name"] == [
        {"type": "Property", "value": "Tower"},
        {
            "type": "Property",
            "value": NGSI_LD_NULL,
            "deletedAt": LATER_SHOWN,
            "datasetId": "urn:ngsi-ld:Dataset:fr",
        },
    ]


def test_deleted_entity_is_notified_as_id_type_and_deleted_at() -> None:
    out = notify(sub(notificationTrigger=["entityDeleted"]), entity(name="a"), None)
    assert out == {
        "id": "urn:ngsi-ld:Building:1",
        "type": "Building",
        "deletedAt": "2025-01-01T00:00:10.000Z",
    }


def test_deleted_entity_with_show_changes_lists_previous_values() -> None:
    s = sub(notificationTrigger=["entityDeleted"], notification=note(showChanges=True))
    out = notify(s, entity(name="a"), None)
    assert out["name"] == {
        "type": "Property",
        "value": NGSI_LD_NULL,
        "deletedAt": LATER_SHOWN,
        "previousValue": "a",
    }


def test_deleted_entity_for_attribute_deleted_lists_the_watched_attributes() -> None:
    s = sub(notificationTrigger=["attributeDeleted"], watchedAttributes=["name"])
    out = notify(s, entity(name="a", speed=1), None)
    assert set(out) == {"id", "type", "deletedAt", "name"}


def test_sys_attrs_show_when_an_attribute_was_deleted() -> None:
    s = sub(notificationTrigger=["attributeDeleted"], notification=note(sysAttrs=True))
    out = notify(s, entity(name="a", speed=1), entity(LATER, name="a"))
    assert out["speed"]["deletedAt"] == "2025-01-01T00:00:10.000Z"
    assert out["speed"]["createdAt"] == "2025-01-01T00:00:00.000Z"


def test_concise_notification_keeps_the_previous_value() -> None:
    s = sub(notification=note(showChanges=True, format="concise"))
    out = notify(s, entity(name="a"), entity(LATER, name="b"))
    assert out["name"] == {"value": "b", "previousValue": "a"}


def test_key_values_notification_has_no_previous_value() -> None:
    s = sub(notification=note(showChanges=True, format="keyValues"))
    assert notify(s, entity(name="a"), entity(LATER, name="b"))["name"] == "b"


def test_dataset_id_restricts_the_notified_instances() -> None:
    s = sub(datasetId=["urn:ngsi-ld:Dataset:fr"])
    fr = {"value": "Tour", "datasetId": "urn:ngsi-ld:Dataset:fr"}
    out = notify(s, None, entity(name=[{"value": "Tower"}, fr], speed=1))
    assert out["name"] == {
        "type": "Property",
        "value": "Tour",
        "datasetId": "urn:ngsi-ld:Dataset:fr",
    }
    assert "speed" not in out


def test_pick_restricts_the_notified_members() -> None:
    out = notify(sub(notification=note(pick=["id", "name"])), None, entity(name="a", speed=1))
    assert out == {"id": "urn:ngsi-ld:Building:1", "name": {"type": "Property", "value": "a"}}


@pytest.mark.parametrize(
    "triggers", [["attributeDeleted"], ["attributeUpdated"], ["entityUpdated"]]
)
@pytest.mark.parametrize("show_changes", [True, False])
def test_notification_entity_leaves_its_inputs_untouched(
    triggers: list[str], show_changes: bool
) -> None:
    s = sub(notificationTrigger=triggers, notification=note(showChanges=show_changes))
    old, new = entity(name="a", speed=1, height=3), entity(LATER, name="b", height=3)
    before = copy.deepcopy((old, new))
    m = match_change(s, old, new, LATER)
    assert m is not None
    notification_entity(s, old, new, m)
    assert (old, new) == before


def test_notification_body_wraps_the_data() -> None:
    out = notification_body(sub(), [{"id": "urn:x:1"}], "urn:ngsi-ld:Notification:1", LATER)
    assert out == {
        "id": "urn:ngsi-ld:Notification:1",
        "type": "Notification",
        "subscriptionId": "urn:ngsi-ld:Subscription:1",
        "notifiedAt": "2025-01-01T00:00:10.000Z",
        "data": [{"id": "urn:x:1"}],
    }


# --- indexing and pacing ---------------------------------------------------------------------


def test_selector_keys_index_ids_and_types() -> None:
    s = sub(
        entities=[
            {"id": "urn:ngsi-ld:Building:1", "type": "Building"},
            {"type": "(Shop;Car)|Bus", "idPattern": ".*"},
        ]
    )
    assert selector_keys(s) == (
        {"urn:ngsi-ld:Building:1"},
        {DV + "Shop", DV + "Car", DV + "Bus"},
        False,
    )


def test_watched_attributes_only_subscription_needs_a_scan() -> None:
    assert selector_keys(sub(entities=DROP, watchedAttributes=["name"])) == (set(), set(), True)


def test_throttling_holds_notifications_back_for_its_period() -> None:
    s = sub(throttling=30)
    assert is_throttled(s, NOW, LATER)
    assert not is_throttled(s, NOW, "2025-01-01T00:00:30Z")
    assert not is_throttled(s, None, LATER)
    assert not is_throttled(sub(), NOW, LATER)
