"""Keeping an entity's attributes at their latest instances (temporal writes, device
measures)."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

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


def reference_keep_latest(entity: dict[str, Any], attrs: dict[str, list[Any]]) -> None:
    """The rule, written plainly: per (attribute, datasetId), the most recent instance
    (later in the list wins ties); a replaced instance hands its createdAt on."""
    for iri, instances in attrs.items():
        current = entity["attrs"][iri] = list(entity["attrs"].get(iri, ()))
        latest: dict[Any, Any] = {}
        for inst in instances:
            best = latest.get(inst.get("datasetId"))
            if best is None or inst.get("observedAt", "") >= best.get("observedAt", ""):
                latest[inst.get("datasetId")] = inst
        for dataset_id, inst in latest.items():
            found = [i for i, c in enumerate(current) if c.get("datasetId") == dataset_id]
            if not found:
                current.append(inst)
            elif current[found[0]].get("observedAt", "") <= inst.get("observedAt", "\uffff"):
                inst["createdAt"] = current[found[0]].get("createdAt", inst["createdAt"])
                current[found[0]] = inst


@pytest.mark.parametrize("seed", range(200))
def test_keeping_the_latest_agrees_with_the_plain_rule(seed: int) -> None:
    rng = random.Random(seed)

    def some(created: str) -> list[dict[str, Any]]:
        out = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            inst = reading(rng.randrange(100), f"2026-11-24T0{rng.randrange(4)}:00:00Z")
            if rng.random() < 0.3:
                inst["datasetId"] = rng.choice(["urn:a", "urn:b"])
            if rng.random() < 0.2:
                del inst["observedAt"]
            inst["createdAt"] = created
            out.append(inst)
        return out

    stored = {iri: some("old") for iri in ("t", "h") if rng.random() < 0.8}
    new = {iri: some("new") for iri in ("t", "h", "p") if rng.random() < 0.8}
    mine = {"attrs": copy.deepcopy(stored)}
    theirs = {"attrs": copy.deepcopy(stored)}
    keep_latest_instances(mine, copy.deepcopy(new))
    reference_keep_latest(theirs, copy.deepcopy(new))
    assert mine == theirs
