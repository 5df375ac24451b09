"""The webhooks page: endpoints with their refused count, and an endpoint's
deliveries with the runs they started, redeliveries marked."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from tests.support.in_process import bare_worker
from triggerfish.api.app import create_app
from triggerfish.engine import Engine
from triggerfish.errors import TriggerfishError


def _github(secret: str, body: bytes, delivery: str) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-hub-signature-256": f"sha256={signature}",
        "x-github-event": "push",
        "x-github-delivery": delivery,
        "content-type": "application/json",
    }


async def test_endpoints_and_their_deliveries(engine: Engine) -> None:
    env = await engine.environments.by_slug("dev")
    await bare_worker(engine, env.id)
    made = await engine.webhooks.create(env.id, "github", secret="s3cret", description="repo")
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    await engine.webhooks.receive(made.endpoint.id, _github("s3cret", body, "d-1"), body)
    await engine.webhooks.receive(made.endpoint.id, _github("s3cret", body, "d-1"), body)
    with pytest.raises(TriggerfishError):
        await engine.webhooks.receive(made.endpoint.id, _github("forged", body, "d-2"), body)

    app = create_app(engine, manage_engine=False, dashboard_dev=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dashboard.test",
        follow_redirects=True,
    ) as http:
        listing = await http.get("/webhook-endpoints")
        assert listing.status_code == 200
        assert f'href="/webhook-endpoints/{made.endpoint.id}"' in listing.text
        assert "<td>1</td>" in listing.text  # the forged delivery, counted
        assert "s3cret" not in listing.text

        detail = await http.get(f"/webhook-endpoints/{made.endpoint.id}")
        assert detail.status_code == 200
        assert detail.text.count("<code>d-1</code>") == 2
        assert "redelivery" in detail.text and "github.push" in detail.text
        assert "d-2" not in detail.text  # a refused delivery is not recorded

        missing = await http.get("/webhook-endpoints/wh_nope")
        assert missing.status_code == 404
