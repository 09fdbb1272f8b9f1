"""Reference for the broker benchmark: a bare Starlette handler returning a fixed JSON entity.

Run by ``bench/broker.py`` with the same uvicorn options as ``urbanstack serve``::

    python -m uvicorn bench.bare_app:app --host 127.0.0.1 --port 8000 \\
        --loop uvloop --http httptools --no-access-log --lifespan on

``BENCH_BARE_DOC`` names a file holding the document to serve (the runner writes the
broker's own answer to GET /entities/{id} there); without it a built-in entity is served.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_FALLBACK = (
    b'{"id":"urn:ngsi-ld:Bare:1","type":"Bare",'
    b'"name":{"type":"Property","value":"Bare 1"},'
    b'"location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[107.58,16.46]}}}'
)


def _document() -> bytes:
    """The bytes every request answers with."""
    path = os.environ.get("BENCH_BARE_DOC")
    return Path(path).read_bytes() if path else _FALLBACK


DOCUMENT = _document()


async def entity(request: Request) -> Response:
    """Answer with the fixed document, whatever the id."""
    return Response(DOCUMENT, media_type="application/json")


async def health(request: Request) -> Response:
    """Readiness probe for the runner."""
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/ngsi-ld/v1/entities/{entityId}", entity, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
)
