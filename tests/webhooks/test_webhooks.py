"""Incoming webhooks over real HTTP: signed deliveries become events, on both stores."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from typer.testing import CliRunner

from tests.support.in_process import run_record
from tests.webhooks.conftest import Site
from triggerfish import retry, task, wait
from triggerfish.cli.main import app
from triggerfish.sdk._registry import TaskRegistry, collecting_into

FAST = retry(max_attempts=1)
GITHUB_SECRET = "gh-secret-for-tests"
STRIPE_SECRET = "whsec_stripe_test_secret"


class Push(BaseModel):
    ref: str
    repository: dict[str, Any]


def _registry() -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="on-push", on_event="github.push", retry=FAST)
        def on_push(payload: Push) -> str:
            return f"{payload.repository['name']}@{payload.ref}"

        @task(id="on-invoice-paid", on_event="stripe.invoice.paid", retry=FAST)
        def on_paid(payload: dict[str, Any]) -> Any:
            return payload["data"]["object"]["amount_paid"]

        @task(id="awaits-payment", retry=FAST)
        def awaits_payment(payload: dict[str, Any]) -> Any:
            got = wait.for_event(
                "stripe.invoice.paid", match={"data": {"object": {"id": payload["invoice"]}}}
            )
            assert got.output is not None
            return got.output["payload"]["data"]["object"]["amount_paid"]

    return registry


def github_headers(body: bytes, delivery: str, secret: str = GITHUB_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": delivery,
        "x-hub-signature-256": f"sha256={digest}",
    }


def stripe_headers(body: bytes, at: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    digest = hmac.new(STRIPE_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    return {
        "content-type": "application/json",
        "stripe-signature": f"t={stamp},v1={digest.hexdigest()}",
    }


def invoice_paid(event_id: str, invoice: str, amount: int) -> bytes:
    event = {
        "id": event_id,
        "type": "invoice.paid",
        "data": {"object": {"id": invoice, "amount_paid": amount}},
    }
    return json.dumps(event).encode()


async def _endpoint(site: Site, source: str, secret: str, **extra: Any) -> dict[str, Any]:
    r = await site.api.post("/api/v1/webhooks", json={"source": source, "secret": secret, **extra})
    assert r.status_code == 200, r.text
    hook: dict[str, Any] = r.json()
    assert hook["url"] == f"{site.url}/webhooks/{hook['id']}"
    return hook


async def test_a_github_delivery_starts_the_subscribed_task_and_a_redelivery_starts_nothing(
    site: Site,
) -> None:
    worker = await site.worker(_registry()).register()
    hook = await _endpoint(site, "github", GITHUB_SECRET)
    body = json.dumps({"ref": "refs/heads/main", "repository": {"name": "fins"}}).encode()
    delivery = str(uuid.uuid4())
    first = await site.public.post(
        hook["url"], content=body, headers=github_headers(body, delivery)
    )
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["event"] == {"id": delivery, "name": "github.push"}
    assert len(answer["runs"]) == 1 and answer["redelivery"] is False
    (done,) = await worker.run_until_idle()
    assert done.output == "fins@refs/heads/main"

    again = await site.public.post(
        hook["url"], content=body, headers=github_headers(body, delivery)
    )
    assert again.status_code == 200 and again.json()["redelivery"] is True
    assert await worker.run_until_idle() == []
    assert await site.run_count() == 1

    listed = (await site.api.get(f"/api/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    assert [d["outcome"] for d in listed] == ["redelivery", "first"]
    assert listed[1]["runs"] == answer["runs"] and listed[1]["payload"]["ref"] == "refs/heads/main"
    assert "x-hub-signature-256" not in listed[1]["headers"]
    assert listed[1]["headers"]["x-github-delivery"] == delivery


async def test_a_bad_signature_is_refused_counted_and_starts_nothing(site: Site) -> None:
    await site.worker(_registry()).register()
    hook = await _endpoint(site, "github", GITHUB_SECRET)
    body = json.dumps({"ref": "refs/heads/main", "repository": {"name": "fins"}}).encode()
    forged = github_headers(body, "d-1", secret="not-the-secret")
    refused = await site.public.post(hook["url"], content=body, headers=forged)
    assert refused.status_code == 401
    assert "signature" in refused.json()["error"]
    unsigned = {k: v for k, v in forged.items() if k != "x-hub-signature-256"}
    assert (await site.public.post(hook["url"], content=body, headers=unsigned)).status_code == 401
    shown = (await site.api.get(f"/api/v1/webhooks/{hook['id']}")).json()
    assert shown["rejectedCount"] == 2 and shown["lastRejectedAt"] is not None
    assert "secret" not in shown
    assert (await site.api.get(f"/api/v1/webhooks/{hook['id']}/deliveries")).json()["data"] == []
    assert await site.run_count() == 0


async def test_a_stripe_delivery_starts_its_task_and_a_stale_signature_is_refused(
    site: Site,
) -> None:
    worker = await site.worker(_registry()).register()
    hook = await _endpoint(site, "stripe", STRIPE_SECRET)
    body = invoice_paid("evt_1", "in_1", 4200)
    ok = await site.public.post(hook["url"], content=body, headers=stripe_headers(body))
    assert ok.status_code == 200, ok.text
    assert ok.json()["event"] == {"id": "evt_1", "name": "stripe.invoice.paid"}
    (done,) = await worker.run_until_idle()
    assert done.output == 4200
    stale = stripe_headers(invoice_paid("evt_2", "in_2", 1), at=time.time() - 3600)
    late = await site.public.post(
        hook["url"], content=invoice_paid("evt_2", "in_2", 1), headers=stale
    )
    assert late.status_code == 401 and "tolerance" in late.json()["error"]
    assert await site.run_count() == 1


async def test_a_task_waiting_for_an_event_is_woken_by_a_webhook(site: Site) -> None:
    worker = await site.worker(_registry()).register()
    hook = await _endpoint(site, "stripe", STRIPE_SECRET)
    r = await site.api.post(
        "/api/v1/tasks/awaits-payment/trigger", json={"payload": {"invoice": "in_7"}}
    )
    run_id = r.json()["id"]
    await worker.run_until_idle()
    assert (await run_record(site.engine, site.env_id, run_id)).status == "WAITING"
    other = invoice_paid("evt_other", "in_other", 1)
    await site.public.post(hook["url"], content=other, headers=stripe_headers(other))
    mine = invoice_paid("evt_mine", "in_7", 999)
    delivered = await site.public.post(hook["url"], content=mine, headers=stripe_headers(mine))
    assert delivered.status_code == 200
    outcomes = {o.run_id: o for o in await worker.run_until_idle()}
    assert outcomes[run_id].output == 999


async def test_generic_sources_take_a_fixed_event_name_and_a_configured_header(
    site: Site,
) -> None:
    hook = await _endpoint(
        site,
        "hmac-sha256",
        "shared",
        eventName="billing.sync",
        options={"header": "X-Acme-Signature", "prefix": "sha256=", "id_header": "x-acme-id"},
    )
    body = b'{"account": 7}'
    sig = "sha256=" + hmac.new(b"shared", body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "x-acme-signature": sig, "x-acme-id": "a-1"}
    ok = await site.public.post(hook["url"], content=body, headers=headers)
    assert ok.json()["event"] == {"id": "a-1", "name": "billing.sync"}
    events = (await site.api.get("/api/v1/events", params={"name": "billing.sync"})).json()
    assert events["data"][0]["payload"] == {"account": 7}


async def test_endpoints_refuse_bad_input_and_keep_a_generated_secret_sealed(
    site: Site,
) -> None:
    unknown = await site.api.post("/api/v1/webhooks", json={"source": "gitlab"})
    assert unknown.status_code == 400 and "source" in unknown.json()["error"]
    option = await site.api.post("/api/v1/webhooks", json={"source": "github", "options": {"x": 1}})
    assert option.status_code == 400 and "options.x" in option.json()["error"]
    assert (await site.api.get("/api/v1/webhooks")).json()["data"] == []
    hook = await _endpoint(site, "github", GITHUB_SECRET)
    body = b"{not json"
    malformed = await site.public.post(hook["url"], content=body, headers=github_headers(body, "m"))
    assert malformed.status_code == 400 and "body" in malformed.json()["error"]
    missing = await site.public.post("/webhooks/webhook_nope", content=b"{}")
    assert missing.status_code == 404
    big = b"x" * (site.engine.res.settings.max_body_bytes + 1)
    assert (await site.public.post(hook["url"], content=big)).status_code == 413

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length for the middleware
        yield big

    assert (await site.public.post(hook["url"], content=chunked())).status_code == 413
    created = (await site.api.post("/api/v1/webhooks", json={"source": "hmac-sha256"})).json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    listed = (await site.api.get("/api/v1/webhooks")).json()["data"]
    assert created["id"] in [h["id"] for h in listed]
    assert not any("secret" in h for h in listed)
    stored = await site.engine.webhooks.get(site.env_id, created["id"])
    assert secret not in stored.secret_sealed
    out = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["webhooks", "create", "--source", "github", "--secret", "s", "--api-url", site.url],
        env={"TRIGGERFISH_SECRET_KEY": site.key},
    )
    assert out.exit_code == 0, out.output
    assert "/webhooks/webhook_" in out.output and "shown once" not in out.output
    listing = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["webhooks", "list", "--api-url", site.url],
        env={"TRIGGERFISH_SECRET_KEY": site.key},
    )
    assert "github" in listing.output and "hmac-sha256" in listing.output
    deleted = await site.api.delete(f"/api/v1/webhooks/{created['id']}")
    assert deleted.status_code == 200
    assert (await site.public.post(created["url"], content=b"{}")).status_code == 404
