"""Routes of the dashboard: the page at ``/``, its files under ``/web/`` and its settings.

Vendored libraries live under versioned folders (``vendor/<name>-<version>/``) and are
cached for a year; the page and its own modules are revalidated on every load (ETag), so
an upgrade of urbanstack is seen at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from urbanstack.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
LONG_CACHE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class DashboardFiles(StaticFiles):
    """Static files with cache headers: long for vendored libraries, revalidate otherwise."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        vendored = self.get_path(scope).replace(os.sep, "/").startswith("vendor/")
        response.headers["Cache-Control"] = LONG_CACHE if vendored else REVALIDATE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def dashboard_config(settings: Settings) -> dict[str, str]:
    """What the page needs to know from the settings (nothing secret)."""
    return {
        "basemapUrl": settings.basemap_url,
        "basemapAttribution": settings.basemap_attribution,
    }


def web_routes(settings: Settings) -> list[BaseRoute]:
    """``/`` (the page), ``/web/config.json`` and the static files under ``/web/``."""
    config = dashboard_config(settings)

    async def index(request: Request) -> Response:
        page = STATIC_DIR / "index.html"
        headers = {"Cache-Control": REVALIDATE, "X-Content-Type-Options": "nosniff"}
        response = FileResponse(
            page, media_type="text/html; charset=utf-8", headers=headers, stat_result=page.stat()
        )
        if request.headers.get("if-none-match") == response.headers["etag"]:
            return Response(status_code=304, headers={**headers, "ETag": response.headers["etag"]})
        return response

    async def config_json(request: Request) -> Response:
        return JSONResponse(config, headers={"Cache-Control": "no-store"})

    return [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/web/config.json", config_json, methods=["GET", "HEAD"]),
        Mount("/web", app=DashboardFiles(directory=STATIC_DIR), name="web"),
    ]
