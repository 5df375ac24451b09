"""CORS: a browser page on another origin uses a public token on the realtime and
API routes (preflight, headers it may send and read); the dashboard and worker
routes never answer another origin; ``TRIGGERFISH_CORS_ORIGINS`` narrows it."""

from __future__ import annotations

import httpx

from tests.api.conftest import Served
from triggerfish import Triggerfish
from triggerfish.api.app import create_app
from triggerfish.engine import Engine

PAGE = "https://app.example.com"
SDK_HEADERS = "authorization, x-trigger-jwt, trigger-version, x-trigger-electric-version"


def preflight(path: str, origin: str = PAGE, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": SDK_HEADERS,
    }


async def test_a_page_on_another_origin_subscribes_with_a_public_token(
    served: Served,
) -> None:
    [run_id] = await served.trigger(1)
    tf = Triggerfish(api_url=served.url, secret_key=served.key, socket=False)
    token = await tf.auth.create_public_token_async(scopes={"read": {"runs": [run_id]}})
    await tf.aclose()
    async with httpx.AsyncClient(base_url=served.url) as browser:
        for path, method in (
            (f"/realtime/v1/runs/{run_id}", "GET"),
            (f"/realtime/v1/streams/{run_id}/llm", "GET"),
            ("/api/v1/tasks/job/trigger", "POST"),
        ):
            answer = await browser.options(path, headers=preflight(path, method=method))
            assert answer.status_code == 204, (path, answer.text)
            assert answer.headers["access-control-allow-origin"] == "*"
            allowed = answer.headers["access-control-allow-headers"].lower()
            assert "authorization" in allowed and "x-trigger-jwt" in allowed
            assert method in answer.headers["access-control-allow-methods"]
            assert "access-control-allow-credentials" not in answer.headers
        read = await browser.get(
            f"/realtime/v1/runs/{run_id}",
            params={"offset": "-1"},
            headers={"Origin": PAGE, "Authorization": f"Bearer {token}"},
        )
        assert read.status_code == 200
        assert read.headers["access-control-allow-origin"] == "*"
        exposed = read.headers["access-control-expose-headers"]
        assert "electric-offset" in exposed and "electric-handle" in exposed
        # a refusal reaches the page too (so the SDK can tell a 403 from a network error)
        refused = await browser.get(
            "/realtime/v1/runs/run_other", params={"offset": "-1"}, headers={"Origin": PAGE}
        )
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == "*"
        # cookie-authenticated and worker routes never answer another origin
        for path in ("/dashboard/", "/worker/v1/claims"):
            other = await browser.options(path, headers=preflight(path))
            assert "access-control-allow-origin" not in other.headers, path
            plain = await browser.get(path, headers={"Origin": PAGE})
            assert "access-control-allow-origin" not in plain.headers, path
        # same-origin and server-to-server calls carry no CORS headers
        same = await browser.get(f"/realtime/v1/runs/{run_id}", params={"token": token})
        assert same.status_code == 200 and "access-control-allow-origin" not in same.headers


async def test_allowed_origins_are_configurable(engine: Engine) -> None:
    settings = engine.res.settings
    try:
        settings.cors_origins = f"{PAGE}, https://admin.example.com/"
        app = create_app(engine, manage_engine=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as browser:
            ok = await browser.options("/realtime/v1/runs/x", headers=preflight("x"))
            assert ok.status_code == 204
            assert ok.headers["access-control-allow-origin"] == PAGE
            assert "Origin" in ok.headers["vary"]
            admin = await browser.get(
                "/api/v1/runs", headers={"Origin": "https://admin.example.com"}
            )
            assert admin.headers["access-control-allow-origin"] == "https://admin.example.com"
            evil = "https://evil.example.com"
            no = await browser.options("/realtime/v1/runs/x", headers=preflight("x", evil))
            assert no.status_code == 403 and evil in no.json()["error"]
            plain = await browser.get("/api/v1/runs", headers={"Origin": evil})
            assert "access-control-allow-origin" not in plain.headers
        settings.cors_origins = ""  # none: every cross-origin preflight is refused
        app = create_app(engine, manage_engine=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as browser:
            none = await browser.options("/realtime/v1/runs/x", headers=preflight("x"))
            assert none.status_code == 403
    finally:
        settings.cors_origins = "*"
