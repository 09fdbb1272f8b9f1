"""Handlers for /jsonldContexts (GS CIM 009 clause 5.13)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from urbanstack.api.http import JSON, JSON_LD, broker_of, json_response, no_content, read_json
from urbanstack.api.params import parse_bool
from urbanstack.broker import contexts as uc


def _base_url(request: Request) -> str:
    configured = broker_of(request).settings.base_url
    return configured or str(request.base_url).rstrip("/")


async def add_context(request: Request) -> Response:
    body = await read_json(request, allowed=(JSON, JSON_LD))
    record = await uc.add_context(broker_of(request).contexts, body, _base_url(request))
    return no_content({"Location": record.url}, status=201)


async def list_contexts(request: Request) -> Response:
    params = request.query_params
    data = await uc.list_contexts(
        broker_of(request).contexts,
        details=parse_bool(params.get("details"), "details"),
        kind=params.get("kind"),
    )
    return json_response(data)


async def serve_context(request: Request) -> Response:
    details = parse_bool(request.query_params.get("details"), "details")
    data = await uc.get_context(
        broker_of(request).contexts, request.path_params["contextId"], details=details
    )
    return json_response(data, accept=JSON if details else JSON_LD)


async def delete_context(request: Request) -> Response:
    reload = parse_bool(request.query_params.get("reload"), "reload")
    await uc.delete_context(
        broker_of(request).contexts, request.path_params["contextId"], reload=reload
    )
    return no_content()
