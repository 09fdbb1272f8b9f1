"""The stored default view: updating it in place gives what a full render gives."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import Entity, parse_entity, parse_instance
from urbanstack.ngsild.representation import (
    RenderOptions,
    render_default_view,
    render_instance,
    update_default_view,
)

TERMS = core_term_map()
NOW = "2026-11-24T10:00:00.000000Z"
LATER = "2026-11-24T10:00:01.000000Z"


def sensor(**extra: Any) -> Entity:
    return parse_entity(
        {
            "id": "urn:ngsi-ld:Sensor:1",
            "type": "Sensor",
            "name": {"type": "Property", "value": "s1"},
            "temperature": [
                {"type": "Property", "value": 1.5, "datasetId": "urn:d:a", "unitCode": "CEL"},
                {"type": "Property", "value": 2.5, "datasetId": "urn:d:b"},
            ],
            "battery": {"type": "Property", "value": 0.5, "reliability": {"value": 0.9}},
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Owner:1"},
            "label": {"type": "LanguageProperty", "languageMap": {"en": "a", "vi": "b"}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
            **extra,
        },
        TERMS,
        NOW,
    )


NAMES = ["name", "temperature", "battery", "owner", "label", "location"]
NEW_VALUES: list[dict[str, Any]] = [
    {"type": "Property", "value": 7},
    {"type": "Property", "value": "text", "observedAt": "2026-01-01T00:00:00Z"},
    {"type": "Property", "value": {"nested": [1, 2]}, "unitCode": "MTR"},
    {"type": "Relationship", "object": "urn:ngsi-ld:Owner:2"},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [3, 4]}},
    {"type": "VocabProperty", "vocab": "Sensor"},
    {"type": "Property", "value": 1, "quality": {"type": "Property", "value": "good"}},
]


def updated(old: Entity, changes: list[tuple[int, int]]) -> Entity:
    new = copy.deepcopy(old)
    for name_index, value_index in changes:
        name = NAMES[name_index]
        instance = parse_instance(NEW_VALUES[value_index], TERMS, LATER, name)
        new["attrs"][TERMS.expand(name)] = [instance]
    new["modifiedAt"] = LATER
    return new


@given(
    st.lists(
        st.tuples(st.integers(0, len(NAMES) - 1), st.integers(0, len(NEW_VALUES) - 1)),
        max_size=4,
    )
)
@example([])
@example([(1, 0)])  # two instances become one
@example([(5, 1)])  # a GeoProperty becomes a Property
def test_an_updated_view_equals_a_full_render(changes: list[tuple[int, int]]) -> None:
    old = sensor()
    new = updated(old, changes)
    assert update_default_view(render_default_view(old), old, new) == render_default_view(new)


def test_a_view_keeps_the_attribute_order_of_the_entity() -> None:
    old = sensor()
    new = updated(old, [(0, 0)])
    view = update_default_view(render_default_view(old), old, new)
    assert view is not None
    assert view.index(b'"name"') < view.index(b'"temperature"') < view.index(b'"location"')


def test_an_added_attribute_asks_for_a_full_render() -> None:
    old = sensor()
    new = copy.deepcopy(old)
    new["attrs"][TERMS.expand("extra")] = [parse_instance(7, TERMS, LATER, "extra")]
    assert update_default_view(render_default_view(old), old, new) is None


def test_a_removed_attribute_asks_for_a_full_render() -> None:
    old = sensor()
    new = copy.deepcopy(old)
    del new["attrs"][TERMS.expand("owner")]
    assert update_default_view(render_default_view(old), old, new) is None


def test_new_types_or_scopes_ask_for_a_full_render() -> None:
    old = sensor()
    retyped = copy.deepcopy(old)
    retyped["type"] = [TERMS.expand("Device")]
    scoped = copy.deepcopy(old)
    scoped["scope"] = ["/hue"]
    view = render_default_view(old)
    assert update_default_view(view, old, retyped) is None
    assert update_default_view(view, old, scoped) is None


def test_a_view_whose_member_count_disagrees_asks_for_a_full_render() -> None:
    old = sensor()
    new = updated(old, [(0, 0)])
    assert update_default_view(b'{"id":"urn:ngsi-ld:Sensor:1"}', old, new) is None


PLAIN_MEMBERS = {
    "observedAt": st.just("2026-01-01T00:00:00.123456Z"),
    "unitCode": st.sampled_from(["CEL", "MTR"]),
    "datasetId": st.just("urn:ngsi-ld:Dataset:a"),
    "createdAt": st.just(NOW),
    "modifiedAt": st.just(LATER),
}
SCALARS = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(max_size=5), st.booleans(), st.none()
)


@given(
    st.one_of(
        SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=3), SCALARS)
    ),
    st.fixed_dictionaries({}, optional=PLAIN_MEMBERS),
    st.sampled_from([RenderOptions(), RenderOptions(sys_attrs=True), RenderOptions(lang="vi")]),
)
def test_a_plain_property_renders_as_the_general_path_does(
    value: Any, members: dict[str, Any], opts: RenderOptions
) -> None:
    inst = {"type": "Property", "value": value, **members}
    with_extra = {**inst, "deletedAt": LATER}  # a member the fast path leaves to the general one
    fast = render_instance(inst, TERMS, opts, False)
    general = render_instance(with_extra, TERMS, opts, False)
    assert general.pop("deletedAt") == LATER[:23] + "Z"
    assert fast == general
    assert list(fast) == list(general)  # the same members in the same order
