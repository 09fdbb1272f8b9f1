"""The ASGI application: routes, error rendering and the store's lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from urbanstack.api import batch, contexts, discovery, entities, system
from urbanstack.broker.contexts import ContextService, Fetcher, HttpContextFetcher
from urbanstack.broker.entities import Broker
from urbanstack.ngsild.errors import (
    InternalError,
    MethodNotAllowed,
    NgsiLdError,
    ResourceNotFound,
)
from urbanstack.settings import Settings
from urbanstack.store import store_from_settings
from urbanstack.store.base import EntityStore

LOGGER = logging.getLogger(__name__)
PROBLEM = "application/json"


def problem_response(error: NgsiLdError) -> Response:
    """Render any NGSI-LD error as ProblemDetails."""
    return Response(orjson.dumps(error.to_problem()), status_code=error.status, media_type=PROBLEM)


async def _ngsi_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NgsiLdError)
    if exc.status >= 500:
        LOGGER.warning("%s %s: %s", request.method, request.url.path, exc.detail)
    return problem_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return problem_response(ResourceNotFound(f"No resource at {request.url.path}"))
    if exc.status_code == 405:
        return problem_response(
            MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        )
    error = NgsiLdError(str(exc.detail))
    error.status = exc.status_code
    return problem_response(error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    LOGGER.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(InternalError("An unexpected error occurred; see the server log"))


def ngsi_routes() -> list[Route]:
    """Every NGSI-LD route, relative to /ngsi-ld/v1."""
    return [
        Route("/entities", entities.query_entities, methods=["GET"]),
        Route("/entities", entities.create_entity, methods=["POST"]),
        Route("/entities/{entityId}", entities.retrieve_entity, methods=["GET"]),
        Route("/entities/{entityId}", entities.delete_entity, methods=["DELETE"]),
        Route("/entities/{entityId}", entities.replace_entity, methods=["PUT"]),
        Route("/entities/{entityId}", entities.merge_entity, methods=["PATCH"]),
        Route("/entities/{entityId}/attrs", entities.append_attrs, methods=["POST"]),
        Route("/entities/{entityId}/attrs", entities.update_attrs, methods=["PATCH"]),
        Route("/entities/{entityId}/attrs/{attrId}", entities.update_attr, methods=["PATCH"]),
        Route("/entities/{entityId}/attrs/{attrId}", entities.delete_attr, methods=["DELETE"]),
        Route("/entityOperations/create", batch.batch_create, methods=["POST"]),
        Route("/entityOperations/upsert", batch.batch_upsert, methods=["POST"]),
        Route("/entityOperations/update", batch.batch_update, methods=["POST"]),
        Route("/entityOperations/delete", batch.batch_delete, methods=["POST"]),
        Route("/entityOperations/merge", batch.batch_merge, methods=["POST"]),
        Route("/entityOperations/query", batch.batch_query, methods=["POST"]),
        Route("/types", discovery.list_types, methods=["GET"]),
        Route("/types/{type}", discovery.retrieve_type, methods=["GET"]),
        Route("/attributes", discovery.list_attributes, methods=["GET"]),
        Route("/attributes/{attrId}", discovery.retrieve_attribute, methods=["GET"]),
        Route("/jsonldContexts", contexts.list_contexts, methods=["GET"]),
        Route("/jsonldContexts", contexts.add_context, methods=["POST"]),
        Route("/jsonldContexts/{contextId}", contexts.serve_context, methods=["GET"]),
        Route("/jsonldContexts/{contextId}", contexts.delete_context, methods=["DELETE"]),
    ]


def create_app(
    settings: Settings | None = None,
    store: EntityStore | None = None,
    fetcher: Fetcher | None = None,
) -> Starlette:
    """Build the platform's ASGI app; the store is opened and closed by the lifespan.

    ``store`` defaults to the one named by ``settings.store``; ``fetcher`` (how remote
    @contexts are retrieved) defaults to HTTP with the configured timeout and size limit.
    """
    settings = settings or Settings.from_env()
    if store is None:
        store = store_from_settings(settings)
    http_fetcher = fetcher or HttpContextFetcher(
        settings.context_fetch_timeout, settings.context_max_bytes
    )
    broker = Broker(
        store=store,
        contexts=ContextService(store, http_fetcher, settings.context_cache_size),
        settings=settings,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        LOGGER.info("store opened: %s", settings.store)
        try:
            yield
        finally:
            if isinstance(http_fetcher, HttpContextFetcher):
                await http_fetcher.close()
            await store.close()
            LOGGER.info("store closed")

    app = Starlette(
        routes=[
            Mount("/ngsi-ld/v1", routes=ngsi_routes()),
            Route("/health", system.health, methods=["GET"]),
            Route("/version", system.version, methods=["GET"]),
        ],
        exception_handlers={
            NgsiLdError: _ngsi_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.broker = broker
    return app
