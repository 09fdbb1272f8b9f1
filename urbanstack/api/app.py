"""The ASGI application: routes, error rendering and the store's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from urbanstack.api import (
    batch,
    contexts,
    discovery,
    entities,
    iot,
    stream,
    subscriptions,
    system,
    temporal,
)
from urbanstack.broker import temporal as temporal_uc
from urbanstack.broker.announcements import AnnouncementHandler
from urbanstack.broker.contexts import ContextService, Fetcher, HttpContextFetcher
from urbanstack.broker.entities import Broker
from urbanstack.ingest.agent import IngestAgent
from urbanstack.ingest.registry import DeviceRegistry
from urbanstack.ngsild.errors import (
    InternalError,
    MethodNotAllowed,
    NgsiLdError,
    ResourceNotFound,
)
from urbanstack.ngsild.representation import render_default_view, update_default_view
from urbanstack.notify.worker import DeliveryWorker
from urbanstack.settings import Settings
from urbanstack.store import store_from_settings
from urbanstack.store.base import EntityStore
from urbanstack.web import web_routes

LOGGER = logging.getLogger(__name__)
PROBLEM = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


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
        response = problem_response(
            MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        )
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    error = NgsiLdError(str(exc.detail))
    error.status = exc.status_code
    return problem_response(error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    LOGGER.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(InternalError("An unexpected error occurred; see the server log"))


def _route(path: str, **handlers: Endpoint) -> Route:
    """One route per path, dispatching on the method, so a 405 can list every allowed one."""

    async def dispatch(request: Request) -> Response:
        # Starlette answers HEAD wherever GET is allowed; the server drops the body
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, dispatch, methods=list(handlers))


def ngsi_routes(prefix: str = "/ngsi-ld/v1") -> list[Route]:
    """Every NGSI-LD route, under ``prefix`` (flat routes: one matching step per request)."""
    ops = "/entityOperations/"

    def route(path: str, **handlers: Endpoint) -> Route:
        return _route(prefix + path, **handlers)

    routes = [
        route("/entities", GET=entities.query_entities, POST=entities.create_entity),
        route(
            "/entities/{entityId}",
            GET=entities.retrieve_entity,
            DELETE=entities.delete_entity,
            PUT=entities.replace_entity,
            PATCH=entities.merge_entity,
        ),
        route(
            "/entities/{entityId}/attrs", POST=entities.append_attrs, PATCH=entities.update_attrs
        ),
        route(
            "/entities/{entityId}/attrs/{attrId}",
            PATCH=entities.update_attr,
            DELETE=entities.delete_attr,
        ),
        route(ops + "create", POST=batch.batch_create),
        route(ops + "upsert", POST=batch.batch_upsert),
        route(ops + "update", POST=batch.batch_update),
        route(ops + "delete", POST=batch.batch_delete),
        route(ops + "merge", POST=batch.batch_merge),
        route(ops + "query", POST=batch.batch_query),
        route("/temporal/entities", GET=temporal.query_temporal, POST=temporal.create_temporal),
        route(
            "/temporal/entities/{entityId}",
            GET=temporal.retrieve_temporal,
            DELETE=temporal.delete_temporal_entity,
        ),
        route("/temporal/entities/{entityId}/attrs", POST=temporal.append_temporal_attrs),
        route(
            "/temporal/entities/{entityId}/attrs/{attrId}",
            DELETE=temporal.delete_temporal_attribute,
        ),
        route(
            "/temporal/entities/{entityId}/attrs/{attrId}/{instanceId}",
            PATCH=temporal.update_temporal_instance,
            DELETE=temporal.delete_temporal_instance,
        ),
        route("/temporal/entityOperations/query", POST=temporal.query_temporal_post),
        route(
            "/subscriptions",
            GET=subscriptions.list_subscriptions,
            POST=subscriptions.create_subscription,
        ),
        route(
            "/subscriptions/{subscriptionId}",
            GET=subscriptions.retrieve_subscription,
            PATCH=subscriptions.update_subscription,
            DELETE=subscriptions.delete_subscription,
        ),
        route("/types", GET=discovery.list_types),
        route("/types/{type:path}", GET=discovery.retrieve_type),
        route("/attributes", GET=discovery.list_attributes),
        route("/attributes/{attrId:path}", GET=discovery.retrieve_attribute),
        route("/jsonldContexts", GET=contexts.list_contexts, POST=contexts.add_context),
        route(
            "/jsonldContexts/{contextId}",
            GET=contexts.serve_context,
            DELETE=contexts.delete_context,
        ),
    ]
    return routes


def iot_routes() -> list[Route]:
    """The IoT agent's routes: provisioning, HTTP southbound, dead letters."""
    return [
        _route(
            "/iot/services",
            GET=iot.list_groups,
            POST=iot.create_groups,
            PUT=iot.update_group,
            DELETE=iot.delete_group,
        ),
        _route("/iot/devices", GET=iot.list_devices, POST=iot.create_devices),
        _route(
            "/iot/devices/{deviceId}",
            GET=iot.retrieve_device,
            PUT=iot.update_device,
            DELETE=iot.delete_device,
        ),
        _route("/iot/json", POST=iot.southbound_json),
        _route("/iot/deadletters", GET=iot.dead_letters),
    ]


