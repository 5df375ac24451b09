"""Front-end files shipped in the package: the dashboard's own and htmx
(version and licence in ``static/vendor/README.md``).

Nothing is loaded from a CDN: ``/docs`` (the OpenAPI page) serves swagger-ui
from the folder of the ``fastapi-swagger`` package (a dependency that ships
swagger-ui's dist files), so it works offline.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from triggerfish.dashboard.web import DashboardRoute

STATIC_DIR = Path(__file__).parent / "static"
#: where the files are served
STATIC_PREFIX = "/static"
#: where swagger-ui's files are served (mounted before ``STATIC_PREFIX``)
SWAGGER_PREFIX = "/static/swagger-ui"

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)


def swagger_ui_dir() -> Path:
    """The folder holding ``swagger-ui-bundle.js``, ``swagger-ui.css`` and the favicon."""
    folder = Path(str(resources.files("fastapi_swagger") / "resources"))
    if not (folder / "swagger-ui-bundle.js").is_file():  # a changed package layout
        raise RuntimeError(f"swagger-ui's files are missing from {folder}")
    return folder


def swagger_files() -> StaticFiles:
    return StaticFiles(directory=swagger_ui_dir())


@router.get("/docs", response_class=HTMLResponse)
async def openapi_page() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Triggerfish API",
        swagger_js_url=f"{SWAGGER_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_PREFIX}/favicon-32x32.png",
    )
