"""The live change stream: filtering and the bound on a slow client."""

from __future__ import annotations

import asyncio

import pytest

from urbanstack.broker.stream import QUEUE_SIZE, ChangeStream, StreamFilter
from urbanstack.ngsild.jsonld import core_term_map
from urbanstack.ngsild.model import Entity, parse_entity
from urbanstack.ngsild.q import parse_query_q
from urbanstack.ngsild.typeq import parse_type_query
from urbanstack.store.base import ChangeResult

TERMS = core_term_map()
NOW = "2026-11-24T00:00:00.000000Z"


def gauge(n: int, level: float, entity_type: str = "WaterLevelObserved") -> Entity:
    body = {"id": f"urn:ngsi-ld:{entity_type}:{n}", "type": entity_type, "waterLevel": level}
    return parse_entity(body, TERMS, NOW)


def created(entity: Entity) -> ChangeResult:
    return ChangeResult(entity["id"], old=None, new=entity)


def test_clients_get_the_changes_their_filter_matches() -> None:
    async def run() -> list[str]:
        stream = ChangeStream()
        wanted = StreamFilter(
            types=parse_type_query("WaterLevelObserved", TERMS.expand),
            q=parse_query_q("waterLevel>2", TERMS.expand),
        )
        client = stream.connect(None, wanted)
        stream.publish(None, [created(gauge(1, 1.0)), created(gauge(2, 3.0))])
        stream.publish(None, [created(gauge(3, 5.0, "RainfallObserved"))])
        stream.publish("hcmc", [created(gauge(4, 9.0))])
        events = []
        while not client.queue.empty():
            event = client.queue.get_nowait()
            assert event is not None
            events.append(f"{event.kind} {event.entity['id']}")
        return events

    assert asyncio.run(run()) == ["created urn:ngsi-ld:WaterLevelObserved:2"]


def test_deletions_and_updates_are_told_apart() -> None:
    async def run() -> list[str]:
        stream = ChangeStream()
        client = stream.connect(None, StreamFilter())
        old, new = gauge(1, 1.0), gauge(1, 2.0)
        stream.publish(None, [ChangeResult(old["id"], old=old, new=new)])
        stream.publish(None, [ChangeResult(old["id"], old=new, new=None)])
        return [client.queue.get_nowait().kind for _ in range(2)]  # type: ignore[union-attr]

    assert asyncio.run(run()) == ["updated", "deleted"]


@pytest.mark.parametrize("extra", [1, 10])
def test_a_client_that_falls_behind_is_ended_not_waited_for(extra: int) -> None:
    async def run() -> tuple[int, bool, object]:
        stream = ChangeStream()
        client = stream.connect(None, StreamFilter())
        for n in range(QUEUE_SIZE + extra):
            stream.publish(None, [created(gauge(n, 1.0))])
        items = [client.queue.get_nowait() for _ in range(client.queue.qsize())]
        return len(items), client.overflowed, items[-1]

    size, overflowed, last = asyncio.run(run())
    assert size == QUEUE_SIZE and overflowed and last is None
