"""The records and logs part of the storage contract (device registry, counters, dead
letters), run against every backend."""

from __future__ import annotations

from typing import Any

import pytest

from urbanstack.ngsild.errors import BadRequestData
from urbanstack.store.base import EntityStore, Keep, RecordChange

pytestmark = pytest.mark.anyio


def put(key: str, doc: Any) -> RecordChange:
    return RecordChange(key, lambda current: doc)


def add_one(key: str) -> RecordChange:
    """Count up, creating the record at 1."""
    return RecordChange(key, lambda current: {"n": (current or {"n": 0})["n"] + 1})


def remove(key: str) -> RecordChange:
    return RecordChange(key, lambda current: None)


def keep(key: str) -> RecordChange:
    return RecordChange(key, lambda current: Keep())


async def test_changes_to_one_key_see_each_other_in_order(store: EntityStore) -> None:
    results = await store.change_records("k", [add_one("a"), add_one("a"), add_one("b")])
    assert results == [{"n": 1}, {"n": 2}, {"n": 1}]
    assert await store.get_record("k", "a") == {"n": 2}
    results = await store.change_records("k", [add_one("a"), remove("a"), add_one("a")])
    assert results == [{"n": 3}, None, {"n": 1}]
    assert await store.get_record("k", "a") == {"n": 1}


async def test_keep_answers_the_record_and_writes_nothing(store: EntityStore) -> None:
    await store.change_records("k", [put("a", {"v": 1})])
    assert await store.change_records("k", [keep("a"), keep("missing")]) == [{"v": 1}, None]
    assert await store.list_records("k", 10) == ([("a", {"v": 1})], 1)


async def test_deleting_and_creating_in_one_call(store: EntityStore) -> None:
    await store.change_records("k", [put("a", 1), put("b", 2)])
    results = await store.change_records("k", [remove("a"), put("c", 3), remove("never")])
    assert results == [None, 3, None]
    assert await store.list_records("k", 10) == ([("b", 2), ("c", 3)], 2)


async def test_a_large_call_changes_every_record(store: EntityStore) -> None:
    keys = [f"device-{n:04d}" for n in range(1200)]  # more than one query's worth of keys
    await store.change_records("k", [add_one(key) for key in keys[::2]])
    results = await store.change_records("k", [add_one(key) for key in keys])
    assert results == [{"n": 2 if n % 2 == 0 else 1} for n in range(1200)]
    records, total = await store.list_records("k", 2000)
    assert total == 1200
    assert dict(records) == {key: {"n": 2 if n % 2 == 0 else 1} for n, key in enumerate(keys)}


async def test_a_refusal_changes_nothing(store: EntityStore) -> None:
    await store.change_records("k", [put("a", 1)])

    def refuse(current: Any) -> Any:
        raise BadRequestData("no")

    with pytest.raises(BadRequestData):
        await store.change_records("k", [put("a", 2), put("b", 2), RecordChange("c", refuse)])
    assert await store.list_records("k", 10) == ([("a", 1)], 1)


async def test_kinds_are_separate(store: EntityStore) -> None:
    await store.change_records("devices", [put("a", 1)])
    await store.change_records("groups", [put("a", 2)])
    assert await store.get_record("devices", "a") == 1
    assert await store.get_record("groups", "a") == 2