def _mqtt_client_id(settings: Settings) -> str:
    if settings.mqtt_client_id:
        return settings.mqtt_client_id
    return f"urbanstack-{socket.gethostname()}-{settings.port}"


RETENTION_INTERVAL_S = 3600.0


async def _retention_loop(broker: Broker) -> None:
    """Prune expired history at start-up, then every hour, until cancelled."""
    while True:
        try:
            deleted = await temporal_uc.prune_expired_history(broker)
            if deleted:
                LOGGER.info("history retention: %d instances deleted", deleted)
        except Exception:
            LOGGER.exception("history retention failed; retrying in an hour")
        await asyncio.sleep(RETENTION_INTERVAL_S)


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
    store.view_renderer = render_default_view
    store.view_updater = update_default_view
    http_fetcher = fetcher or HttpContextFetcher(
        settings.context_fetch_timeout, settings.context_max_bytes
    )
    broker = Broker(
        store=store,
        contexts=ContextService(store, http_fetcher, settings.context_cache_size),
        settings=settings,
    )

    worker = DeliveryWorker(
        broker,
        batch=settings.notification_batch,
        retry_base=settings.notification_retry_base,
        retry_max=settings.notification_retry_max,
        ca_file=settings.notification_ca_file or None,
    )
    agent = IngestAgent(
        broker,
        DeviceRegistry(store),
        dead_letter_keep=settings.iot_dead_letter_keep,
        offline_after_s=settings.iot_offline_after,
    )
    southbound = None
    if settings.mqtt:
        from urbanstack.ingest.mqtt import MqttSouthbound

        southbound = MqttSouthbound(
            agent,
            settings.mqtt,
            client_id=_mqtt_client_id(settings),
            shared_group=settings.mqtt_shared_group,
        )
    store.change_observer = broker.subscriptions.observe
    store.outbox_listener = worker.wake
    store.commit_listener = broker.stream.publish
    store.announcement_listener = AnnouncementHandler(
        broker, agent.registry.forget_key, agent.registry.forget_all
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        LOGGER.info("store opened: %s", settings.store)
        await broker.subscriptions.load(store)
        await worker.start()
        await agent.start()
        mqtt_task = None
        if southbound is not None:
            from urbanstack.ingest.mqtt import run_when_elected

            mqtt_task = asyncio.create_task(run_when_elected(southbound, store), name="mqtt")
        retention = None
        if settings.history_retention_days > 0:
            retention = asyncio.create_task(_retention_loop(broker), name="history-retention")
        try:
            yield
        finally:
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
            if mqtt_task is not None:
                mqtt_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await mqtt_task
            if southbound is not None:
                await southbound.stop()
            await agent.stop()
            await worker.stop()
            if isinstance(http_fetcher, HttpContextFetcher):
                await http_fetcher.close()
            await store.close()
            LOGGER.info("store closed")

    app = Starlette(
        routes=[
            *ngsi_routes(),
            *iot_routes(),
            _route("/api/stream", GET=stream.stream_changes),
            _route("/health", GET=system.health),
            _route("/version", GET=system.version),
            # the operations dashboard: / and /web/... (static files, no business logic)
            *web_routes(settings),
        ],
        exception_handlers={
            NgsiLdError: _ngsi_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.broker = broker
    app.state.worker = worker
    app.state.ingest = agent
    app.state.southbound = southbound
    return app


def create_worker_app() -> Starlette:
    """The app of one ``serve --workers N`` process (uvicorn's factory), the process tuned
    as ``serve`` tunes its own (see :func:`urbanstack.runtime.tune_process`)."""
    from urbanstack.runtime import tune_process

    settings = Settings.from_env()
    app = create_app(settings)
    tune_process(settings)
    return app
