"""Front-end files shipped in the package: the dashboard's own and the vendored
ones (htmx, swagger-ui; versions and licences in ``static/vendor/README.md``).

Nothing is loaded from a CDN: ``/docs`` (the OpenAPI page) serves swagger-ui
from here, so it works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from triggerfish.dashboard.web import DashboardRoute

STATIC_DIR = Path(__file__).parent / "static"
#: where the files are served
STATIC_PREFIX = "/static"

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)


@router.get("/docs", response_class=HTMLResponse)
async def openapi_page() -> HTMLResponse:
    vendor = f"{STATIC_PREFIX}/vendor/swagger-ui"
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Triggerfish API",
        swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
        swagger_css_url=f"{vendor}/swagger-ui.css",
        swagger_favicon_url=f"{vendor}/favicon-32x32.png",
    )
