"""Handlers for /subscriptions: parse, call the use case, render."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from urbanstack.api.entities import _body_and_terms, _page_links
from urbanstack.api.http import (
    broker_of,
    caller_of,
    json_response,
    negotiate,
    no_content,
    request_terms,
)
from urbanstack.api.params import parse_bool, parse_int
from urbanstack.broker import subscriptions as uc
from urbanstack.ngsild.subscription_render import render_subscription

SUBSCRIPTIONS_PATH = "/ngsi-ld/v1/subscriptions"


async def create_subscription(request: Request) -> Response:
    body, terms = await _body_and_terms(request)
    sub_id = await uc.create_subscription(broker_of(request), caller_of(request), body, terms)
    return no_content({"Location": f"{SUBSCRIPTIONS_PATH}/{sub_id}"}, status=201)


async def list_subscriptions(request: Request) -> Response:
    broker = broker_of(request)
    accept = negotiate(request)
    terms = await request_terms(request)
    params = request.query_params
    limit = parse_int(params.get("limit"), "limit", broker.settings.default_limit)
    offset = parse_int(params.get("offset"), "offset", 0)
    views, total = await uc.list_subscriptions(broker, caller_of(request), limit, offset)
    headers = {}
    if parse_bool(params.get("count"), "count"):
        headers["NGSILD-Results-Count"] = str(total)
    links = _page_links(request, offset, limit, offset + len(views) < total)
    data = [render_subscription(v.subscription, terms, v.status) for v in views]
    return json_response(data, terms=terms, accept=accept, headers=headers, links=links)


async def retrieve_subscription(request: Request) -> Response:
    accept = negotiate(request)
    terms = await request_terms(request)
    view = await uc.retrieve_subscription(
        broker_of(request), caller_of(request), request.path_params["subscriptionId"]
    )
    data = render_subscription(view.subscription, terms, view.status)
    return json_response(data, terms=terms, accept=accept)


async def update_subscription(request: Request) -> Response:
    body, terms = await _body_and_terms(request)
    await uc.update_subscription(
        broker_of(request),
        caller_of(request),
        request.path_params["subscriptionId"],
        body,
        terms,
    )
    return no_content()


async def delete_subscription(request: Request) -> Response:
    await uc.delete_subscription(
        broker_of(request), caller_of(request), request.path_params["subscriptionId"]
    )
    return no_content()
