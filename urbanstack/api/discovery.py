"""Handlers for /types and /attributes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from urbanstack.api.http import broker_of, caller_of, json_response, negotiate, request_terms
from urbanstack.api.params import parse_bool
from urbanstack.broker import discovery as uc


async def list_types(request: Request) -> Response:
    accept = negotiate(request)
    terms = await request_terms(request)
    details = parse_bool(request.query_params.get("details"), "details")
    data = await uc.list_types(broker_of(request), caller_of(request), terms, details=details)
    return json_response(data, terms=terms, accept=accept)


async def retrieve_type(request: Request) -> Response:
    accept = negotiate(request)
    terms = await request_terms(request)
    data = await uc.retrieve_type(
        broker_of(request), caller_of(request), terms, request.path_params["type"]
    )
    return json_response(data, terms=terms, accept=accept)


async def list_attributes(request: Request) -> Response:
    accept = negotiate(request)
    terms = await request_terms(request)
    details = parse_bool(request.query_params.get("details"), "details")
    data = await uc.list_attributes(broker_of(request), caller_of(request), terms, details=details)
    return json_response(data, terms=terms, accept=accept)


async def retrieve_attribute(request: Request) -> Response:
    accept = negotiate(request)
    terms = await request_terms(request)
    data = await uc.retrieve_attribute(
        broker_of(request), caller_of(request), terms, request.path_params["attrId"]
    )
    return json_response(data, terms=terms, accept=accept)
