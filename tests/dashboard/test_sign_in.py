"""Dashboard sign-in: users, sessions, CSRF, rate limits, the dev flag (in process, no browser)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from triggerfish.api.app import create_app
from triggerfish.engine import Engine
from triggerfish.engine.keyring import Keyring
from triggerfish.engine.users import LOGIN_ATTEMPTS, LoginLimiter, TooManyAttempts
from triggerfish.errors import UserError

PASSWORD = "a long enough password"
#: the HTTP side (cookies, CSRF, limits) does not depend on the store: SQLite only;
#: the users' store functions run on both (test_user_names_passwords_and_duplicates_are_checked)
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _client(engine: Engine, *, dev: bool = False) -> httpx.AsyncClient:
    app = create_app(engine, manage_engine=False, dashboard_dev=dev)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://dashboard.test"
    )


@pytest.fixture
async def http(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    await engine.users.create("ada", PASSWORD)
    async with await _client(engine) as client:
        yield client


async def _sign_in(http: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    form = await http.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return await http.post(
        "/login",
        data={"csrf": csrf.group(1), "username": "ada", "password": password, "next": "/runs"},
    )


def _csrf(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_pages_need_a_session_and_a_password_gives_one(http: httpx.AsyncClient) -> None:
    answer = await http.get("/runs?status=QUEUED")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/runs%3Fstatus%3DQUEUED"
    assert (await _sign_in(http, "wrong password")).status_code == 401
    signed_in = await _sign_in(http)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/runs"
    assert (await http.get("/runs")).status_code == 200
    # the session cookie is the dashboard's only: the API still wants a bearer key
    assert (await http.get("/api/v1/runs")).status_code == 401


@SQLITE_ONLY
async def test_every_post_needs_the_pages_csrf_token(http: httpx.AsyncClient) -> None:
    await _sign_in(http)
    page = await http.get("/keys")
    refused = await http.post("/keys", data={"name": "no-token"})
    assert refused.status_code == 403
    forged = await http.post("/keys", data={"name": "forged", "csrf": "x" * 43})
    assert forged.status_code == 403
    made = await http.post("/keys", data={"name": "ok", "csrf": _csrf(page.text)})
    assert made.status_code == 200
    assert re.search(r"tr_dev_[a-z0-9]{32}", made.text)
    # htmx sends it as a header
    by_header = await http.post(
        "/environment", data={"env": "prod"}, headers={"X-CSRF-Token": _csrf(page.text)}
    )
    assert by_header.status_code == 303


@SQLITE_ONLY
async def test_signing_out_ends_the_session(http: httpx.AsyncClient) -> None:
    await _sign_in(http)
    page = await http.get("/runs")
    old_cookie = http.cookies.get("tf_session")
    assert old_cookie
    assert (await http.post("/logout", data={"csrf": _csrf(page.text)})).status_code == 303
    http.cookies.set("tf_session", old_cookie)  # a copy kept by someone else
    assert (await http.get("/runs")).status_code == 303


@SQLITE_ONLY
async def test_failed_sign_ins_are_rate_limited(http: httpx.AsyncClient) -> None:
    for _ in range(LOGIN_ATTEMPTS):
        assert (await _sign_in(http, "wrong password")).status_code == 401
    # even the right password waits now
    limited = await _sign_in(http)
    assert limited.status_code == 429
    assert "too many failed sign-ins" in limited.text


@SQLITE_ONLY
async def test_only_the_dev_flag_signs_in_without_a_password(engine: Engine) -> None:
    async with await _client(engine) as plain:
        assert (await plain.get("/login")).status_code == 200  # the form
        assert (await plain.get("/runs")).status_code == 303
    async with await _client(engine, dev=True) as dev:
        answer = await dev.get("/login?next=/tasks")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/tasks"
        assert (await dev.get("/tasks")).status_code == 200
        dev_cookie = dev.cookies.get("tf_session")
    # the dev pseudo-user's session is worthless on a server started otherwise
    async with await _client(engine) as plain:
        plain.cookies.set("tf_session", str(dev_cookie))
        assert (await plain.get("/runs")).status_code == 303


async def test_user_names_passwords_and_duplicates_are_checked(engine: Engine) -> None:
    with pytest.raises(UserError, match="password"):
        await engine.users.create("bob", "short")
    with pytest.raises(UserError, match="username"):
        await engine.users.create("bob smith", PASSWORD)
    await engine.users.create("bob", PASSWORD)
    with pytest.raises(UserError, match="exists already"):
        await engine.users.create("bob", PASSWORD)
    assert [u.username for u in await engine.users.list()] == ["bob"]


def test_the_limiter_forgets_failures_after_its_window() -> None:
    limiter = LoginLimiter(attempts=2, window=10)
    limiter.failed(["user:a"], 0)
    limiter.failed(["user:a"], 1)
    with pytest.raises(TooManyAttempts):
        limiter.check(["user:a", "client:x"], 5)
    limiter.check(["user:b"], 5)  # others are not held back
    limiter.check(["user:a"], 11.5)


_RING = Keyring(["k" * 40])


@given(st.text(min_size=1, max_size=60))
def test_a_session_signature_verifies_only_the_message_it_signed(tampered: str) -> None:
    message = "user_01.1700000000000000"
    signature = _RING.sign("dashboard-session", message)
    assert _RING.verify("dashboard-session", message, signature)
    if tampered != message:
        assert not _RING.verify("dashboard-session", tampered, signature)
    # a CSRF token is not a session signature
    assert not _RING.verify("dashboard-csrf", message, signature)
