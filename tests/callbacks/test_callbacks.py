"""Signed callbacks from tasks into an app, checked by the app's FastAPI, Flask or Django."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from flask import Flask, jsonify
from flask import request as flask_request

from tests.support.http_apps import serving_asgi, serving_wsgi
from tests.support.in_process import in_process_worker
from triggerfish import callbacks, retry, task, wait
from triggerfish.callbacks import CallbackError, CallbackRejected, CallbackVerifier
from triggerfish.engine import Engine
from triggerfish.sdk._registry import TaskRegistry, collecting_into

SECRET = "callback-secret-for-tests"


def fastapi_app(verifier: CallbackVerifier, seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()
    guard = [Depends(callbacks.fastapi_dependency(verifier))]
    hits: Counter[str] = Counter()

    @app.post("/trigger/callback", dependencies=guard)
    async def dispatch(request: Request) -> dict[str, Any]:
        body = await request.json()
        seen.append({"body": body, "idempotency": request.headers.get("idempotency-key")})
        return {"operation": body["operation"], "ok": True}

    @app.get("/flaky", dependencies=guard)
    async def flaky() -> Any:
        hits["flaky"] += 1
        if hits["flaky"] < 3:
            from fastapi.responses import JSONResponse

            return JSONResponse({"error": "busy"}, status_code=503)
        return {"tries": hits["flaky"]}

    @app.post("/flaky-post", dependencies=guard)
    async def flaky_post() -> Any:
        from fastapi.responses import JSONResponse

        hits["post"] += 1
        return JSONResponse({"error": "busy"}, status_code=503)

    app.state.hits = hits
    return app


@pytest.mark.parametrize("scheme", ["bearer", "header", "hmac"])
def test_each_scheme_is_accepted_with_the_secret_and_refused_without(scheme: str) -> None:
    seen: list[dict[str, Any]] = []
    verifier = CallbackVerifier(SECRET, scheme=scheme)  # type: ignore[arg-type]
    with serving_asgi(fastapi_app(verifier, seen)) as url:
        with callbacks.client(url, SECRET, scheme=scheme) as good:  # type: ignore[arg-type]
            assert good.callback("k", "getConfig", {"runId": "r1"}) == {
                "operation": "getConfig",
                "ok": True,
            }
        bad = callbacks.client(url, "wrong-secret", scheme=scheme)  # type: ignore[arg-type]
        with bad, pytest.raises(CallbackError) as refused:
            bad.callback("k", "getConfig")
        assert refused.value.status == 401
        assert httpx.post(f"{url}/trigger/callback", json={}).status_code == 401
    assert [s["body"]["operation"] for s in seen] == ["getConfig"]


def test_an_hmac_callback_replayed_or_late_is_refused() -> None:
    verifier = CallbackVerifier(SECRET, scheme="hmac", tolerance=60)
    body = b'{"operation": "x"}'
    headers = callbacks.signed_headers("hmac", SECRET, "POST", "/trigger/callback?a=1", body)
    verifier.check("POST", "/trigger/callback?a=1", headers, body)
    with pytest.raises(CallbackRejected, match="already used"):
        verifier.check("POST", "/trigger/callback?a=1", headers, body)
    other = callbacks.signed_headers("hmac", SECRET, "POST", "/trigger/callback", body)
    with pytest.raises(CallbackRejected, match="does not match"):
        verifier.check("POST", "/trigger/callback?a=2", other, body)
    old = callbacks.signed_headers("hmac", SECRET, "POST", "/p", body, now=time.time() - 3600)
    with pytest.raises(CallbackRejected, match="tolerance"):
        verifier.check("POST", "/p", old, body)


def test_idempotent_calls_are_retried_and_a_plain_post_is_not() -> None:
    verifier = CallbackVerifier(SECRET, scheme="hmac")
    app = fastapi_app(verifier, [])
    with serving_asgi(app) as url:
        app_client = callbacks.CallbackClient(url, SECRET, scheme="hmac", backoff=0.01)
        with app_client:
            assert app_client.request("GET", "/flaky").json() == {"tries": 3}
            with pytest.raises(CallbackError) as failed:
                app_client.request("POST", "/flaky-post")
            assert failed.value.status == 503 and app.state.hits["post"] == 1
            with pytest.raises(CallbackError):
                app_client.request("POST", "/flaky-post", idempotency_key="k1")
            assert app.state.hits["post"] == 4


def test_flask_apps_check_callbacks_with_the_guard() -> None:
    verifier = CallbackVerifier(SECRET, scheme="header")
    app = Flask("callbacks")

    @app.post("/internal/commands")
    @callbacks.flask_guard(verifier)
    def commands() -> Any:
        return jsonify(applied=flask_request.get_json()["commands"])

    with serving_wsgi(app) as url:
        with callbacks.client(url, SECRET, scheme="header") as ok:
            assert ok.request("POST", "/internal/commands", json={"commands": [1]}).json() == {
                "applied": [1]
            }
        refused = httpx.post(f"{url}/internal/commands", headers={"x-trigger-secret": "nope"})
        assert refused.status_code == 401 and "x-trigger-secret" in refused.json()["error"]


def test_django_views_check_callbacks_with_the_guard() -> None:
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.http import JsonResponse

    if not settings.configured:
        settings.configure(
            ROOT_URLCONF="tests.callbacks.django_urls",
            ALLOWED_HOSTS=["127.0.0.1"],
            SECRET_KEY="django-test-only",
            DEBUG=False,
        )
        django.setup()
    from tests.callbacks import django_urls

    verifier = CallbackVerifier(SECRET, scheme="hmac")

    @callbacks.django_guard(verifier)
    def view(request: Any) -> Any:
        return JsonResponse({"path": request.get_full_path()})

    django_urls.VIEW = view
    with serving_wsgi(WSGIHandler()) as url:
        with callbacks.client(url, SECRET, scheme="hmac") as ok:
            got = ok.request("POST", "/hook/", params={"x": "1"}, json={"a": 1}).json()
            assert got == {"path": "/hook/?x=1"}
        assert httpx.post(f"{url}/hook/", json={"a": 1}).status_code == 401


def _registry(url: str) -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="calls-back", retry=retry(max_attempts=2, min_delay=0, max_delay=0, jitter=0))
        def calls_back(payload: dict[str, Any]) -> Any:
            app = callbacks.client(url, SECRET)
            config = app.callback("config", "getConfig", {"runId": payload["id"]})
            wait.for_event("go-on")
            done = app.callback("progress", "progress", {"step": "designer"})
            return [config["operation"], done["operation"]]

    return registry


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # no store feature
async def test_a_callback_inside_a_task_is_a_step_a_replay_does_not_repeat(
    engine: Engine,
) -> None:
    seen: list[dict[str, Any]] = []
    verifier = CallbackVerifier(SECRET, scheme="bearer")
    with serving_asgi(fastapi_app(verifier, seen)) as url:
        env_id, worker = await in_process_worker(engine, _registry(url))
        from tests.support.in_process import trigger_run

        run_id = await trigger_run(engine, env_id, "calls-back", {"id": "r-1"})
        await worker.run_until_idle()
        await engine.events.send(env_id, "go-on", {})
        (done,) = await worker.run_until_idle()
    assert done.output == ["getConfig", "progress"]
    assert [s["body"]["operation"] for s in seen] == ["getConfig", "progress"]
    assert [s["idempotency"] for s in seen] == [f"{run_id}:config", f"{run_id}:progress"]
