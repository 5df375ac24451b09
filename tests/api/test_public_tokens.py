"""Public access tokens: scoped reads, expiry, one-time triggers, revocation, and never
a write; the official SDK's own signing (HS256 with the secret key) verifies too."""

from __future__ import annotations

import logging
import time

import httpx
import jwt

from tests.api.conftest import Served
from triggerfish import Triggerfish
from triggerfish.api.realtime import RedactQueryTokens
from triggerfish.engine import Engine


def client(served: Served) -> Triggerfish:
    return Triggerfish(api_url=served.url, secret_key=served.key, socket=False)


def as_bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_for_run_a_reads_nothing_of_run_b(served: Served) -> None:
    run_a, run_b = await served.trigger(2)
    tf = client(served)
    token = await tf.auth.create_public_token_async(
        scopes={"read": {"runs": [run_a]}}, expiration="1h"
    )
    await tf.aclose()
    async with httpx.AsyncClient(base_url=served.url) as browser:
        ok = await browser.get(
            f"/realtime/v1/runs/{run_a}", params={"offset": "-1"}, headers=as_bearer(token)
        )
        assert ok.status_code == 200 and ok.json()[0]["value"]["id"] == run_a
        # EventSource sends no headers: the token in the query string
        async with browser.stream(
            "GET", f"/api/v1/realtime/runs/{run_a}", params={"token": token}
        ) as sse:
            assert sse.status_code == 200
            async for line in sse.aiter_lines():
                if line.startswith("event:"):
                    assert line == "event: snapshot"
                    break
        refused = [
            await browser.get(
                f"/realtime/v1/runs/{run_b}", params={"offset": "-1"}, headers=as_bearer(token)
            ),
            await browser.get(f"/api/v1/realtime/runs/{run_b}", params={"token": token}),
            await browser.get("/api/v1/realtime/runs", params={"tags": "x", "token": token}),
            await browser.get(f"/api/v1/runs/{run_b}/streams/llm", headers=as_bearer(token)),
        ]
        assert [r.status_code for r in refused] == [403, 403, 403, 403]
        # never a write, nor a read outside the realtime routes
        writes = [
            await browser.post(
                "/api/v1/tasks/job/trigger", json={"payload": {}}, headers=as_bearer(token)
            ),
            await browser.post(f"/api/v2/runs/{run_a}/cancel", headers=as_bearer(token)),
            await browser.put(
                f"/api/v1/runs/{run_a}/metadata", json={"metadata": {}}, headers=as_bearer(token)
            ),
            await browser.get("/api/v1/runs", headers=as_bearer(token)),
            await browser.post(
                "/api/v1/auth/public-tokens",
                json={"scopes": ["read:runs"]},
                headers=as_bearer(token),
            ),
        ]
        assert [r.status_code for r in writes] == [403, 401, 401, 401, 401]
        # a secret key never travels in a URL
        leaked = await browser.get(f"/api/v1/realtime/runs/{run_a}", params={"token": served.key})
        assert leaked.status_code == 401


async def test_tag_and_batch_scopes(served: Served) -> None:
    tagged = await served.http.post(
        "/api/v1/tasks/job/trigger", json={"payload": {}, "options": {"tags": ["user:1"]}}
    )
    run_id = tagged.json()["id"]
    tf = client(served)
    token = await tf.auth.create_public_token_async(scopes={"read": {"tags": ["user:1"]}})
    await tf.aclose()
    async with httpx.AsyncClient(base_url=served.url, headers=as_bearer(token)) as browser:
        assert (await browser.get(f"/realtime/v1/runs/{run_id}")).status_code == 200
        assert (
            await browser.get("/realtime/v1/runs", params={"tags": "user:1"})
        ).status_code == 200
        other = await browser.get("/realtime/v1/runs", params={"tags": "user:1,user:2"})
        assert other.status_code == 403


