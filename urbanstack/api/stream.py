"""GET /api/stream: committed changes as Server-Sent Events, for browser dashboards.

``type`` (a type expression), ``q`` and ``id`` (a list) filter the changes; each event is
``event: created|updated|deleted`` with the entity (normalized, or ``options=keyValues``)
as ``data``. A comment line every 15 seconds keeps proxies from closing the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from urbanstack.api.http import broker_of, caller_of, request_terms
from urbanstack.api.params import render_options, split_list
from urbanstack.broker.entities import require_tenant
from urbanstack.broker.stream import StreamFilter
from urbanstack.ngsild.model import validate_entity_id
from urbanstack.ngsild.q import parse_query_q
from urbanstack.ngsild.representation import render_entity
from urbanstack.ngsild.typeq import parse_type_query

KEEP_ALIVE_S = 15.0


async def stream_changes(request: Request) -> Response:
    broker = broker_of(request)
    caller = caller_of(request, query_tenant=True)  # browsers' EventSource sends no headers
    params = request.query_params
    terms = await request_terms(request)
    ids = [validate_entity_id(i) for i in split_list(params.get("id"))]
    wanted = StreamFilter(
        types=parse_type_query(params["type"], terms.expand) if params.get("type") else None,
        q=parse_query_q(params["q"], terms.expand) if params.get("q") else None,
        ids=frozenset(ids) if ids else None,
    )
    opts = render_options({k: v for k, v in params.items() if k in ("options", "attrs")}, terms)
    await require_tenant(broker, caller)
    client = broker.stream.connect(caller.tenant, wanted)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(client.queue.get(), KEEP_ALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event is None:
                    yield b"event: end\ndata: {}\n\n"
                    return
                data = orjson.dumps(render_entity(event.entity, terms, opts))
                yield b"event: " + event.kind.encode() + b"\ndata: " + data + b"\n\n"
        finally:
            broker.stream.disconnect(client)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
