"""Handlers for /entities and its attributes: parse, call the use case, render."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from urbanstack.api.http import (
    GEO_JSON,
    JSON,
    MERGE_PATCH,
    broker_of,
    caller_of,
    json_response,
    negotiate,
    no_content,
    query_of,
    raw_json_response,
    read_json,
    request_terms,
    strip_context,
    view_response,
)
from urbanstack.api.http import JSON_LD as LD
from urbanstack.api.params import entity_query_from_params, parse_bool, render_options
from urbanstack.broker import entities as uc
from urbanstack.broker.entities import UpdateResult
from urbanstack.ngsild.jsonld import TermMap, core_term_map
from urbanstack.ngsild.representation import (
    DEFAULT_OPTIONS,
    RenderOptions,
    render_entity,
    render_feature,
    render_feature_collection,
)

ENTITIES_PATH = "/ngsi-ld/v1/entities"


async def _body_and_terms(
    request: Request, allowed: tuple[str, ...] = (JSON, LD)
) -> tuple[Any, TermMap]:
    body = await read_json(request, allowed=allowed)
    terms = await request_terms(request, body, has_body=True)
    return strip_context(body), terms


def update_result_response(result: UpdateResult, terms: TermMap) -> Response:
    """204 when everything was updated, else 207 with the UpdateResult."""
    if not result.not_updated:
        return no_content()
    body = {
        "updated": [terms.compact(a) for a in result.updated],
        "notUpdated": [
            {"attributeName": terms.compact(a), "reason": reason}
            for a, reason in result.not_updated
        ],
    }
    return json_response(body, status=207)


def _default_view_wanted(accept: str, terms: TermMap, opts: RenderOptions) -> bool:
    """True when the answer is exactly the store's default view (JSON, core context, normalized)."""
    return accept == JSON and terms is core_term_map() and opts == DEFAULT_OPTIONS


async def create_entity(request: Request) -> Response:
    body, terms = await _body_and_terms(request)
    entity_id = await uc.create_entity(broker_of(request), caller_of(request), body, terms)
    return no_content({"Location": f"{ENTITIES_PATH}/{entity_id}"}, status=201)


async def query_entities(request: Request) -> Response:
    broker = broker_of(request)
    accept = negotiate(request, geo=True)
    terms = await request_terms(request)
    params = request.query_params
    query = entity_query_from_params(params, terms, broker.settings)
    opts = render_options(params, terms)
    # one row more than the page tells whether a next page exists
    page = await uc.query_entities(
        broker, caller_of(request), query, views=_default_view_wanted(accept, terms, opts)
    )
    entities = page.entities
    headers: dict[str, str] = {}
    if page.total is not None:
        headers["NGSILD-Results-Count"] = str(page.total)
    links = _page_links(request, query.offset, query.limit, page.more)
    if page.views is not None:
        body = b"[" + b",".join(page.views) + b"]"
        return raw_json_response(body, terms=terms, headers=headers, links=links)
    data: Any
    if accept == GEO_JSON:
        data = render_feature_collection(entities, terms, opts)
    else:
        data = [render_entity(e, terms, opts) for e in entities]
    return json_response(data, terms=terms, accept=accept, headers=headers, links=links)


def _page_links(request: Request, offset: int, limit: int, more: bool) -> list[str]:
    links: list[str] = []
    params = dict(request.query_params)

    def url(new_offset: int) -> str:
        return f"{request.url.path}?{urlencode({**params, 'offset': new_offset, 'limit': limit})}"

    if offset > 0 and limit > 0:
        links.append(f'<{url(max(offset - limit, 0))}>; rel="prev"; type="{LD}"')
    if more:
        links.append(f'<{url(offset + limit)}>; rel="next"; type="{LD}"')
    return links


async def retrieve_entity(request: Request) -> Response:
    broker = broker_of(request)
    accept = negotiate(request, geo=True)
    terms = await request_terms(request)
    opts = render_options(query_of(request), terms)
    entity_id = request.path_params["entityId"]
    if _default_view_wanted(accept, terms, opts):
        view = await uc.retrieve_entity_view(broker, caller_of(request), entity_id)
        return view_response(view, terms)
    entity = await uc.retrieve_entity(broker, caller_of(request), entity_id)
    if accept == GEO_JSON:
        return json_response(render_feature(entity, terms, opts), terms=terms, accept=accept)
    return json_response(render_entity(entity, terms, opts), terms=terms, accept=accept)


async def delete_entity(request: Request) -> Response:
    await uc.delete_entity(broker_of(request), caller_of(request), request.path_params["entityId"])
    return no_content()


async def replace_entity(request: Request) -> Response:
    body, terms = await _body_and_terms(request)
    await uc.replace_entity(
        broker_of(request), caller_of(request), request.path_params["entityId"], body, terms
    )
    return no_content()


async def merge_entity(request: Request) -> Response:
    body, terms = await _body_and_terms(request, (JSON, LD, MERGE_PATCH))
    await uc.merge_entity(
        broker_of(request), caller_of(request), request.path_params["entityId"], body, terms
    )
    return no_content()


async def append_attrs(request: Request) -> Response:
    body, terms = await _body_and_terms(request)
    options = request.query_params.get("options", "")
    result = await uc.append_attrs(
        broker_of(request),
        caller_of(request),
        request.path_params["entityId"],
        body,
        terms,
        overwrite="noOverwrite" not in options.split(","),
    )
    return update_result_response(result, terms)


async def update_attrs(request: Request) -> Response:
    body, terms = await _body_and_terms(request, (JSON, LD, MERGE_PATCH))
    result = await uc.update_attrs(
        broker_of(request), caller_of(request), request.path_params["entityId"], body, terms
    )
    return update_result_response(result, terms)


async def update_attr(request: Request) -> Response:
    body, terms = await _body_and_terms(request, (JSON, LD, MERGE_PATCH))
    await uc.update_attr(
        broker_of(request),
        caller_of(request),
        request.path_params["entityId"],
        request.path_params["attrId"],
        body,
        terms,
    )
    return no_content()


async def delete_attr(request: Request) -> Response:
    terms = await request_terms(request)
    params = request.query_params
    await uc.delete_attr(
        broker_of(request),
        caller_of(request),
        request.path_params["entityId"],
        request.path_params["attrId"],
        terms,
        dataset_id=params.get("datasetId"),
        delete_all=parse_bool(params.get("deleteAll"), "deleteAll"),
    )
    return no_content()
