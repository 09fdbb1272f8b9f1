"""Operator endpoints: /health for load balancers, /version for people."""

from __future__ import annotations

import os
import socket

from starlette.requests import Request
from starlette.responses import Response

from urbanstack import NGSI_LD_SPEC_VERSION, __version__
from urbanstack.api.http import broker_of, json_response


async def health(request: Request) -> Response:
    ok = await broker_of(request).store.ping()
    body = {"status": "ok" if ok else "unavailable", "store": "reachable" if ok else "unreachable"}
    southbound = getattr(request.app.state, "southbound", None)
    if southbound is not None:  # informational: devices can wait in the MQTT broker
        body["mqtt"] = southbound.state
    return json_response(body, status=200 if ok else 503)


async def version(request: Request) -> Response:
    info = await broker_of(request).store.info()
    return json_response(
        {
            "urbanstack": __version__,
            "ngsi-ld": NGSI_LD_SPEC_VERSION,
            "store": {
                "backend": info.backend,
                "version": info.backend_version,
                "schemaVersion": info.schema_version,
            },
            # which process answered: with several (--workers, several machines) it helps
            # an operator tell them apart
            "node": {"host": socket.gethostname(), "pid": os.getpid()},
        }
    )
