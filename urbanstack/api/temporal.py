"""Handlers for /temporal/entities and /temporal/entityOperations/query: parse, call, render."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from urbanstack.api.entities import _body_and_terms, _page_links
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
from urbanstack.api.params import (
    entity_query_from_body,
    entity_query_from_params,
    parse_bool,
    render_options,
    temporal_format,
    temporal_query_from_params,
)
from urbanstack.broker import temporal as uc
from urbanstack.ngsild.errors import BadRequestData
from urbanstack.ngsild.history import TemporalEntity, common_window
from urbanstack.ngsild.jsonld import TermMap
from urbanstack.ngsild.query import EntityQuery
from urbanstack.ngsild.temporal import TemporalQuery
from urbanstack.ngsild.temporal_render import (
    TemporalFormat,
    content_range,
    render_temporal_entity,
)

TEMPORAL_PATH = "/ngsi-ld/v1/temporal/entities"


def _render(
    request: Request,
    entities: list[TemporalEntity],
    terms: TermMap,
    fmt: TemporalFormat,
    query: TemporalQuery,
    accept: str,
    *,
    single: bool,
    headers: dict[str, str] | None = None,
    links: list[str] | None = None,
) -> Response:
    headers = dict(headers or {})
    status = 200
    window = common_window(entities, query.timeproperty, query.descending)
    if window is not None:
        status = 206
        headers["Content-Range"] = content_range(window, query.descending, query.last_n)
    opts = render_options({k: v for k, v in request.query_params.items() if k == "lang"}, terms)
    if query.sys_attrs:
        opts = replace(opts, sys_attrs=True)
    data: Any = [render_temporal_entity(e, terms, fmt, query, opts) for e in entities]
    return json_response(
        data[0] if single else data,
        status=status,
        terms=terms,
        accept=accept,
        headers=headers,
        links=links,
    )


async def retrieve_temporal(request: Request) -> Response:
    broker = broker_of(request)
    accept = negotiate(request)
    terms = await request_terms(request)
    fmt, sys_attrs = temporal_format(request.query_params)
    query = temporal_query_from_params(
        request.query_params, terms, broker.settings, fmt, required=False, sys_attrs=sys_attrs
    )
    entity = await uc.retrieve_temporal(
        broker, caller_of(request), request.path_params["entityId"], query
    )
    return _render(request, [entity], terms, fmt, query, accept, single=True)


async def query_temporal(request: Request) -> Response:
    broker = broker_of(request)
    accept = negotiate(request)
    terms = await request_terms(request)
    params = request.query_params
    fmt, sys_attrs = temporal_format(params)
    temporal = temporal_query_from_params(
        params, terms, broker.settings, fmt, required=True, sys_attrs=sys_attrs
    )
    query = entity_query_from_params(params, terms, broker.settings)
    return await _query_response(request, query, temporal, terms, fmt, accept)


async def _query_response(
    request: Request,
    query: EntityQuery,
    temporal: TemporalQuery,
    terms: TermMap,
    fmt: TemporalFormat,
    accept: str,
) -> Response:
    """Run a temporal query and render its page (count header, next/prev links)."""
    page, more = await uc.query_temporal(broker_of(request), caller_of(request), query, temporal)
    headers = {}
    if page.total is not None:
        headers["NGSILD-Results-Count"] = str(page.total)
    links = _page_links(request, query.offset, query.limit, more)
    return _render(
        request,
        page.entities,
        terms,
        fmt,
        temporal,
        accept,
        single=False,
        headers=headers,
        links=links,
    )


async def query_temporal_post(request: Request) -> Response:
    broker = broker_of(request)
    accept = negotiate(request)
    body = await read_json(request)
    terms = await request_terms(request, body, has_body=True)
    body = strip_context(body)
    params = request.query_params
    fmt, sys_attrs = temporal_format(params)
    raw_temporal = body.get("temporalQ") if isinstance(body, dict) else None
    if not isinstance(raw_temporal, dict):
        raise BadRequestData("A temporal query body needs a temporalQ object")
    merged = {**raw_temporal}
    if isinstance(body.get("attrs"), list):
        merged["attrs"] = ",".join(body["attrs"])
    temporal = temporal_query_from_params(
        merged, terms, broker.settings, fmt, required=True, sys_attrs=sys_attrs
    )
    query = entity_query_from_body(body, params, terms, broker.settings)
    return await _query_response(request, query, temporal, terms, fmt, accept)


async def create_temporal(request: Request) -> Response:
    body, terms = await _body_and_terms(request)
    created = await uc.create_temporal(broker_of(request), caller_of(request), body, terms)
    if created:
        return no_content({"Location": f"{TEMPORAL_PATH}/{body['id']}"}, status=201)
    return no_content()


async def append_temporal_attrs(request: Request) -> Response:
    body, terms = await _body_and_terms(request)
    await uc.append_temporal_attrs(
        broker_of(request), caller_of(request), request.path_params["entityId"], body, terms
    )
    return no_content()


async def delete_temporal_entity(request: Request) -> Response:
    await uc.delete_temporal_entity(
        broker_of(request), caller_of(request), request.path_params["entityId"]
    )
    return no_content()


async def delete_temporal_attribute(request: Request) -> Response:
    terms = await request_terms(request)
    params = request.query_params
    await uc.delete_temporal_attribute(
        broker_of(request),
        caller_of(request),
        request.path_params["entityId"],
        request.path_params["attrId"],
        terms,
        dataset_id=params.get("datasetId"),
        delete_all=parse_bool(params.get("deleteAll"), "deleteAll"),
    )
    return no_content()


async def update_temporal_instance(request: Request) -> Response:
    body, terms = await _body_and_terms(request)
    await uc.update_temporal_instance(
        broker_of(request),
        caller_of(request),
        request.path_params["entityId"],
        request.path_params["attrId"],
        request.path_params["instanceId"],
        body,
        terms,
    )
    return no_content()


async def delete_temporal_instance(request: Request) -> Response:
    terms = await request_terms(request)
    await uc.delete_temporal_instance(
        broker_of(request),
        caller_of(request),
        request.path_params["entityId"],
        request.path_params["attrId"],
        request.path_params["instanceId"],
        terms,
    )
    return no_content()
