"""HTTP plumbing shared by the handlers: bodies, media types, @context headers, responses."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from urbanstack.broker.caller import Caller
from urbanstack.broker.entities import Broker
from urbanstack.ngsild.errors import (
    BadRequestData,
    InvalidRequest,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from urbanstack.ngsild.jsonld import (
    CONTEXT_REL,
    JsonLdContext,
    TermMap,
    context_link,
    context_value,
)

JSON = "application/json"
JSON_LD = "application/ld+json"
GEO_JSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def broker_of(request: Request) -> Broker:
    """The Broker the application was built with."""
    return request.app.state.broker


def caller_of(request: Request, *, query_tenant: bool = False) -> Caller:
    """The Caller for this request: its tenant (NGSILD-Tenant, or with ``query_tenant`` the
    ``tenant`` query parameter when the header is absent) and, later, identity."""
    tenant = request.headers.get("ngsild-tenant") or None
    if tenant is None and query_tenant:
        tenant = request.query_params.get("tenant") or None
    return Caller(tenant=tenant)


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower-cased."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json(request: Request, *, allowed: tuple[str, ...] = (JSON, JSON_LD)) -> Any:
    """The parsed JSON body, refusing wrong media types (415), size (413) and syntax (400)."""
    kind = media_type(request)
    if kind not in allowed:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not supported here; use {' or '.join(allowed)}"
        )
    limit = broker_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("The request has no body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}") from None


def link_context(request: Request) -> str | None:
    """The @context URL of a JSON-LD Link header, if the request has one."""
    header = request.headers.get("link")
    if not header:
        return None
    found = None
    for match in _LINK_RE.finditer(header):
        params = match.group(2)
        if CONTEXT_REL in params:
            if found is not None:
                raise BadRequestData("More than one JSON-LD context Link header")
            found = match.group(1).strip()
    return found


def body_context(request: Request, body: Any) -> JsonLdContext:
    """The @context of a request with a body, per the Content-Type rules of clause 6.3.5."""
    kind = media_type(request)
    in_body = _body_contexts(body)
    header = link_context(request)
    if kind == JSON_LD:
        if header is not None:
            raise BadRequestData(
                "application/ld+json requests carry the @context in the body, not a Link header"
            )
        if not in_body:
            raise BadRequestData("An application/ld+json body needs an @context member")
        return in_body[0]
    if in_body:
        raise BadRequestData("An application/json body must not hold @context: use a Link header")
    return header


def _body_contexts(body: Any) -> list[Any]:
    if isinstance(body, dict):
        return [body["@context"]] if "@context" in body else []
    if isinstance(body, list):
        found = [item["@context"] for item in body if isinstance(item, dict) and "@context" in item]
        return found
    return []


def strip_context(body: Any) -> Any:
    """The body without its @context members (already processed)."""
    if isinstance(body, dict) and "@context" in body:
        return {k: v for k, v in body.items() if k != "@context"}
    if isinstance(body, list):
        return [strip_context(item) for item in body]
    return body


async def request_terms(request: Request, body: Any = None, *, has_body: bool = False) -> TermMap:
    """The term map of the request's @context (Link header, or body for ld+json)."""
    context = body_context(request, body) if has_body else link_context(request)
    return await broker_of(request).contexts.term_map(context)


_PLAIN_ACCEPT = frozenset({"*/*", JSON, "application/*"})


def negotiate(request: Request, *, geo: bool = False) -> str:
    """The response media type from Accept: JSON (default), JSON-LD, or GeoJSON when allowed."""
    accept = request.headers.get("accept", "")
    if not accept or accept in _PLAIN_ACCEPT:
        return JSON
    offered = [JSON, JSON_LD, *([GEO_JSON] if geo else [])]
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        kind = pieces[0].lower()
        quality = 1.0
        for param in pieces[1:]:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if kind in ("*/*", "application/*"):
            candidate = JSON
        elif kind in offered:
            candidate = kind
        else:
            continue
        key = (quality, -position, candidate)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        raise NotAcceptable(f"Cannot answer with any of {accept!r}; offered: {', '.join(offered)}")
    return best[2]


def json_response(
    data: Any,
    *,
    status: int = 200,
    terms: TermMap | None = None,
    accept: str = JSON,
    headers: dict[str, str] | None = None,
    links: list[str] | None = None,
) -> Response:
    """Render ``data`` with the @context where the media type wants it."""
    headers = dict(headers or {})
    link_values = list(links or [])
    if terms is not None:
        if accept == JSON_LD:
            ctx = context_value(terms)
            if isinstance(data, dict):
                data = {"@context": ctx, **data}
            elif isinstance(data, list):
                data = [{"@context": ctx, **d} if isinstance(d, dict) else d for d in data]
        else:
            link_values.insert(0, context_link(terms))
    if link_values:
        headers["Link"] = ", ".join(link_values)
    return Response(orjson.dumps(data), status_code=status, media_type=accept, headers=headers)


def raw_json_response(
    body: bytes,
    *,
    terms: TermMap,
    headers: dict[str, str] | None = None,
    links: list[str] | None = None,
) -> Response:
    """An application/json answer whose body is already serialised (stored views)."""
    headers = dict(headers or {})
    headers["Link"] = ", ".join([context_link(terms), *(links or [])])
    return Response(body, media_type=JSON, headers=headers)


class ReadyJSONResponse(Response):
    """A 200 application/json answer whose body and header lines are ready: Starlette's
    header assembly is a tenth of a retrieval by id, the platform's most frequent request."""

    media_type = JSON

    def __init__(self, body: bytes, header_lines: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.body = body
        self.background = None
        self.raw_headers = [(b"content-length", str(len(body)).encode()), *header_lines]


@functools.lru_cache(maxsize=64)
def _view_header_lines(link: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", JSON.encode()), (b"link", link.encode("latin-1"))]


def view_response(view: bytes, terms: TermMap) -> Response:
    """A stored view as an application/json answer with its @context Link header."""
    return ReadyJSONResponse(view, _view_header_lines(context_link(terms)))


_NO_QUERY: Mapping[str, str] = MappingProxyType({})


def query_of(request: Request) -> Mapping[str, str]:
    """The query parameters; an empty query string is not parsed at all."""
    return request.query_params if request.scope.get("query_string") else _NO_QUERY


def no_content(headers: dict[str, str] | None = None, status: int = 204) -> Response:
    """An empty answer (204 by default)."""
    return Response(status_code=status, headers=headers)
