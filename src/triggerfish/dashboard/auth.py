"""Signing in and out, and the environment switcher.

A server started by ``triggerfish dev`` signs the browser in as the ``dev``
pseudo-user at ``/login`` without a password (a flag the dev command sets on
the app, never "the request comes from localhost", which every request behind
a reverse proxy would). Any other server asks for a user made with
``triggerfish users create``; failed sign-ins are rate-limited per name and per
client address.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from triggerfish._validated import Name
from triggerfish.dashboard.web import (
    ENV_COOKIE,
    SESSION_COOKIE,
    DashboardRoute,
    Page,
    action_page,
    engine_of,
    form_text,
    is_dev,
    templates,
)
from triggerfish.engine.users import DEV_USER_ID, SESSION_SECONDS, TooManyAttempts, User
from triggerfish.errors import UserError

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)
#: a random value per sign-in form, so its CSRF token is bound to this browser
LOGIN_COOKIE = "tf_login"


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def _login_form(
    request: Request, next_url: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    csrf = engine_of(request).users.csrf_token(f"login:{nonce}")
    html = templates.get_template("login.html").render(next=next_url, csrf=csrf, error=error)
    response = HTMLResponse(html, status_code=status_code)
    _set_cookie(request, response, LOGIN_COOKIE, nonce, 3600)
    return response


@router.get("/login", response_model=None)
async def login_page(request: Request, next: str | None = None) -> Response:
    target = _safe_next(next)
    if is_dev(request):
        session = engine_of(request).users.issue_session(User(DEV_USER_ID, "dev"))
        response = RedirectResponse(target, status_code=303)
        _set_cookie(request, response, SESSION_COOKIE, session, SESSION_SECONDS)
        return response
    return _login_form(request, target)


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    engine = engine_of(request)
    target = _safe_next(await form_text(request, "next"))
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not engine.users.csrf_ok(f"login:{nonce}", await form_text(request, "csrf")):
        return _login_form(request, target, "The form expired: sign in again.", 403)
    username = await form_text(request, "username", kind=Name)
    password_value = (await request.form()).get("password")
    password = password_value if isinstance(password_value, str) else ""
    client = request.client.host if request.client else "?"
    try:
        user = await engine.users.sign_in(username, password, client=client)
    except TooManyAttempts as exc:
        return _login_form(request, target, str(exc), 429)
    if user is None:
        return _login_form(request, target, "Wrong user name or password.", 401)
    response = RedirectResponse(target, status_code=303)
    _set_cookie(
        request, response, SESSION_COOKIE, engine.users.issue_session(user), SESSION_SECONDS
    )
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(page: Annotated[Page, Depends(action_page)]) -> RedirectResponse:
    await page.engine.users.sign_out(page.user)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/environment")
async def switch_environment(
    request: Request, page: Annotated[Page, Depends(action_page)]
) -> RedirectResponse:
    slug = await form_text(request, "env", kind=Name)
    try:
        await page.engine.environments.by_slug(slug)
    except UserError:
        slug = page.env.slug
    response = RedirectResponse(_safe_next(await form_text(request, "next")), status_code=303)
    _set_cookie(request, response, ENV_COOKIE, slug, 365 * 24 * 3600)
    return response
