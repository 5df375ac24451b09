"""What every dashboard page shares: who is signed in, which environment, templates.

Pages are server-rendered Jinja2 templates; the dashboard calls the engine
directly (never the HTTP API). Cookies authenticate these routes only: the
session cookie (``tf_session``, signed by the keyring, see ``engine/users.py``)
and, on every POST, a CSRF token from the page (form field ``csrf`` or header
``X-CSRF-Token``, which htmx requests send).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from triggerfish._version import __version__
from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment as Env
from triggerfish.engine.users import User
from triggerfish.errors import PermissionDenied, UserError

SESSION_COOKIE = "tf_session"
ENV_COOKIE = "tf_env"

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


class SignInRequired(Exception):
    """No valid session: the browser goes to the sign-in page, then back to ``next``."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


@dataclass
class Page:
    """The request's context: engine, user, session, CSRF token and environment."""

    request: Request
    engine: Engine
    user: User
    session: str
    csrf: str
    env: Env
    envs: list[str] = field(default_factory=list)

    def render(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = templates.get_template(template).render(page=self, **values)
        return HTMLResponse(html, status_code=status_code)

    @property
    def path(self) -> str:
        return self.request.url.path

    def notice(self) -> str | None:
        return self.request.query_params.get("notice")

    def error(self) -> str | None:
        return self.request.query_params.get("error")


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def is_dev(request: Request) -> bool:
    """Whether this server was started by ``triggerfish dev`` (it signs in by itself)."""
    return bool(getattr(request.app.state, "dashboard_dev", False))


async def current_page(request: Request) -> Page:
    """Dependency of every page: the signed-in user, else a redirect to sign in."""
    engine = engine_of(request)
    session = request.cookies.get(SESSION_COOKIE, "")
    user = await engine.users.session_user(session, dev=is_dev(request)) if session else None
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    slug = request.cookies.get(ENV_COOKIE) or "dev"
    try:
        env = await engine.environments.by_slug(slug)
    except UserError:
        env = await engine.environments.by_slug("dev")
    slugs = await engine.environments.slugs()
    return Page(request, engine, user, session, engine.users.csrf_token(session), env, slugs)


async def action_page(request: Request) -> Page:
    """Dependency of every POST: a signed-in user and a valid CSRF token (403 without)."""
    page = await current_page(request)
    token = request.headers.get("x-csrf-token", "")
    if not token:
        form = await request.form()
        value = form.get("csrf")
        token = value if isinstance(value, str) else ""
    if not engine_of(request).users.csrf_ok(page.session, token):
        raise PermissionDenied("the form is stale or was not sent by the dashboard: reload")
    return page


def back(url: str, *, notice: str | None = None, error: str | None = None) -> RedirectResponse:
    """A 303 to ``url`` carrying a one-line notice or error shown on top of the page."""
    query = {k: v for k, v in (("notice", notice), ("error", error)) if v}
    sep = "&" if "?" in url else "?"
    return RedirectResponse(url + (sep + urlencode(query) if query else ""), status_code=303)


async def form_text(request: Request, name: str, default: str = "") -> str:
    value = (await request.form()).get(name)
    return value.strip() if isinstance(value, str) else default


# -- template filters ---------------------------------------------------------------------


def _as_utc(value: datetime | float | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def time_tag(value: datetime | float | None) -> Markup:
    """A ``<time>`` the browser shows in its own zone (dashboard.js), UTC on hover."""
    at = _as_utc(value)
    if at is None:
        return Markup('<span class="muted">-</span>')
    iso = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    utc = at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(f'<time datetime="{iso}" title="{utc}">{utc}</time>')


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    stop = end or datetime.now(UTC).replace(tzinfo=None)
    seconds = max(0.0, (stop - start).total_seconds())
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str, ensure_ascii=False)


def badge(status: str | None) -> Markup:
    text = str(status or "-")
    return Markup(
        f'<span class="badge badge-{escape(text.lower())}">{escape(text.replace("_", " "))}</span>'
    )


templates.filters["time"] = time_tag
templates.filters["json"] = pretty_json
templates.filters["badge"] = badge
templates.filters["urlquote"] = lambda v: quote(str(v), safe="")
templates.globals["duration"] = duration
templates.globals["version"] = __version__
