"""Live change streams for browser dashboards (``/api/stream``, Server-Sent Events).

Unlike subscriptions, a stream is not durable: it carries the changes committed while
the client is connected. Each client has a bounded queue; a client that falls too far
behind is told so and disconnected rather than slowing the broker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from urbanstack.ngsild.model import Entity
from urbanstack.ngsild.patterns import PatternTooSlow
from urbanstack.ngsild.q import QExpr
from urbanstack.ngsild.q_match import match_q
from urbanstack.ngsild.typeq import TypeExpr, match_types
from urbanstack.store.base import ChangeResult

QUEUE_SIZE = 1000


@dataclass(frozen=True)
class StreamFilter:
    """Which changes a stream client wants: entity types and a ``q`` on the new state."""

    types: TypeExpr | None = None
    q: QExpr | None = None
    ids: frozenset[str] | None = None

    def matches(self, entity: Entity, deleted: bool) -> bool:
        """Whether a change of ``entity`` (its state after, or before a deletion) is wanted."""
        if self.ids is not None and entity["id"] not in self.ids:
            return False
        if self.types is not None and not match_types(self.types, entity["type"]):
            return False
        if deleted or self.q is None:
            return True
        try:
            return match_q(self.q, entity)
        except PatternTooSlow:
            return False  # this stream's pattern is at fault: it misses the change, others do not


@dataclass(frozen=True)
class StreamEvent:
    """One committed change: ``kind`` is created, updated or deleted."""

    kind: str
    entity: Entity


@dataclass(eq=False)
class StreamClient:
    """One connected client: its filter, its queue, and whether it fell behind."""

    tenant: str | None
    filter: StreamFilter
    queue: asyncio.Queue[StreamEvent | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    overflowed: bool = False


class ChangeStream:
    """Fans committed changes out to the connected stream clients (event loop only)."""

    def __init__(self) -> None:
        self._clients: set[StreamClient] = set()

    def connect(self, tenant: str | None, wanted: StreamFilter) -> StreamClient:
        client = StreamClient(tenant, wanted)
        self._clients.add(client)
        return client

    def disconnect(self, client: StreamClient) -> None:
        self._clients.discard(client)

    def close_all(self) -> None:
        """End every stream (server shutdown): each client gets its end-of-stream marker."""
        for client in list(self._clients):
            client.overflowed = True
            if client.queue.full():
                client.queue.get_nowait()
            client.queue.put_nowait(None)

    def publish(self, tenant: str | None, results: list[ChangeResult]) -> None:
        """The store's commit listener: queue each accepted change for matching clients."""
        if not self._clients:
            return
        for result in results:
            if result.error is not None or result.old is result.new:
                continue
            if result.new is None:
                assert result.old is not None
                event = StreamEvent("deleted", result.old)
            else:
                event = StreamEvent("created" if result.old is None else "updated", result.new)
            for client in list(self._clients):
                if client.tenant != tenant or client.overflowed:
                    continue
                if not client.filter.matches(event.entity, event.kind == "deleted"):
                    continue
                try:
                    client.queue.put_nowait(event)
                except asyncio.QueueFull:
                    client.overflowed = True
                    client.queue.get_nowait()
                    client.queue.put_nowait(None)  # ends the stream: the client fell behind
