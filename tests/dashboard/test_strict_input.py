"""Hostile input on the dashboard's routes: refused at the door with a 422 naming the
field (NUL characters, lone surrogates, overlong text), like the API's routes."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from triggerfish.api.app import create_app
from triggerfish.engine import Engine

#: what is checked is the HTTP side; the store is not reached
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def test_nul_surrogates_and_overlong_text_are_refused_naming_the_field(
    engine: Engine,
) -> None:
    env = await engine.environments.by_slug("dev")
    app = create_app(engine, manage_engine=False, dashboard_dev=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dashboard.test",
        follow_redirects=True,
    ) as http:
        home = await http.get("/events")
        found = re.search(r'<meta name="csrf-token" content="([^"]+)"', home.text)
        assert found is not None
        csrf = found.group(1)

        async def post(path: str, **fields: str) -> httpx.Response:
            return await http.post(path, data={"csrf": csrf, **fields})

        refused = {
            "name: contains a NUL character": await post("/events", name="order\x00paid"),
            # JSON typed into a form is read like an API body: escapes included
            "payload.who: contains a lone UTF-16 surrogate": await post(
                "/events", name="order.paid", payload='{"who": "\\ud800"}'
            ),
            "payload: longer than 65536 characters": await post(
                "/events", name="order.paid", payload='"' + "x" * 70_000 + '"'
            ),
            "name: String should have at most 256 characters": await post(
                "/events", name="e" * 300
            ),
            "cron: String should have at most 128 characters": await post(
                "/schedules", task="tick", cron="* " * 100
            ),
            "value: contains a NUL character": await post(
                "/envvars", name="REGION", value="eu\x00"
            ),
            "tag: contains a NUL character": await http.get("/runs?tag=a%00b"),
            "data.by: contains a NUL character": await post(
                "/tokens/waitpoint_nope/complete", data='{"by": "a\\u0000"}'
            ),
        }
        for message, answer in refused.items():
            assert answer.status_code == 422, (message, answer.status_code, answer.text[:300])
            assert message in answer.text, (message, answer.text[:500])
            assert "text/html" in answer.headers["content-type"]
        # nothing was stored
        assert await engine.events.recent(env.id, None, 10) == []
        assert await engine.envvars.all(env.id) == []
        # the same forms with clean text are taken
        sent = await post("/events", name="order.paid", payload='{"who": "ada"}')
        assert sent.status_code == 200 and "sent " in sent.text


async def test_sign_in_refuses_a_nul_in_the_user_name(engine: Engine) -> None:
    await engine.users.create("ada", "a long enough password")
    app = create_app(engine, manage_engine=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://dashboard.test"
    ) as http:
        answer = await http.post(
            "/login", data={"csrf": "x", "username": "ada\x00", "password": "p"}
        )
        assert answer.status_code == 422
        assert "username: contains a NUL character" in answer.text


async def test_every_dashboard_route_checks_its_input(engine: Engine) -> None:
    """A page added later (a module in ``PAGES``) must use ``DashboardRoute`` too."""
    from fastapi.routing import APIRoute

    from triggerfish.dashboard.web import DashboardRoute

    def walk(routes: list[Any]) -> list[Any]:
        found = []
        for r in routes:
            # FastAPI keeps an included router whole (``original_router``)
            inner = getattr(r, "original_router", None)
            found += walk(inner.routes) if inner is not None else [r]
        return found

    app = create_app(engine, manage_engine=False)
    pages = [
        r
        for r in walk(app.routes)
        if isinstance(r, APIRoute) and r.endpoint.__module__.startswith("triggerfish.dashboard")
    ]
    assert len(pages) > 20
    assert [r.path for r in pages if not isinstance(r, DashboardRoute)] == []
