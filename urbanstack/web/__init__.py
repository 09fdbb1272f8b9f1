"""The operations-centre dashboard: static files served at ``/`` and ``/web/...``.

The page talks only to the public API (NGSI-LD, temporal, ``/api/stream``); Python here
only serves files and a small JSON configuration.
"""

from urbanstack.web.routes import web_routes

__all__ = ["web_routes"]