async def test_expired_forged_and_revoked_tokens_are_refused(
    served: Served, engine: Engine
) -> None:
    [run_id] = await served.trigger(1)
    env = await engine.environments.by_slug("dev")
    now = int(time.time())

    def signed(key: str, **claims: object) -> str:
        base = {
            "sub": env.id,
            "pub": True,
            "scopes": [f"read:runs:{run_id}"],
            "iat": now,
            "exp": now + 600,
            "aud": "https://api.trigger.dev",
            "iss": "https://id.trigger.dev",
        }
        return jwt.encode({**base, **claims}, key, algorithm="HS256")

    path = f"/api/v1/runs/{run_id}/streams/llm"
    async with httpx.AsyncClient(base_url=served.url) as browser:
        # as the official SDK signs it, locally with the secret key
        assert (await browser.get(path, headers=as_bearer(signed(served.key)))).status_code == 200
        for bad in (
            signed(served.key, exp=now - 5),
            signed("tr_dev_" + "x" * 32),
            signed(served.key, pub=False),
            signed(served.key, sub="env_other"),
        ):
            assert (await browser.get(path, headers=as_bearer(bad))).status_code == 401
        expired = await browser.get(path, headers=as_bearer(signed(served.key, exp=now - 5)))
        assert "expired" in expired.text
        # revoking the key revokes its tokens
        [key_row] = [
            k
            for k in await engine.environments.list_keys()
            if k.environment_id == env.id and served.key.startswith(k.display.rstrip("…"))
        ]
        await engine.environments.revoke_key(key_row.id)
        assert (await browser.get(path, headers=as_bearer(signed(served.key)))).status_code == 401


async def test_a_one_time_trigger_token_triggers_its_task_once(served: Served) -> None:
    tf = client(served)
    token = await tf.auth.create_trigger_token_async("job", expiration="10m")
    other = await tf.auth.create_trigger_token_async("other-task")
    await tf.aclose()
    async with httpx.AsyncClient(base_url=served.url, headers=as_bearer(token)) as browser:
        first = await browser.post("/api/v1/tasks/job/trigger", json={"payload": {"n": 1}})
        assert first.status_code == 200, first.text
        again = await browser.post("/api/v1/tasks/job/trigger", json={"payload": {"n": 2}})
        assert again.status_code == 401 and "used" in again.text
        wrong = await browser.post(
            "/api/v1/tasks/job/trigger", json={"payload": {}}, headers=as_bearer(other)
        )
        assert wrong.status_code == 403


async def test_the_official_sdk_gets_its_claims_and_a_run_token(served: Served) -> None:
    claims = await served.http.post("/api/v1/auth/jwt/claims")
    env_id = claims.json()["sub"]
    assert claims.json() == {"sub": env_id, "pub": True}
    r = await served.http.post(
        "/api/v1/tasks/job/trigger", json={"payload": {}}, headers={"trigger-version": "4.8.3"}
    )
    token = r.headers["x-trigger-jwt"]
    decoded = jwt.decode(
        token, served.key, algorithms=["HS256"], audience="https://api.trigger.dev"
    )
    assert decoded["scopes"] == [f"read:runs:{r.json()['id']}"] and decoded["sub"] == env_id
    plain = await served.http.post("/api/v1/tasks/job/trigger", json={"payload": {}})
    assert "x-trigger-jwt" not in plain.headers
    bad = await served.http.post("/api/v1/auth/public-tokens", json={"scopes": ["peek"]})
    assert bad.status_code in (400, 422) and "scopes" in bad.text


def test_access_logs_redact_tokens_in_urls() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s"',
        ("1.2.3.4", "GET", "/api/v1/realtime/runs/run_1?token=eyJabc.def.ghi&x=1"),
        None,
    )
    RedactQueryTokens().filter(record)
    assert record.getMessage() == '1.2.3.4 - "GET /api/v1/realtime/runs/run_1?token=[redacted]&x=1"'
