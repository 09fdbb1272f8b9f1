"""Handlers for /entityOperations: batch create, upsert, update, delete, merge and query."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from urbanstack.api.http import (
    broker_of,
    caller_of,
    json_response,
    negotiate,
    no_content,
    read_json,
    request_terms,
    strip_context,
)
from urbanstack.api.params import entity_query_from_body, render_options
from urbanstack.broker import batch as uc
from urbanstack.broker.batch import BatchResult
from urbanstack.broker.entities import query_entities
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.representation import render_entity

#: batch writes handled at once per process: each holds its parsed body, its entities and
#: their rows (tens of MB for 1,000 entities), and with one interpreter lock more at once is
#: not faster; the others wait, their bodies unread, so memory stays bounded under load
BATCHES_AT_ONCE = 2

Handler = Callable[[Request], Awaitable[Response]]


def _gate(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    gate = getattr(state, "batch_gate", None)
    if gate is None:  # made on first use, inside the app's event loop
        gate = state.batch_gate = asyncio.Semaphore(BATCHES_AT_ONCE)
    return gate


def _one_of_few(handler: Handler) -> Handler:
    """Run ``handler`` once one of the process's :data:`BATCHES_AT_ONCE` places is free."""

    @functools.wraps(handler)
    async def gated(request: Request) -> Response:
        async with _gate(request):
            return await handler(request)

    return gated


def _options(request: Request) -> set[str]:
    return {o for o in request.query_params.get("options", "").split(",") if o}


def batch_response(result: BatchResult, *, created_status: bool) -> Response:
    """201 with created ids, 204 when all succeeded, 207 with a BatchOperationResult otherwise."""
    if result.errors:
        body = {
            "success": result.success,
            "errors": [
                {"entityId": entity_id, "error": err.to_problem()}
                for entity_id, err in result.errors
            ],
        }
        return json_response(body, status=207)
    if created_status and result.created:
        return json_response(result.created, status=201)
    return no_content()


async def _parsed(request: Request) -> tuple[Any, TermMap]:
    body = await read_json(request)
    terms = await request_terms(request, body, has_body=True)
    return strip_context(body), terms


@_one_of_few
async def batch_create(request: Request) -> Response:
    body, terms = await _parsed(request)
    result = await uc.batch_create(broker_of(request), caller_of(request), body, terms)
    return batch_response(result, created_status=True)


@_one_of_few
async def batch_upsert(request: Request) -> Response:
    body, terms = await _parsed(request)
    result = await uc.batch_upsert(
        broker_of(request),
        caller_of(request),
        body,
        terms,
        replace="update" not in _options(request),
    )
    return batch_response(result, created_status=True)


@_one_of_few
async def batch_update(request: Request) -> Response:
    body, terms = await _parsed(request)
    result = await uc.batch_update(
        broker_of(request),
        caller_of(request),
        body,
        terms,
        overwrite="noOverwrite" not in _options(request),
    )
    return batch_response(result, created_status=False)


@_one_of_few
async def batch_merge(request: Request) -> Response:
    body, terms = await _parsed(request)
    result = await uc.batch_merge(broker_of(request), caller_of(request), body, terms)
    return batch_response(result, created_status=False)


@_one_of_few
async def batch_delete(request: Request) -> Response:
    body = await read_json(request)
    result = await uc.batch_delete(broker_of(request), caller_of(request), body)
    return batch_response(result, created_status=False)


async def batch_query(request: Request) -> Response:
    broker = broker_of(request)
    accept = negotiate(request)
    body, terms = await _parsed(request)
    query = entity_query_from_body(body, request.query_params, terms, broker.settings)
    opts = render_options(request.query_params, terms, extra_attrs=body.get("attrs"))
    page = await query_entities(broker, caller_of(request), query)
    headers = {"NGSILD-Results-Count": str(page.total)} if page.total is not None else {}
    data = [render_entity(e, terms, opts) for e in page.entities]
    return json_response(data, terms=terms, accept=accept, headers=headers)
