"""Resolving @contexts into term maps (cached), fetching remote ones, and /jsonldContexts.

The core context and its every version URL resolve to built-in copies; contexts
stored in the broker (hosted, cached or preloaded from files for air-gapped
sites) are used before the network; remote fetches have a timeout and a size
limit, and their failures answer ``LdContextNotAvailable``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from urbanstack.ngsild.errors import (
    BadRequestData,
    InvalidRequest,
    LdContextNotAvailable,
    OperationNotSupported,
    ResourceNotFound,
)
from urbanstack.ngsild.jsonld import (
    CORE_CONTEXT_URL,
    JsonLdContext,
    TermMap,
    build_term_map,
    context_cache_key,
    core_context_document,
    core_document_for,
    core_term_map,
    is_core_context_url,
)
from urbanstack.ngsild.model import now_timestamp
from urbanstack.store.base import ContextRecord, EntityStore

LOGGER = logging.getLogger(__name__)
HOSTED_PATH = "/ngsi-ld/v1/jsonldContexts/"
CORE_INFO = {"URL": CORE_CONTEXT_URL, "localId": "core", "kind": "Cached"}
Fetcher = Callable[[str], Awaitable[Any]]


class HttpContextFetcher:
    """Fetches a context document over HTTP(S) with a timeout and a size limit."""

    def __init__(self, timeout: float = 5.0, max_bytes: int = 1024 * 1024) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, url: str) -> Any:
        if not url.startswith(("http://", "https://")):
            raise LdContextNotAvailable(f"Cannot retrieve @context {url!r}: not an http(s) URL")
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
        headers = {"Accept": "application/ld+json, application/json;q=0.9, text/plain;q=0.5"}
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("GET", url, headers=headers) as response:
                    if response.status_code != 200:
                        raise LdContextNotAvailable(
                            f"@context {url!r} answered HTTP {response.status_code}"
                        )
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise LdContextNotAvailable(
                                f"@context {url!r} is larger than {self.max_bytes} bytes"
                            )
                        chunks.append(chunk)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            raise LdContextNotAvailable(
                f"@context {url!r} could not be retrieved: {exc!r}"
            ) from None
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            raise LdContextNotAvailable(f"@context {url!r} is not valid JSON") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _nested_urls(document: Any) -> list[str]:
    found: list[str] = []
    ctx = document.get("@context") if isinstance(document, dict) else None
    for item in ctx if isinstance(ctx, list) else [ctx]:
        if isinstance(item, str) and not is_core_context_url(item):
            found.append(item)
    return found


class ContextService:
    """Turns request contexts into cached :class:`TermMap` objects."""

    def __init__(self, store: EntityStore, fetcher: Fetcher, cache_size: int = 256) -> None:
        self.store = store
        self.fetcher = fetcher
        self.cache_size = cache_size
        self._maps: OrderedDict[str, TermMap] = OrderedDict()
        self._documents: dict[str, Any] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}

    def invalidate(self) -> None:
        """Forget processed contexts (after a context was added, replaced or deleted)."""
        self._maps.clear()
        self._documents.clear()

    async def term_map(self, context: JsonLdContext) -> TermMap:
        """The term map for ``context`` (None: the core context alone)."""
        if (
            context is None
            or context == []
            or (isinstance(context, str) and is_core_context_url(context))
        ):
            if isinstance(context, str):
                return TermMap(**{**core_term_map().__dict__, "urls": (context,)})
            return core_term_map()
        key = context_cache_key(context)
        cached = self._maps.get(key)
        if cached is not None:
            self._maps.move_to_end(key)
            return cached
        documents: dict[str, Any] = {}
        pending = [
            item
            for item in (context if isinstance(context, list) else [context])
            if isinstance(item, str) and not is_core_context_url(item)
        ]
        while pending:
            url = pending.pop()
            if url in documents:
                continue
            if len(documents) > 32:
                raise BadRequestData("The @context refers to too many remote contexts")
            documents[url] = await self.document(url)
            pending += _nested_urls(documents[url])
        term_map = build_term_map(context, documents)
        self._maps[key] = term_map
        if len(self._maps) > self.cache_size:
            self._maps.popitem(last=False)
        return term_map

    async def document(self, url: str) -> Any:
        """The context document at ``url``: built-in, stored, or fetched and then cached."""
        if is_core_context_url(url):
            return core_document_for(url)
        doc = self._documents.get(url)
        if doc is not None:
            return doc
        record = await self.store.get_context(url)
        if record is None and HOSTED_PATH in url:
            record = await self.store.get_context(url.rsplit(HOSTED_PATH, 1)[1])
        if record is not None:
            doc = record.body
            await self.store.touch_context(record.id, now_timestamp())
        else:
            doc = await self._fetch_once(url)
            if not isinstance(doc, dict) or "@context" not in doc:
                raise LdContextNotAvailable(f"The document at {url!r} holds no @context")
            await self.store.put_context(
                ContextRecord(
                    id=uuid.uuid4().hex,
                    url=url,
                    kind="Cached",
                    body=doc,
                    created_at=now_timestamp(),
                    last_used=now_timestamp(),
                    hits=1,
                )
            )
        self._documents[url] = doc
        return doc

    async def _fetch_once(self, url: str) -> Any:
        running = self._inflight.get(url)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            doc = await self.fetcher(url)
            future.set_result(doc)
            return doc
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            del self._inflight[url]


# --- /jsonldContexts use cases


def _millis(stamp: str) -> str:
    return stamp[:23] + "Z" if len(stamp) == 27 and stamp.endswith("Z") else stamp


def context_info(record: ContextRecord) -> dict[str, Any]:
    """The details of one stored context, as ``details=true`` lists them."""
    info: dict[str, Any] = {
        "URL": record.url,
        "localId": record.id,
        "kind": record.kind,
        "createdAt": _millis(record.created_at),
    }
    if record.kind != "Hosted":
        info["lastUsage"] = _millis(record.last_used) if record.last_used else None
        info["numberOfHits"] = record.hits
    return info


async def add_context(service: ContextService, body: Any, base_url: str) -> ContextRecord:
    """Host a client-supplied context (POST /jsonldContexts); returns its record."""
    if not isinstance(body, dict) or "@context" not in body:
        raise BadRequestData("The body must be a JSON object with an @context member")
    ctx = body["@context"]
    if not isinstance(ctx, dict | list):
        raise BadRequestData("@context must be an object or a list")
    await service.term_map(ctx)  # refuse contexts that do not process
    context_id = uuid.uuid4().hex
    record = ContextRecord(
        id=context_id,
        url=f"{base_url.rstrip('/')}{HOSTED_PATH}{context_id}",
        kind="Hosted",
        body={"@context": ctx},
        created_at=now_timestamp(),
    )
    await service.store.put_context(record)
    service.invalidate()
    return record


async def preload_context(service: ContextService, url: str, document: Any) -> ContextRecord:
    """Store a context for ``url`` from a file, so it is never fetched (air-gapped sites)."""
    if not isinstance(document, dict) or "@context" not in document:
        raise BadRequestData("The file must hold a JSON object with an @context member")
    existing = await service.store.get_context(url)
    record = ContextRecord(
        id=existing.id if existing else uuid.uuid4().hex,
        url=url,
        kind="Cached",
        body=document,
        created_at=now_timestamp(),
    )
    await service.store.put_context(record)
    service.invalidate()
    return record


async def list_contexts(service: ContextService, *, details: bool, kind: str | None) -> list[Any]:
    """GET /jsonldContexts: URLs (or details) of the core and every stored context."""
    if kind is not None and kind not in ("Hosted", "Cached", "ImplicitlyCreated"):
        raise BadRequestData("kind must be Hosted, Cached or ImplicitlyCreated")
    records = [r for r in await service.store.list_contexts() if kind in (None, r.kind)]
    core = dict(CORE_INFO)
    if details:
        out: list[Any] = [core] if kind in (None, "Cached") else []
        return out + [context_info(r) for r in records]
    urls = [CORE_CONTEXT_URL] if kind in (None, "Cached") else []
    return urls + [r.url for r in records]


async def get_context(service: ContextService, context_id: str, *, details: bool) -> Any:
    """GET /jsonldContexts/{id}: the document (or its details)."""
    if context_id == "core":
        doc = core_context_document()
        return dict(CORE_INFO) if details else doc
    record = await service.store.get_context(context_id)
    if record is None:
        raise ResourceNotFound(f"No @context with id {context_id!r}")
    return context_info(record) if details else record.body


async def delete_context(service: ContextService, context_id: str, *, reload: bool) -> None:
    """DELETE /jsonldContexts/{id}: remove it, or with ``reload`` fetch a cached one again."""
    if context_id == "core":
        raise OperationNotSupported("The core @context cannot be deleted")
    record = await service.store.get_context(context_id)
    if record is None:
        raise ResourceNotFound(f"No @context with id {context_id!r}")
    if reload:
        if record.kind == "Hosted":
            raise InvalidRequest("reload applies to cached contexts, not hosted ones")
        doc = await service.fetcher(record.url)
        record.body = doc
        await service.store.put_context(record)
    else:
        await service.store.delete_context(context_id)
    service.invalidate()
