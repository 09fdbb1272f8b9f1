"""IoT agent endpoints: provisioning (``/iot/services``, ``/iot/devices``), the HTTP
southbound (``POST /iot/json``) and the dead-letter log, in the FIWARE IoT Agent's shapes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from urbanstack.api.http import JSON, json_response, no_content, read_json
from urbanstack.broker.caller import Caller
from urbanstack.ingest.agent import DEAD_LETTERS, DeviceMessage, IngestAgent
from urbanstack.ingest.registry import DeviceRegistry
from urbanstack.ngsild.errors import BadRequestData
from urbanstack.store.base import validate_tenant

DEFAULT_PAGE = 20
MAX_PAGE = 1000


def agent_of(request: Request) -> IngestAgent:
    """The application's ingestion agent."""
    return request.app.state.ingest


def registry_of(request: Request) -> DeviceRegistry:
    return agent_of(request).registry


def iot_caller(request: Request) -> Caller:
    """The tenant from NGSILD-Tenant or, as IoT Agent clients send it, fiware-service."""
    tenant = request.headers.get("ngsild-tenant") or request.headers.get("fiware-service")
    return Caller(tenant=validate_tenant(tenant or None))


def subservice_of(request: Request) -> str:
    return request.headers.get("fiware-servicepath") or "/"


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestData(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadRequestData(f"{name} must be between {low} and {high}")
    return value


def _page(request: Request) -> tuple[int, int]:
    limit = _int_param(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    return limit, _int_param(request, "offset", 0, 0, 2**31)


def _apikey_param(request: Request) -> str:
    apikey = request.query_params.get("apikey")
    if not apikey:
        raise BadRequestData("The apikey query parameter names the service group")
    return apikey


async def list_groups(request: Request) -> Response:
    limit, offset = _page(request)
    groups, total = await registry_of(request).list_groups(iot_caller(request), limit, offset)
    return json_response({"count": total, "services": groups})


async def create_groups(request: Request) -> Response:
    body = await read_json(request, allowed=(JSON,))
    await registry_of(request).create_groups(iot_caller(request), body, subservice_of(request))
    return no_content(status=201)


async def update_group(request: Request) -> Response:
    body = await read_json(request, allowed=(JSON,))
    await registry_of(request).update_group(iot_caller(request), _apikey_param(request), body)
    return no_content()


async def delete_group(request: Request) -> Response:
    await registry_of(request).delete_group(iot_caller(request), _apikey_param(request))
    return no_content()


async def list_devices(request: Request) -> Response:
    limit, offset = _page(request)
    devices, total = await registry_of(request).list_devices(iot_caller(request), limit, offset)
    return json_response({"count": total, "devices": devices})


async def create_devices(request: Request) -> Response:
    body = await read_json(request, allowed=(JSON,))
    await agent_of(request).provision_devices(iot_caller(request), body, subservice_of(request))
    return no_content(status=201)


async def retrieve_device(request: Request) -> Response:
    device_id = request.path_params["deviceId"]
    return json_response(await agent_of(request).describe_device(iot_caller(request), device_id))


async def update_device(request: Request) -> Response:
    body = await read_json(request, allowed=(JSON,))
    device_id = request.path_params["deviceId"]
    await registry_of(request).update_device(iot_caller(request), device_id, body)
    return no_content()


async def delete_device(request: Request) -> Response:
    device_id = request.path_params["deviceId"]
    await registry_of(request).delete_device(iot_caller(request), device_id)
    return no_content()


async def southbound_json(request: Request) -> Response:
    """POST /iot/json?k=<apikey>&i=<device_id>: measures as the MQTT topics carry them.

    200 with the accepted count and any rejected values; 400 when nothing in the
    message could be used; 404 for an unknown apikey or device."""
    apikey, device_id = request.query_params.get("k"), request.query_params.get("i")
    if not apikey or not device_id:
        raise BadRequestData("The k (apikey) and i (device id) query parameters are required")
    body = await request.body()
    if len(body) > agent_of(request).broker.settings.max_body_bytes:
        raise BadRequestData("The message is too large")
    outcome = await agent_of(request).ingest(DeviceMessage(apikey, device_id, body, "HTTP"))
    rejected = [
        {"attribute": r.attribute, "value": r.value, "reason": r.reason} for r in outcome.rejected
    ]
    if outcome.error is not None:
        raise outcome.error
    if not outcome.accepted and rejected:
        raise BadRequestData("No value of the message could be used", rejected=rejected)
    return json_response(
        {"entity": outcome.entity_id, "accepted": outcome.accepted, "rejected": rejected}
    )


async def dead_letters(request: Request) -> Response:
    """GET /iot/deadletters: the newest refused messages and values of this tenant."""
    caller = iot_caller(request)
    limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
    before = _int_param(request, "before", 0, 0, 2**62)
    device_id = request.query_params.get("device_id")
    store = agent_of(request).broker.store
    entries = []
    cursor = before
    while len(entries) < limit:
        page = await store.read_log(DEAD_LETTERS, 500, cursor)
        if not page:
            break
        for seq, entry in page:
            if entry.get("service") == caller.tenant and device_id in (
                None,
                entry.get("device_id"),
            ):
                entries.append({"seq": seq, **entry})
        cursor = page[-1][0]
    return json_response({"count": len(entries[:limit]), "deadLetters": entries[:limit]})
