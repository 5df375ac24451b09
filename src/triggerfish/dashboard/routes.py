"""The dashboard, mounted on the server's app at ``/`` (same port as the API).

One module per page group (``home``, ``runs``, ``tasks``, ``schedules``,
``queues``, ``tokens``, ``events``, ``webhooks``, ``alerts``, ``envvars``, ``workers``,
``keys``), sign-in in ``auth``, what they share in ``web``. Other issues add
their pages the same way: a module with a ``router`` (made with
``route_class=DashboardRoute``, which refuses hostile input; a test checks),
listed in ``PAGES``, and a link in ``templates/base.html``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.types import ASGIApp

from triggerfish.dashboard import (
    alerts,
    assets,
    auth,
    envvars,
    events,
    home,
    keys,
    live,
    queues,
    runs,
    schedules,
    tasks,
    tokens,
    webhooks,
    workers,
)
from triggerfish.dashboard.web import SignInRequired

PAGES = [
    home,
    runs,
    tasks,
    schedules,
    queues,
    tokens,
    events,
    webhooks,
    alerts,
    workers,
    keys,
    live,
]
PAGES.append(envvars)


async def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    from urllib.parse import quote

    target = f"/login?next={quote(exc.next_url, safe='/')}"
    if request.headers.get("hx-request"):  # htmx follows this header, not a redirect
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def install(app: FastAPI, *, dev_sign_in: bool = False) -> None:
    """Add the dashboard's pages, its static files and ``/docs`` to ``app``.

    ``dev_sign_in``: set only by ``triggerfish dev``; the browser is signed in
    without a password.
    """
    app.state.dashboard_dev = dev_sign_in
    app.add_exception_handler(SignInRequired, _sign_in)
    app.include_router(assets.router)
    app.include_router(auth.router)
    for module in PAGES:
        app.include_router(module.router)
    # the more specific mount first: /static would answer swagger-ui's paths with 404
    swagger: ASGIApp = assets.swagger_files()
    app.mount(assets.SWAGGER_PREFIX, swagger, name="swagger-ui")
    static: ASGIApp = assets.static_files()
    app.mount(assets.STATIC_PREFIX, static, name="static")
