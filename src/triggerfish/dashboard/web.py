"""What every dashboard page shares: who is signed in, which environment, templates.

Pages are server-rendered Jinja2 templates; the dashboard calls the engine
directly (never the HTTP API). Cookies authenticate these routes only: the
session cookie (``tf_session``, signed by the keyring, see ``engine/users.py``)
and, on every POST, a CSRF token from the page (form field ``csrf`` or header
``X-CSRF-Token``, which htmx requests send).

Every dashboard router uses :class:`DashboardRoute`, the forms' counterpart of
the API's ``StrictJsonRoute``: a path, query or form field carrying a NUL
character, a lone surrogate or more than 64 KiB of text is refused with a 422
page naming the field, before the page's code runs; :func:`form_text` checks a
field against one of the API's validated types (``Name``, ``Key``, ...), and
:func:`form_json` reads JSON typed into a form as strictly as an API body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from pydantic import TypeAdapter, ValidationError

from triggerfish._validated import BadInput, Text, loads, text_problem, url_problem
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


#: the most characters any one path, query or form field may carry (``Text``'s bound)
MAX_FIELD = 65_536
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def checked(name: str, value: str, kind: Any = Text) -> str:
    """``value`` if it is a valid ``kind`` (one of ``_validated``'s types), else a
    :class:`~triggerfish._validated.BadInput` (422) naming the field ``name``."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS.setdefault(kind, TypeAdapter(kind))
    try:
        return str(adapter.validate_python(value))
    except ValidationError as exc:
        raise BadInput(f"{name}: {exc.errors()[0]['msg']}") from None


async def form_text(request: Request, name: str, default: str = "", kind: Any = Text) -> str:
    """The form field ``name``, stripped, checked as ``kind``; ``default`` when empty."""
    value = (await request.form()).get(name)
    text = value.strip() if isinstance(value, str) else ""
    return checked(name, text, kind) if text else default


def form_json(name: str, text: str) -> Any:
    """JSON typed into the field ``name``, read like an API body (no NUL, no lone
    surrogate, no NaN, bounded depth: a 422 naming the part); ``ValueError`` when
    it is not JSON."""
    return loads(text, where=name)


class DashboardRoute(APIRoute):
    """The route class of every dashboard router: hostile input is refused at the door.

    A NUL character or a lone surrogate anywhere in the path, the query string
    or a submitted form, or a field over :data:`MAX_FIELD` characters, answers
    422 with a page naming the field; so does a :class:`BadInput` raised by the
    page's own checks (:func:`form_text`, :func:`form_json`).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            request = _StrictRequest(request.scope, request.receive)
            try:
                refused = url_problem(request.scope["path"], request.scope["query_string"])
                if refused is not None:
                    raise BadInput(refused)
                for name, value in request.query_params.multi_items():
                    _check_field(name, value)
                if request.method == "POST" and _is_form(request):
                    for name, item in (await request.form()).multi_items():
                        if isinstance(item, str):
                            _check_field(name, item)
                return await handler(request)
            except BadInput as exc:
                return refused_page(str(exc), exc.status_code)

        return strict


class _StrictRequest(Request):
    """A request whose ``json()`` is the API's strict reader."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


def _check_field(name: str, value: str) -> None:
    label = name if text_problem(name) is None and len(name) <= 64 else "<field name>"
    problem = text_problem(name) or text_problem(value)
    if problem is not None:
        raise BadInput(f"{label}: {problem}")
    if len(value) > MAX_FIELD:
        raise BadInput(f"{label}: longer than {MAX_FIELD} characters")


def refused_page(message: str, status_code: int = 422) -> HTMLResponse:
    """What a browser sees for input refused at the door (no session needed)."""
    html = templates.get_template("refused.html").render(message=message)
    return HTMLResponse(html, status_code=status_code)


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
