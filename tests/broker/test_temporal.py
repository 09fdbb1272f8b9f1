"""Keeping an entity's attributes at their latest instances (temporal writes, device
measures)."""

from __future__ import annotations

from typing import Any

from urbanstack.broker.temporal import keep_latest_instances


def reading(value: float, observed: str, dataset: str | None = None) -> dict[str, Any]:
    inst = {"type": "Property", "value": value, "observedAt": observed, "createdAt": "c"}
    if dataset is not None:
        inst["datasetId"] = dataset
    return inst


def test_each_dataset_keeps_its_most_recent_instance() -> None:
    entity: dict[str, Any] = {"attrs": {"t": [reading(1, "2026-11-24T01:00:00Z")]}}
    keep_latest_instances(
        entity,
        {
            "t": [
                reading(3, "2026-11-24T03:00:00Z"),
                reading(2, "2026-11-24T02:00:00Z"),
                reading(9, "2026-11-24T00:00:00Z", "urn:d"),
            ]
        },
    )
    assert [(i["value"], i.get("datasetId")) for i in entity["attrs"]["t"]] == [
        (3, None),
        (9, "urn:d"),
    ]


def test_an_older_instance_does_not_replace_a_newer_one() -> None:
    entity: dict[str, Any] = {"attrs": {"t": [reading(5, "2026-11-24T05:00:00Z")]}}
    keep_latest_instances(entity, {"t": [reading(4, "2026-11-24T04:00:00Z")]})
    assert [i["value"] for i in entity["attrs"]["t"]] == [5]


def test_the_entitys_instance_lists_are_replaced_not_changed() -> None:
    """A shallow EntityChange shares the lists with the stored entity it reports as old."""
    stored = [reading(1, "2026-11-24T01:00:00Z")]
    entity: dict[str, Any] = {"attrs": {"t": stored, "h": []}}
    keep_latest_instances(
        entity, {"t": [reading(2, "2026-11-24T02:00:00Z")], "h": [reading(7, "x")]}
    )
    assert [i["value"] for i in stored] == [1]
    assert [i["value"] for i in entity["attrs"]["t"]] == [2]
    assert [i["value"] for i in entity["attrs"]["h"]] == [7]
